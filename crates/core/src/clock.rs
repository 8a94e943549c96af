//! Time comes from a clock that is passed in, so tests and `--now` control it; so does a
//! request to stop ([`Interrupt`]: Ctrl-C, SIGTERM).

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

/// A request to stop a run early (Ctrl-C, SIGTERM): the executor finishes the call in flight,
/// starts no other, and returns with everything done on record. Clones share one request.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(std::sync::Arc<InterruptState>);

#[derive(Default)]
struct InterruptState {
    requested: std::sync::atomic::AtomicBool,
    /// Tests: the request comes by itself at the n-th look (0: never).
    after_looks: std::sync::atomic::AtomicU64,
    /// A run's own interrupt ([`Interrupt::fenced`]): the process's, and a condition that
    /// must hold for the run to go on (its replica still owns the organization).
    parent: Option<Interrupt>,
    fence: Option<Fence>,
}

/// What a fenced run must still hold to make its next change.
pub type Fence = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for InterruptState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt")
            .field("requested", &self.requested)
            .field("fenced", &self.fence.is_some())
            .finish()
    }
}

impl Interrupt {
    pub fn request(&self) {
        self.0
            .requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a stop was requested; the executor looks before each call that changes
    /// something.
    pub fn requested(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.0.after_looks.load(SeqCst);
        if n > 0 && self.0.after_looks.fetch_sub(1, SeqCst) == 1 {
            self.request();
        }
        self.was_requested()
    }

    /// Whether a stop was requested, without counting as a look.
    pub fn was_requested(&self) -> bool {
        if self.0.requested.load(std::sync::atomic::Ordering::SeqCst) {
            return true;
        }
        let parent = self.0.parent.as_ref().is_some_and(Interrupt::was_requested);
        let fenced = self.0.fence.as_ref().is_some_and(|holds| !holds());
        if parent || fenced {
            // Once stopped, a run stays stopped (the fence may hold again later: the run
            // does not resume on its own).
            self.request();
        }
        parent || fenced
    }

    /// A run's own interrupt: stopped when this one is, and as soon as `fence` no longer
    /// holds (a replica whose shard Lease lapsed makes no further change).
    pub fn fenced(&self, fence: Fence) -> Interrupt {
        Interrupt(std::sync::Arc::new(InterruptState {
            parent: Some(self.clone()),
            fence: Some(fence),
            ..Default::default()
        }))
    }

    /// An interrupt that arrives by itself at the executor's `looks`-th look (so at a chosen
    /// point of a run): for tests and simulations of Ctrl-C.
    pub fn after_looks(looks: u64) -> Interrupt {
        let i = Interrupt::default();
        i.0.after_looks
            .store(looks, std::sync::atomic::Ordering::SeqCst);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_fenced_run_stops_when_its_fence_fails_and_when_the_process_stops() {
        let process = Interrupt::default();
        let owned = std::sync::Arc::new(AtomicBool::new(true));
        let o = owned.clone();
        let run = process.fenced(std::sync::Arc::new(move || o.load(Ordering::SeqCst)));
        assert!(!run.requested());
        owned.store(false, Ordering::SeqCst);
        assert!(run.requested(), "the fence no longer holds: stop");
        owned.store(true, Ordering::SeqCst);
        assert!(run.requested(), "a stopped run does not resume by itself");
        assert!(!process.was_requested(), "the process goes on");

        let o = owned.clone();
        let other = process.fenced(std::sync::Arc::new(move || o.load(Ordering::SeqCst)));
        process.request();
        assert!(other.was_requested(), "a process stop reaches every run");
    }
}
