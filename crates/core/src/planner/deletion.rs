//! What deleting a resource takes: nothing (it goes at once, whatever else blocks it), or its
//! deletion policy carried out in the licensing service. A pure function of the declared
//! object, so the controller can let such objects go before it asks the service anything.

use super::conditions::Block;
use super::resources::{
    ABANDON_ON_DELETE_ANNOTATION, AddOnIntent, AddOnStatus, AssignmentDeletionPolicy,
    AssignmentIntent, LicenseAssignmentStatus, SubscriptionDeletionPolicy, SubscriptionIntent,
    SubscriptionStatus,
};
use super::{Declared, Desired, Kind, Meta, ObjectRef};

/// Why a deleted resource needs nothing of the licensing service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// `seatkeeper.dev/abandon-on-delete: "true"`: what it manages stays, unmanaged.
    Abandoned,
    /// Nothing was bought, adopted or assigned for it.
    NothingManaged,
    /// Its policy leaves what it manages as it is (Orphan, Retain).
    PolicyKeeps,
}

impl Release {
    pub fn describe(self) -> &'static str {
        match self {
            Release::Abandoned => "abandoned on request (seatkeeper.dev/abandon-on-delete)",
            Release::NothingManaged => "nothing was bought or assigned for it",
            Release::PolicyKeeps => "its deletionPolicy keeps what it manages",
        }
    }
}

/// A Subscription or an AddOn manages something once an id is on record, a purchase is in
/// flight (its key recorded before the purchase was attempted), or it adopts one by id. None:
/// its policy must run.
pub(super) fn of_purchase(
    meta: &Meta,
    policy: SubscriptionDeletionPolicy,
    manages: bool,
) -> Option<Release> {
    if meta.flags.abandon_on_delete {
        Some(Release::Abandoned)
    } else if !manages {
        Some(Release::NothingManaged)
    } else if policy == SubscriptionDeletionPolicy::Orphan {
        Some(Release::PolicyKeeps)
    } else {
        None
    }
}

fn of_subscription(d: &Declared<SubscriptionIntent, SubscriptionStatus>) -> Option<Release> {
    let manages = d.status.subscription_id.is_some()
        || d.status.purchase.is_some()
        || d.spec.subscription_id.is_some();
    of_purchase(&d.meta, d.spec.deletion_policy, manages)
}

pub(super) fn of_add_on(d: &Declared<AddOnIntent, AddOnStatus>) -> Option<Release> {
    let manages =
        d.status.add_on_id.is_some() || d.status.purchase.is_some() || d.spec.add_on_id.is_some();
    of_purchase(&d.meta, d.spec.deletion_policy, manages)
}

/// A LicenseAssignment manages the licences its status owns (claimed before they are
/// assigned, so nothing it assigned is missing there).
pub(super) fn of_assignment(
    d: &Declared<AssignmentIntent, LicenseAssignmentStatus>,
) -> Option<Release> {
    if d.meta.flags.abandon_on_delete {
        Some(Release::Abandoned)
    } else if d.status.owned.is_empty() && d.status.owned_groups.is_empty() {
        Some(Release::NothingManaged)
    } else if d.spec.deletion_policy == AssignmentDeletionPolicy::Retain {
        Some(Release::PolicyKeeps)
    } else {
        None
    }
}

/// The deleted resources that need nothing of the licensing service, with why.
pub fn releasable(desired: &Desired) -> Vec<(ObjectRef, Release)> {
    let mut out = vec![];
    let mut note = |kind, meta: &Meta, release: Option<Release>| {
        if let (true, Some(why)) = (meta.deleting, release) {
            out.push((ObjectRef::of(kind, meta), why));
        }
    };
    for d in &desired.subscriptions {
        note(Kind::Subscription, &d.meta, of_subscription(d));
    }
    for d in &desired.assignments {
        note(Kind::LicenseAssignment, &d.meta, of_assignment(d));
    }
    for d in &desired.add_ons {
        note(Kind::AddOn, &d.meta, of_add_on(d));
    }
    out
}

/// A deletion policy that cannot be carried out now: the reason stays, the message says so and
/// names the way out.
pub(super) fn blocked(b: Block) -> Block {
    Block {
        message: format!(
            "deletion waits: {}; to let it go without carrying out its deletionPolicy, annotate {ABANDON_ON_DELETE_ANNOTATION}=\"true\"",
            b.message
        ),
        ..b
    }
}
