//! A sign of life during a long `apply` or `delete`: one line on standard error, redrawn in
//! place, saying what the run is doing (reading the tenant, applying, saving) and counting
//! what the licensing service has done so far. Shown only on a terminal, from the run's first
//! second on (a timer shows it even while the run is busy planning); nothing on a pipe or in
//! a file.

use crate::backend::Result;
use crate::backend::hooked::Hook;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

/// Runs shorter than this show nothing.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// What the run is doing.
const STARTING: u8 = 0;
const READING: u8 = 1;
const APPLYING: u8 = 2;
const SAVING: u8 = 3;

#[derive(Default)]
struct Counts {
    phase: AtomicU8,
    users: AtomicUsize,
    other: AtomicUsize,
}

impl Counts {
    fn message(&self) -> String {
        let users = self.users.load(Ordering::Relaxed);
        let other = self.other.load(Ordering::Relaxed);
        let phase = match self.phase.load(Ordering::Relaxed) {
            STARTING => return "reading the manifests and the tenant".into(),
            READING if users == 0 && other == 0 => return "reading the tenant".into(),
            SAVING => "saving",
            _ => "applying",
        };
        if users == 0 && other == 0 {
            return phase.into();
        }
        let mut line = format!(
            "{phase}: licences changed for {}",
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

pub struct Progress {
    bar: ProgressBar,
    counts: Arc<Counts>,
}

impl Progress {
    /// The line, drawn once the run has lasted [`QUIET_FOR`] (when `shown`, on a terminal
    /// only). Needs a tokio runtime: the timer that shows it runs beside the run.
    pub fn new(shown: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
        );
        let counts = Arc::new(Counts::default());
        if shown && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let (bar, counts) = (bar.clone(), counts.clone());
            tokio::spawn(async move {
                tokio::time::sleep(QUIET_FOR).await;
                if !bar.is_finished() {
                    bar.set_message(counts.message());
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                    bar.enable_steady_tick(Duration::from_millis(200));
                }
            });
        }
        Progress { bar, counts }
    }

    /// The results are being saved (the tenant file, seatkeeper's records).
    pub fn saving(&self) {
        self.set_phase(SAVING);
    }

    /// Clears the line, if one was drawn, before the results are printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn set_phase(&self, phase: u8) {
        self.counts.phase.store(phase, Ordering::Relaxed);
        self.bar.set_message(self.counts.message());
    }
}

impl Hook for Progress {
    async fn before(&self, operation: &'static str) -> Result<()> {
        let phase = self.counts.phase.load(Ordering::Relaxed);
        match operation {
            "snapshot" if phase == STARTING => self.set_phase(READING),
            "snapshot" => {}
            _ => self.set_phase(APPLYING),
        }
        Ok(())
    }

    fn done(&self, operation: &'static str, items: usize) {
        if operation == "assignLicenses" {
            self.counts.users.fetch_add(items, Ordering::Relaxed);
        } else if operation != "snapshot" {
            self.counts.other.fetch_add(items, Ordering::Relaxed);
        }
        self.bar.set_message(self.counts.message());
    }

    fn saving(&self) {
        Progress::saving(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_what_the_run_is_doing() {
        let c = Counts::default();
        assert_eq!(c.message(), "reading the manifests and the tenant");
        c.phase.store(READING, Ordering::Relaxed);
        assert_eq!(c.message(), "reading the tenant");
        c.phase.store(APPLYING, Ordering::Relaxed);
        assert_eq!(c.message(), "applying");
        c.users.store(20_000, Ordering::Relaxed);
        assert_eq!(c.message(), "applying: licences changed for 20000 users");
        c.phase.store(SAVING, Ordering::Relaxed);
        c.other.store(2, Ordering::Relaxed);
        assert_eq!(
            c.message(),
            "saving: licences changed for 20000 users, 2 subscription changes"
        );
    }
}
