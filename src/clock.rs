//! Time comes from a clock that is passed in, so tests and `--now` control it.

use crate::domain::Instant;
use jiff::ToSpan;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    /// Wait this many seconds (a backend's Retry-After). A fixed clock moves instead of waiting.
    fn sleep(&self, seconds: u64) -> Sleep<'_>;
}

/// The real time, to the second (Kubernetes timestamps have no fractions).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::from_second(Instant::now().as_second()).expect("now is in range")
    }

    fn sleep(&self, seconds: u64) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(std::time::Duration::from_secs(seconds)))
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

    fn sleep(&self, seconds: u64) -> Sleep<'_> {
        let mut t = self.0.lock().expect("clock lock");
        *t += (seconds as i64).seconds();
        Box::pin(std::future::ready(()))
    }
}
