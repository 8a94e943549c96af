//! From a resource's outcome to its conditions: Ready, Synced and Blocked, and kstatus's
//! Reconciling and Stalled.

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
        // kstatus (Flux `wait: true`, kpt, cli-utils): Reconciling while it is on its way
        // (changes in flight, or a block that clears by itself, such as a credit check);
        // Stalled while a block needs a person.
        let stalled = self
            .blocked
            .as_ref()
            .filter(|b| !self.informational && b.retry_at.is_none());
        let waiting = self
            .blocked
            .as_ref()
            .filter(|b| !self.informational && b.retry_at.is_some());
        c.set(match (stalled, waiting, &self.progressing) {
            (Some(_), _, _) => condition(
                "Reconciling",
                false,
                "Stalled",
                "stopped until the Blocked reason is dealt with",
                now,
                generation,
            ),
            (None, Some(b), _) => condition(
                "Reconciling",
                true,
                b.reason.as_str(),
                &b.message,
                now,
                generation,
            ),
            (None, None, Some(p)) if !self.paused => {
                condition("Reconciling", true, "Reconciling", p, now, generation)
            }
            _ => condition(
                "Reconciling",
                false,
                "Idle",
                "no change in progress",
                now,
                generation,
            ),
        });
        c.set(match stalled {
            Some(b) => condition(
                "Stalled",
                true,
                b.reason.as_str(),
                &b.message,
                now,
                generation,
            ),
            None => condition(
                "Stalled",
                false,
                "NotStalled",
                "nothing needs a person's action",
                now,
                generation,
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        "2026-11-21T09:00:00Z".parse().unwrap()
    }

    fn kstatus(o: &Outcome) -> (bool, bool, bool) {
        let c = o.conditions(&Conditions::default(), Some(1), now());
        (
            c.is_true("Ready"),
            c.is_true("Reconciling"),
            c.is_true("Stalled"),
        )
    }

    #[test]
    fn kstatus_reconciling_while_on_its_way_stalled_when_a_person_must_act() {
        let ready = Outcome::default();
        assert_eq!(kstatus(&ready), (true, false, false), "Current");
        let buying = Outcome {
            progressing: Some("buying 3 seats".into()),
            ..Outcome::default()
        };
        assert_eq!(kstatus(&buying), (false, true, false), "InProgress");
        // R03: a credit check clears by itself: on its way, not stalled.
        let mut credit = Block::new(
            BlockReason::CreditCheckPending,
            "waiting for the credit check",
        );
        credit.retry_at = Some(now());
        let waiting = Outcome {
            blocked: Some(credit),
            ..Outcome::default()
        };
        assert_eq!(kstatus(&waiting), (false, true, false), "InProgress");
        // R05: only the reseller changes seats: a person must act.
        let reseller = Outcome {
            blocked: Some(Block::new(
                BlockReason::ResellerManaged,
                "the partner changes seats",
            )),
            ..Outcome::default()
        };
        assert_eq!(kstatus(&reseller), (false, false, true), "Failed");
        // R10 is informational: Ready, neither reconciling nor stalled.
        let informational = Outcome {
            blocked: Some(Block::new(
                BlockReason::CancellationWindowClosed,
                "turned off",
            )),
            informational: true,
            ..Outcome::default()
        };
        assert_eq!(kstatus(&informational), (true, false, false));
        // Paused: nothing in progress, whatever waits.
        let paused = Outcome {
            progressing: Some("seats 2 → 3".into()),
            paused: true,
            ..Outcome::default()
        };
        assert_eq!(kstatus(&paused), (false, false, false));
    }
}
