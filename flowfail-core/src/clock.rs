//! Where the time comes from.
//!
//! The engine is pure and takes `now` as a value; the responder asks a [`Clock`]. A clock
//! anchored to tokio's clock makes whole incidents replay in virtual time: under
//! `#[tokio::test(start_paused = true)]` (or a paused runtime) an hour of waiting takes no wall
//! time at all.

use std::sync::{Arc, Mutex};

use chrono::{TimeDelta, Utc};

use crate::model::Timestamp;

#[derive(Debug)]
enum Source {
    System,
    Tokio {
        wall: Timestamp,
        start: tokio::time::Instant,
    },
    Manual(Mutex<Timestamp>),
}

/// A source of wall-clock time. Cheap to clone; clones share the source.
#[derive(Debug, Clone)]
pub struct Clock(Arc<Source>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(Source::System))
    }

    /// `wall` now, advancing with tokio's clock (virtual under paused time). Must be created
    /// inside a tokio runtime.
    pub fn tokio_anchored(wall: Timestamp) -> Self {
        Clock(Arc::new(Source::Tokio {
            wall,
            start: tokio::time::Instant::now(),
        }))
    }

    /// A clock that only moves when told to ([`Clock::advance`], [`Clock::set`]).
    pub fn manual(wall: Timestamp) -> Self {
        Clock(Arc::new(Source::Manual(Mutex::new(wall))))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match &*self.0 {
            Source::System => Utc::now(),
            Source::Tokio { wall, start } => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(*start);
                *wall + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX)
            }
            Source::Manual(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a manual clock forward (no effect on other clocks).
    pub fn advance(&self, by: std::time::Duration) {
        if let Source::Manual(t) = &*self.0 {
            let mut g = t.lock().unwrap_or_else(|p| p.into_inner());
            *g += TimeDelta::from_std(by).unwrap_or(TimeDelta::zero());
        }
    }

    /// Sets a manual clock (no effect on other clocks). May move backwards, to test clock jumps.
    pub fn set(&self, to: Timestamp) {
        if let Source::Manual(t) = &*self.0 {
            *t.lock().unwrap_or_else(|p| p.into_inner()) = to;
        }
    }
}
