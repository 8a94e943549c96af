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
use serde::Serialize;
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
    fn each<S, St: Serialize>(
        kind: Kind,
        list: &[Declared<S, St>],
    ) -> impl Iterator<Item = (Kind, &Meta, Value)> {
        list.iter().map(move |d| {
            let status = serde_json::to_value(&d.status).expect("statuses serialize");
            (kind, &d.meta, status)
        })
    }
    each(Kind::Subscription, &desired.subscriptions)
        .chain(each(Kind::LicenseAssignment, &desired.assignments))
        .chain(each(Kind::AddOn, &desired.add_ons))
        .collect()
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
