//! The one intent builder: Kubernetes objects become the planner's declared resources here,
//! for `plan`/`apply` and for the controller alike; and declared statuses go back to JSON here
//! for the two status writers (the tenant file's records, the status subresource).

use crate::domain::Instant;
use crate::planner::resources::{
    ACKNOWLEDGE_DOWNGRADE_ANNOTATION, ALLOW_BULK_REMOVAL_ANNOTATION,
    ALLOW_LARGE_PURCHASE_ANNOTATION, PAUSED_ANNOTATION,
};
use crate::planner::{Declared, Desired, Flags, Kind, Meta};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use std::collections::BTreeMap;

/// What the `seatkeeper.dev/…` annotations ask for; only `"true"` sets one.
pub fn flags(annotations: Option<&BTreeMap<String, String>>) -> Flags {
    let on = |name: &str| {
        annotations
            .and_then(|a| a.get(name))
            .is_some_and(|v| v == "true")
    };
    Flags {
        paused: on(PAUSED_ANNOTATION),
        allow_bulk_removal: on(ALLOW_BULK_REMOVAL_ANNOTATION),
        acknowledge_downgrade: on(ACKNOWLEDGE_DOWNGRADE_ANNOTATION),
        allow_large_purchase: on(ALLOW_LARGE_PURCHASE_ANNOTATION),
    }
}

/// What the planner needs of an object's metadata. `created_at`, `uid` and `deleting` come
/// from the cluster, or from the tenant file's records without one.
pub fn meta(m: &ObjectMeta, created_at: Instant, uid: String, deleting: bool) -> Meta {
    Meta {
        namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
        name: m.name.clone().unwrap_or_default(),
        created_at,
        generation: m.generation,
        uid,
        deleting,
        flags: flags(m.annotations.as_ref()),
    }
}

/// A declared resource from its metadata, spec and last status.
pub fn declared<S, I: for<'s> From<&'s S>, St>(
    meta: Meta,
    spec: &S,
    status: St,
) -> Declared<I, St> {
    Declared {
        meta,
        spec: I::from(spec),
        status,
    }
}

/// Every declared resource with its status as JSON, in kind order.
pub fn statuses(desired: &Desired) -> Vec<(Kind, &Meta, Value)> {
    each_status(desired)
        .map(|(k, m, s)| (k, m, s.value()))
        .collect()
}

/// Like [`statuses`], one at a time and not yet JSON: a large cluster's statuses are never
/// all in memory as JSON at once.
pub fn each_status(desired: &Desired) -> impl Iterator<Item = (Kind, &Meta, StatusRef<'_>)> {
    let s = desired.subscriptions.iter().map(|d| {
        (
            Kind::Subscription,
            &d.meta,
            StatusRef::Subscription(&d.status),
        )
    });
    let l = desired.assignments.iter().map(|d| {
        (
            Kind::LicenseAssignment,
            &d.meta,
            StatusRef::LicenseAssignment(&d.status),
        )
    });
    let a = desired
        .add_ons
        .iter()
        .map(|d| (Kind::AddOn, &d.meta, StatusRef::AddOn(&d.status)));
    s.chain(l).chain(a)
}

/// The status of the `index`th declared object of `kind`, as JSON.
pub fn status_value(desired: &Desired, kind: Kind, index: usize) -> Value {
    match kind {
        Kind::Subscription => StatusRef::Subscription(&desired.subscriptions[index].status),
        Kind::LicenseAssignment => StatusRef::LicenseAssignment(&desired.assignments[index].status),
        Kind::AddOn => StatusRef::AddOn(&desired.add_ons[index].status),
    }
    .value()
}

/// One object's status, turned into JSON on demand.
#[derive(Clone, Copy)]
pub enum StatusRef<'a> {
    Subscription(&'a crate::planner::resources::SubscriptionStatus),
    LicenseAssignment(&'a crate::planner::resources::LicenseAssignmentStatus),
    AddOn(&'a crate::planner::resources::AddOnStatus),
}

impl StatusRef<'_> {
    pub fn value(self) -> Value {
        match self {
            StatusRef::Subscription(s) => serde_json::to_value(s),
            StatusRef::LicenseAssignment(s) => serde_json::to_value(s),
            StatusRef::AddOn(s) => serde_json::to_value(s),
        }
        .expect("statuses serialize")
    }
}

/// Every declared object's kind and metadata.
pub fn metas(desired: &Desired) -> impl Iterator<Item = (Kind, &Meta)> {
    let s = desired
        .subscriptions
        .iter()
        .map(|d| (Kind::Subscription, &d.meta));
    let l = desired
        .assignments
        .iter()
        .map(|d| (Kind::LicenseAssignment, &d.meta));
    let a = desired.add_ons.iter().map(|d| (Kind::AddOn, &d.meta));
    s.chain(l).chain(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_true_sets_a_flag() {
        let a: BTreeMap<String, String> = [
            ("seatkeeper.dev/paused".to_string(), "true".to_string()),
            (
                "seatkeeper.dev/allow-bulk-removal".to_string(),
                "yes".to_string(),
            ),
        ]
        .into();
        let f = flags(Some(&a));
        assert!(f.paused && !f.allow_bulk_removal && !f.allow_large_purchase);
    }
}
