//! What happened, written into the statuses. The executor reports each thing the service did
//! or refused as an [`Event`]; [`record`] is the one place outside planning that turns them
//! into status, and [`take_planned`] hands a plan's statuses to the resources. The executor
//! itself touches no status.

use super::resources::{
    AddOnStatus, LicenseAssignmentStatus, OwnedGroupLicence, OwnedLicence, Removal,
    SubscriptionStatus,
};
use super::{Action, Declared, Desired, Kind, ObjectRef, Observed, Op, Plan, UserChange};
use crate::domain::billing::CostPreview;
use crate::domain::{DATA_RETENTION_DAYS, Instant, Organization, Refusal};
use jiff::ToSpan;

/// Something the executor saw happen, for the statuses to record.
pub enum Event<'a> {
    /// A pass is about to make these changes: each LicenseAssignment claims the licences it
    /// will assign, before the calls (see [`claim_intended`]).
    Claiming {
        actions: &'a [Action],
        observed: &'a Observed,
    },
    /// A claimed change was refused or never sent: its claim is withdrawn.
    NotMade {
        action: &'a Action,
        change: &'a UserChange,
        observed: &'a Observed,
    },
    /// Users' changes of one action went through.
    Licensed {
        action: &'a Action,
        changes: &'a [UserChange],
        /// The organization as the pass read it.
        before: Option<&'a Organization>,
        now: Instant,
    },
    /// An add-on's auto-assignment (R25) passed a user over: the service refused them.
    AutoAssignRefused {
        resource: &'a ObjectRef,
        user: &'a str,
        refusal: &'a Refusal,
    },
    /// A subscription or an add-on was bought (an add-on on `base`).
    Bought {
        resource: &'a ObjectRef,
        id: String,
        base: Option<String>,
    },
    /// A group's licences changed.
    GroupLicensed { action: &'a Action, now: Instant },
    /// A group's change was refused: the licences it claimed are not the resource's.
    GroupNotMade {
        action: &'a Action,
        observed: &'a Observed,
    },
    /// A seat count or an add-on's quantity changed.
    SeatsChanged {
        resource: &'a ObjectRef,
        cost: CostPreview,
    },
}

/// Writes what happened into the statuses of `desired`.
pub fn record(desired: &mut Desired, event: Event<'_>) {
    match event {
        Event::Claiming { actions, observed } => claim_intended(desired, actions, observed),
        Event::NotMade {
            action,
            change,
            observed,
        } => unclaim(desired, action, change, observed),
        Event::Licensed {
            action,
            changes,
            before,
            now,
        } => licensed(desired, action, changes, before, now),
        Event::AutoAssignRefused {
            resource,
            user,
            refusal,
        } => auto_assigned(desired, resource, user, Err(refusal)),
        Event::Bought { resource, id, base } => bought(desired, resource, id, base),
        Event::GroupLicensed { action, now } => group_licensed(desired, action, now),
        Event::GroupNotMade { action, observed } => group_unclaimed(desired, action, observed),
        Event::SeatsChanged { resource, cost } => {
            if let Some(status) = purchase_status(desired, resource) {
                status.changed(cost);
            }
        }
    }
}

/// Users' changes of one action went through: the LicenseAssignment owns the licences they
/// newly assigned and records their removals (R19); an add-on counts its auto-assignments.
fn licensed(
    desired: &mut Desired,
    action: &Action,
    changes: &[UserChange],
    before: Option<&Organization>,
    now: Instant,
) {
    let resource = action.resource();
    if resource.kind == Kind::AddOn {
        for change in changes {
            auto_assigned(desired, &resource, &change.user, Ok(()));
        }
        return;
    }
    let Some(d) = find(&mut desired.assignments, &resource) else {
        return;
    };
    let added: Vec<Vec<String>> = changes.iter().map(|c| newly_added(c, before)).collect();
    super::record_owned(&mut d.status.owned, changes.iter().zip(&added));
    for change in changes {
        record_removals(&mut d.status, change, now);
    }
}

