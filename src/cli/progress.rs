//! A sign of life during a long `apply` or `delete`: one line on standard error, redrawn in
//! place, counting what the licensing service has done so far. Shown only on a terminal and
//! only once a run has taken a second; nothing on a pipe or in a file.

use crate::backend::Result;
use crate::backend::hooked::Hook;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs shorter than this show nothing.
const QUIET_FOR: Duration = Duration::from_secs(1);

pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    terminal: bool,
    users: AtomicUsize,
    other: AtomicUsize,
}

impl Progress {
    pub fn new() -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{spinner} applying: {msg} ({elapsed})")
                .expect("a valid template"),
        );
        Progress {
            bar,
            started: Instant::now(),
            terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            users: AtomicUsize::new(0),
            other: AtomicUsize::new(0),
        }
    }

    /// Clears the line, if one was drawn, before the results are printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn message(&self) -> String {
        let users = self.users.load(Ordering::Relaxed);
        let other = self.other.load(Ordering::Relaxed);
        let mut line = format!(
            "licences changed for {}",
            crate::domain::counted(users, "user", "users")
        );
        if other > 0 {
            line += &format!(
                ", {}",
                crate::domain::counted(other, "subscription change", "subscription changes")
            );
        }
        line
    }
}

impl Hook for Progress {
    async fn before(&self, _: &'static str) -> Result<()> {
        Ok(())
    }

    fn done(&self, operation: &'static str, items: usize) {
        if operation == "assignLicenses" {
            self.users.fetch_add(items, Ordering::Relaxed);
        } else if operation != "snapshot" {
            self.other.fetch_add(items, Ordering::Relaxed);
        }
        if !self.terminal || self.started.elapsed() < QUIET_FOR {
            return;
        }
        // Hidden until the run has lasted a while; then drawn on stderr.
        if self.bar.is_hidden() {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.enable_steady_tick(Duration::from_millis(200));
        }
        self.bar.set_message(self.message());
    }
}
