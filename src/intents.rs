//! The one intent builder: Kubernetes objects become the planner's declared resources here,
//! for `plan`/`apply` and for the controller alike; and declared statuses go back to JSON here
//! for the two status writers (the tenant file's records, the status subresource).

use crate::domain::Instant;
use crate::planner::resources::{
    ABANDON_ON_DELETE_ANNOTATION, ACKNOWLEDGE_DOWNGRADE_ANNOTATION, ADOPT_LICENCES_ANNOTATION,
    ALLOW_BULK_REMOVAL_ANNOTATION, ALLOW_LARGE_PURCHASE_ANNOTATION, PAUSED_ANNOTATION,
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
        abandon_on_delete: on(ABANDON_ON_DELETE_ANNOTATION),
        adopt_licences: on(ADOPT_LICENCES_ANNOTATION),
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
        .map(|(m, at)| (at.kind, m, at.value(desired)))
        .collect()
}

/// Like [`statuses`], one at a time and not yet JSON: a large cluster's statuses are never
/// all in memory as JSON at once.
pub fn each_status(desired: &Desired) -> impl Iterator<Item = (&Meta, StatusAt)> {
    let at = |kind| move |(index, meta)| (meta, StatusAt { kind, index });
    let s = desired.subscriptions.iter().map(|d| &d.meta).enumerate();
    let l = desired.assignments.iter().map(|d| &d.meta).enumerate();
    let a = desired.add_ons.iter().map(|d| &d.meta).enumerate();
    s.map(at(Kind::Subscription))
        .chain(l.map(at(Kind::LicenseAssignment)))
        .chain(a.map(at(Kind::AddOn)))
}

/// Where one object's status is in [`Desired`]: turned into JSON on demand, and owning no
/// borrow, so it can wait in a queue of writes.
#[derive(Clone, Copy, Debug)]
pub struct StatusAt {
    pub kind: Kind,
    index: usize,
}

impl StatusAt {
    pub fn value(self, desired: &Desired) -> Value {
        let i = self.index;
        match self.kind {
            Kind::Subscription => serde_json::to_value(&desired.subscriptions[i].status),
            Kind::LicenseAssignment => serde_json::to_value(&desired.assignments[i].status),
            Kind::AddOn => serde_json::to_value(&desired.add_ons[i].status),
        }
        .expect("statuses serialize")
    }
}

/// Every declared object's kind and metadata.
pub fn metas(desired: &Desired) -> impl Iterator<Item = (Kind, &Meta)> {
    each_status(desired).map(|(m, at)| (at.kind, m))
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