/// The products a change gives its user that the user did not hold when the pass read the
/// tenant: the licences a LicenseAssignment owns once the change is made.
fn newly_added(change: &UserChange, before: Option<&Organization>) -> Vec<String> {
    let user = before.and_then(|o| o.user(&change.user));
    change
        .add
        .iter()
        .filter(|l| user.is_none_or(|u| u.licence(&l.product).is_none()))
        .map(|l| l.product.clone())
        .collect()
}

/// Before a pass changes anything, each LicenseAssignment's records already own the licences
/// it is about to assign (as a purchase's key is recorded before the purchase): a run stopped
/// or killed half-way leaves no licence seatkeeper assigned that its records do not name, so
/// a later `delete` or a dropped user still finds it. A claim whose change is refused or never
/// sent is withdrawn ([`unclaim`]); one whose outcome is unknown (a lost reply) stays, and
/// only ever names a licence the resource asked for.
fn claim_intended(desired: &mut Desired, actions: &[Action], observed: &Observed) {
    for action in actions {
        if let Op::AssignGroupLicences { group, add, .. } = &action.op {
            let Some(d) = find(&mut desired.assignments, &action.resource()) else {
                continue;
            };
            let held = observed
                .organizations
                .get(&action.organization)
                .and_then(|o| o.group(group).ok());
            for l in add {
                if held.is_none_or(|g| g.licence(&l.product).is_none()) {
                    d.status.owned_groups.push(OwnedGroupLicence {
                        group: group.clone(),
                        product: l.product.clone(),
                    });
                }
            }
            d.status.owned_groups.sort();
            d.status.owned_groups.dedup();
            continue;
        }
        let (Op::AssignLicenses { users }, Kind::LicenseAssignment) = (&action.op, action.kind)
        else {
            continue;
        };
        let Some(d) = find(&mut desired.assignments, &action.resource()) else {
            continue;
        };
        let before = observed.organizations.get(&action.organization);
        let owned = &mut d.status.owned;
        let len = owned.len();
        for change in users {
            owned.extend(
                newly_added(change, before)
                    .into_iter()
                    .map(|product| OwnedLicence {
                        user: change.user.clone(),
                        product,
                    }),
            );
        }
        if owned.len() != len {
            owned.sort();
            owned.dedup();
        }
    }
}

/// A claimed change was refused or not sent: its new licences are not the resource's.
fn unclaim(desired: &mut Desired, action: &Action, change: &UserChange, observed: &Observed) {
    if action.kind != Kind::LicenseAssignment {
        return;
    }
    let added = newly_added(change, observed.organizations.get(&action.organization));
    if added.is_empty() {
        return;
    }
    if let Some(d) = find(&mut desired.assignments, &action.resource()) {
        d.status
            .owned
            .retain(|o| !(o.user.eq_ignore_ascii_case(&change.user) && added.contains(&o.product)));
    }
}

/// A group's licences changed: what it gave the group is the resource's (claimed before
/// the call), what it took is no longer, and each member who lost a licence is recorded (R19).
fn group_licensed(desired: &mut Desired, action: &Action, now: Instant) {
    let Op::AssignGroupLicences {
        group,
        remove,
        members_losing,
        ..
    } = &action.op
    else {
        return;
    };
    let Some(d) = find(&mut desired.assignments, &action.resource()) else {
        return;
    };
    d.status
        .owned_groups
        .retain(|o| !(o.group == *group && remove.contains(&o.product)));
    for user in members_losing {
        let change = UserChange {
            user: user.clone(),
            add: vec![],
            remove: remove.clone(),
            plans_only: vec![],
        };
        record_removals(&mut d.status, &change, now);
    }
}

/// A group's change was refused: the group licences it claimed are withdrawn (those the
/// group held before were never claimed).
fn group_unclaimed(desired: &mut Desired, action: &Action, observed: &Observed) {
    let Op::AssignGroupLicences { group, add, .. } = &action.op else {
        return;
    };
    let held = observed
        .organizations
        .get(&action.organization)
        .and_then(|o| o.group(group).ok());
    let claimed: Vec<&str> = add
        .iter()
        .filter(|l| held.is_none_or(|g| g.licence(&l.product).is_none()))
        .map(|l| l.product.as_str())
        .collect();
    if claimed.is_empty() {
        return;
    }
    if let Some(d) = find(&mut desired.assignments, &action.resource()) {
        d.status
            .owned_groups
            .retain(|o| !(o.group == *group && claimed.contains(&o.product.as_str())));
    }
}

