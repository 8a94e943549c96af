//! From a resource's outcome to its Ready/Synced/Blocked conditions.

use super::resources::{Condition, Conditions};
use crate::domain::{BlockReason, Instant};

/// Something outside the spec that prevents convergence.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub reason: BlockReason,
    pub message: String,
    /// When it may clear by itself.
    pub retry_at: Option<Instant>,
}

impl Block {
    pub fn new(reason: BlockReason, message: impl Into<String>) -> Block {
        Block {
            reason,
            message: message.into(),
            retry_at: None,
        }
    }
}

/// How one resource stands after planning.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub blocked: Option<Block>,
    /// Changes planned in this pass, in words.
    pub progressing: Option<String>,
    pub paused: bool,
    /// Ready even though Blocked is set: the block is informational (R10).
    pub informational: bool,
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: Instant,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: now,
        observed_generation: generation,
    }
}

impl Outcome {
    /// The service refused this resource's change earlier in the run: Blocked until it ends.
    pub fn refused(&mut self, block: &Block) {
        self.blocked = Some(block.clone());
        self.informational = false;
    }

    /// The conditions after this outcome, keeping transition times of unchanged statuses.
    pub fn conditions(
        &self,
        previous: &Conditions,
        generation: Option<i64>,
        now: Instant,
    ) -> Conditions {
        let mut c = previous.clone();
        let ready = match (&self.blocked, &self.progressing) {
            (Some(b), _) if !self.informational => condition(
                "Ready",
                false,
                b.reason.as_str(),
                &b.message,
                now,
                generation,
            ),
            (_, Some(p)) if self.paused => condition(
                "Ready",
                false,
                "Paused",
                &format!("paused with changes waiting: {p}"),
                now,
                generation,
            ),
            (_, Some(p)) => condition("Ready", false, "Reconciling", p, now, generation),
            _ => condition(
                "Ready",
                true,
                "UpToDate",
                "the licensing service matches the spec",
                now,
                generation,
            ),
        };
        c.set(ready);
        c.set(if self.paused {
            condition(
                "Synced",
                false,
                "Paused",
                "seatkeeper.dev/paused is set: observing only, changing nothing",
                now,
                generation,
            )
        } else {
            condition(
                "Synced",
                true,
                "ReconcileSuccess",
                "the last reconcile reached the licensing service",
                now,
                generation,
            )
        });
        c.set(match &self.blocked {
            Some(b) => condition(
                "Blocked",
                true,
                b.reason.as_str(),
                &b.message,
                now,
                generation,
            ),
            None => condition(
                "Blocked",
                false,
                "NotBlocked",
                "nothing outside the spec blocks convergence",
                now,
                generation,
            ),
        });
        c
    }

    pub fn blocked_reason(&self) -> Option<String> {
        self.blocked.as_ref().map(|b| b.reason.to_string())
    }
}
