//! Time comes from a clock that is passed in, so tests and `--now` control it.

use crate::domain::Instant;
use std::sync::Mutex;

pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real time, to the second (Kubernetes timestamps have no fractions).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::from_second(Instant::now().as_second()).expect("now is in range")
    }
}

/// A clock that stands still until moved: for tests and `--now`.
pub struct FixedClock(Mutex<Instant>);

impl FixedClock {
    pub fn new(at: Instant) -> Self {
        FixedClock(Mutex::new(at))
    }

    pub fn set(&self, at: Instant) {
        *self.0.lock().expect("clock lock") = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Instant {
        *self.0.lock().expect("clock lock")
    }
}
