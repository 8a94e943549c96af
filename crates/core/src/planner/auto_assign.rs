//! R25: an add-on bought with `autoAssign` is assigned once, at the purchase, to every user of
//! the organization who holds no licence, as far as the rules and the free quantity allow.
//! Planned like any licence change, so `plan` shows it and it goes in batches of 20.

use super::conditions::Outcome;
use super::resources::{AddOnIntent, AddOnStatus, UserState, UserStatus};
use super::{Kind, Op, Planner, UserChange};
use crate::domain::rules::{check_free_seats, check_user_change};
use crate::domain::{Licence, Refusal};

/// At most this many skipped users are listed in status (the count is in the message).
pub const MAX_SKIPPED_LISTED: usize = 100;

/// Where an add-on's one-time auto-assignment stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct AutoAssign {
    /// Bought with autoAssign; the assignment has not run yet.
    pub due: bool,
    /// Users who got it (set once it has run).
    pub assigned: Option<i64>,
    /// Users without a licence who could not get it, and why.
    pub skipped: Vec<UserStatus>,
}

impl AutoAssign {
    pub fn from_status(status: &AddOnStatus) -> AutoAssign {
        AutoAssign {
            due: status.auto_assign_due,
            assigned: status.auto_assigned,
            skipped: status.auto_assign_skipped.clone(),
        }
    }
}

/// A user the auto-assignment passes over, with the rule that stops it.
pub fn skipped(user: &str, refusal: &Refusal) -> UserStatus {
    UserStatus {
        user: user.to_string(),
        state: UserState::Blocked,
        reason: Some(refusal.reason().to_string()),
        message: Some(refusal.message()),
    }
}

/// Records one skipped user, keeping the list within [`MAX_SKIPPED_LISTED`].
pub fn note_skipped(list: &mut Vec<UserStatus>, user: UserStatus) {
    if list.len() < MAX_SKIPPED_LISTED {
        list.push(user);
    }
}

impl Planner<'_> {
    /// Plans the auto-assignment of a bought add-on whose turn it is.
    pub(super) fn plan_auto_assign(
        &mut self,
        d: &super::Declared<AddOnIntent, AddOnStatus>,
        state: &mut AutoAssign,
        outcome: &mut Outcome,
    ) {
        let Ok(org) = self.inp.gate(&d.meta, &d.spec.organization) else {
            return;
        };
        let catalog = self.inp.observed.catalog.clone();
        let (organization, product) = (d.spec.organization.as_str(), d.spec.product.as_str());
        let paused = d.meta.flags.paused;
        let licence = [Licence::new(product, &[])];
        let mut changes = vec![];
        let mut skipped_now = 0usize;
        for observed_user in &org.users {
            let user = self.planned_user(observed_user);
            if !user.licenses.is_empty() {
                continue;
            }
            let checked = check_user_change(org, &catalog, &user, &licence, &[], self.inp.now)
                .and_then(|c| {
                    let free = self.pool(organization, product).available();
                    check_free_seats(product, 1, free).map(|()| c)
                });
            let checked = match checked {
                Ok(c) => c,
                Err(r) => {
                    skipped_now += 1;
                    note_skipped(&mut state.skipped, skipped(&user.upn, &r));
                    continue;
                }
            };
            if !paused {
                self.pool_mut(organization, product).consumed += 1;
            }
            self.plan_licences(observed_user, checked.after);
            changes.push(UserChange {
                user: user.upn.clone(),
                add: licence.to_vec(),
                remove: vec![],
                plans_only: vec![],
            });
        }
        if changes.is_empty() {
            state.due = false;
            state.assigned = Some(state.assigned.unwrap_or(0));
            return;
        }
        let note = format!(
            "assigning {product} to {} who hold no licence (R25){}",
            crate::domain::counted(changes.len(), "user", "users"),
            if skipped_now > 0 {
                format!("; {skipped_now} cannot get it (see status.autoAssignSkipped)")
            } else {
                String::new()
            }
        );
        outcome.progressing = Some(match outcome.progressing.take() {
            Some(p) => format!("{p}, {note}"),
            None => note,
        });
        if !paused {
            let op = Op::AssignLicenses { users: changes };
            self.push(&d.meta, Kind::AddOn, organization, op, false);
        }
    }
}