/// One user's result of an add-on's one-time auto-assignment (R25): once any result is in,
/// the assignment has run and is not planned again.
fn auto_assigned(desired: &mut Desired, r: &ObjectRef, user: &str, result: Result<(), &Refusal>) {
    let Some(d) = (r.kind == Kind::AddOn)
        .then(|| find(&mut desired.add_ons, r))
        .flatten()
    else {
        return;
    };
    let status = &mut d.status;
    status.auto_assign_due = false;
    let assigned = status.auto_assigned.get_or_insert(0);
    match result {
        Ok(()) => *assigned += 1,
        Err(refusal) => super::note_skipped(
            &mut status.auto_assign_skipped,
            super::skipped(user, refusal),
        ),
    }
}

fn record_removals(status: &mut LicenseAssignmentStatus, change: &UserChange, now: Instant) {
    for p in &change.remove {
        status.removals.push(Removal {
            user: change.user.clone(),
            product: p.clone(),
            removed_at: now,
            data_retained_until: now + (DATA_RETENTION_DAYS * 24).hours(),
        });
    }
}

/// Writes an action's effect into the status of a Subscription or an AddOn.
trait PurchaseStatus {
    fn bought(&mut self, id: String, base: Option<String>);
    fn changed(&mut self, cost: CostPreview);
}

impl PurchaseStatus for SubscriptionStatus {
    fn bought(&mut self, id: String, _: Option<String>) {
        self.subscription_id = Some(id);
        self.purchase = None;
    }
    fn changed(&mut self, cost: CostPreview) {
        self.last_seat_change = Some(cost);
    }
}

impl PurchaseStatus for AddOnStatus {
    fn bought(&mut self, id: String, base: Option<String>) {
        self.add_on_id = Some(id);
        if base.is_some() {
            self.base_subscription_id = base;
        }
        self.purchase = None;
    }
    fn changed(&mut self, cost: CostPreview) {
        self.last_seat_change = Some(cost);
    }
}

/// The status a purchase-side action writes to: a Subscription's or an AddOn's.
fn purchase_status<'d>(
    desired: &'d mut Desired,
    r: &ObjectRef,
) -> Option<&'d mut dyn PurchaseStatus> {
    match r.kind {
        Kind::Subscription => find(&mut desired.subscriptions, r).map(|d| &mut d.status as _),
        Kind::AddOn => find(&mut desired.add_ons, r).map(|d| &mut d.status as _),
        Kind::LicenseAssignment => None,
    }
}

fn bought(desired: &mut Desired, r: &ObjectRef, id: String, base: Option<String>) {
    if let Some(d) = find(&mut desired.add_ons, r)
        && r.kind == Kind::AddOn
        && d.spec.auto_assign
        && d.spec.add_on_id.is_none()
    {
        // R25: assigned once, at the purchase; planned in the next pass like any licence change.
        d.status.auto_assign_due = true;
    }
    if let Some(status) = purchase_status(desired, r) {
        status.bought(id, base);
    }
}

/// The plan's statuses become the resources' statuses (ownership and ids are carried through).
/// The plan's statuses move into the declared state (not copied: at 100k users a copy is tens
/// of megabytes); the plan keeps empty ones. The statuses reached are `desired`'s.
pub fn take_planned(desired: &mut Desired, plan: &mut Plan) {
    for (d, s) in desired
        .subscriptions
        .iter_mut()
        .zip(&mut plan.subscriptions)
    {
        d.status = std::mem::take(s);
    }
    for (d, s) in desired.assignments.iter_mut().zip(&mut plan.assignments) {
        d.status = std::mem::take(s);
    }
    for (d, s) in desired.add_ons.iter_mut().zip(&mut plan.add_ons) {
        d.status = std::mem::take(s);
    }
}

fn find<'a, S, St>(
    list: &'a mut [Declared<S, St>],
    r: &ObjectRef,
) -> Option<&'a mut Declared<S, St>> {
    list.iter_mut()
        .find(|d| d.meta.namespace == r.namespace && d.meta.name == r.name)
}
