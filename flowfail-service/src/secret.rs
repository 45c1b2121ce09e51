//! Secrets by reference ([`SecretRef`]): an environment variable or a private file, never a
//! value in the config.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use flowfail_core::{Error, Result};

/// A secret, by reference: an environment variable or a file. Never inline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretRef {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file (one trailing newline removed), e.g. a mounted Secret. The
    /// file must be readable by its owner only and at most 64 KiB.
    File(PathBuf),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ref {
            env: Option<String>,
            file: Option<PathBuf>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ref(Ref),
            Inline(serde::de::IgnoredAny),
        }
        match Raw::deserialize(d)? {
            Raw::Ref(Ref {
                env: Some(e),
                file: None,
            }) => Ok(SecretRef::Env(e)),
            Raw::Ref(Ref {
                env: None,
                file: Some(f),
            }) => Ok(SecretRef::File(f)),
            Raw::Ref(_) => Err(serde::de::Error::custom(
                "a secret reference names exactly one of `env` or `file`",
            )),
            Raw::Inline(_) => Err(serde::de::Error::custom(
                "a secret given inline is refused: write { env = \"VAR\" } or { file = \"/path\" }",
            )),
        }
    }
}

impl SecretRef {
    /// Reads the secret (offline: the environment or a local file).
    pub fn resolve(&self, what: &str) -> Result<SecretString> {
        let value = match self {
            SecretRef::Env(var) => std::env::var(var).map_err(|_| {
                Error::invalid_input(format!("{what}: environment variable {var} is not set"))
            })?,
            SecretRef::File(path) => read_secret_file(what, path)?,
        };
        if value.is_empty() {
            return Err(Error::invalid_input(format!("{what}: the secret is empty")));
        }
        Ok(SecretString::from(value))
    }
}

/// The largest secret file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A secret file's contents: refused when group or others may read it, or when it is larger
/// than [`MAX_SECRET_FILE`]; one trailing newline (`\n` or `\r\n`) removed, nothing else (a
/// token's own spaces are part of it). Errors name the file, never its contents.
fn read_secret_file(what: &str, path: &Path) -> Result<String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| {
        Error::invalid_input(format!("{what}: cannot read {}: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o777;
        // The group may read only when it is this process's own group: a Kubernetes Secret
        // mounted with `fsGroup` and mode 0440 is the pod's alone.
        let own_group = meta.gid() == rustix::process::getegid().as_raw();
        if mode & 0o037 != 0 || (mode & 0o040 != 0 && !own_group) {
            return Err(Error::invalid_input(format!(
                "{what}: {} is readable by group or others (mode {mode:03o}): make it 0400 or 0600, or 0440 with this process's own group (a mounted Secret: defaultMode 0440 and the pod's fsGroup)",
                path.display()
            )));
        }
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(Error::invalid_input(format!(
            "{what}: {} is larger than {MAX_SECRET_FILE} bytes: not a secret",
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if let Some(t) = text.strip_suffix('\n') {
        let t = t.strip_suffix('\r').unwrap_or(t);
        text.truncate(t.len());
    }
    Ok(text)
}
