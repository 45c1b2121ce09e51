//! Byte sizes as written in configuration (`180KB`, `2MiB`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::describe_untrusted;
use crate::error::{Error, Result};

/// A size in bytes that parses `180KB` (1000-based), `180KiB` (1024-based), `5MB`, `2MiB`,
/// `512B` and plain numbers.
///
/// ```
/// use flowfail_core::ByteSize;
/// assert_eq!("180KB".parse::<ByteSize>().unwrap().bytes(), 180_000);
/// assert_eq!("180KiB".parse::<ByteSize>().unwrap().bytes(), 184_320);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

impl ByteSize {
    /// A size of `bytes` bytes.
    pub const fn new(bytes: u64) -> Self {
        ByteSize(bytes)
    }
    /// `n` kilobytes (1000 bytes each).
    pub const fn kb(n: u64) -> Self {
        ByteSize(n * 1000)
    }
    /// `n` megabytes (1,000,000 bytes each).
    pub const fn mb(n: u64) -> Self {
        ByteSize(n * 1_000_000)
    }
    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        let mult: u64 = match unit {
            "" | "B" | "b" => 1,
            "KB" | "kB" | "kb" | "K" | "k" => 1000,
            "KiB" | "kiB" | "Ki" => 1024,
            "MB" | "mb" | "M" => 1_000_000,
            "MiB" | "Mi" => 1 << 20,
            "GB" | "gb" | "G" => 1_000_000_000,
            "GiB" | "Gi" => 1 << 30,
            _ => {
                return Err(Error::invalid_input(format!(
                    "invalid size {}: unknown unit (use B, KB, KiB, MB, MiB, GB or GiB)",
                    describe_untrusted(s)
                )));
            }
        };
        let bad = || {
            Error::invalid_input(format!(
                "invalid size {}: expected a number and a unit such as 180KB",
                describe_untrusted(s)
            ))
        };
        if num.is_empty() {
            return Err(bad());
        }
        let bytes = if num.contains('.') {
            let v: f64 = num.parse().map_err(|_| bad())?;
            let b = v * mult as f64;
            if !b.is_finite() || b < 0.0 || b > u64::MAX as f64 {
                return Err(bad());
            }
            b.round() as u64
        } else {
            let v: u64 = num.parse().map_err(|_| bad())?;
            v.checked_mul(mult).ok_or_else(bad)?
        };
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1_000_000 && b.is_multiple_of(1_000_000) {
            write!(f, "{}MB", b / 1_000_000)
        } else if b >= 1000 && b.is_multiple_of(1000) {
            write!(f, "{}KB", b / 1000)
        } else if b >= 1024 && b.is_multiple_of(1024) {
            write!(f, "{}KiB", b / 1024)
        } else {
            write!(f, "{b}B")
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}
