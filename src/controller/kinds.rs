//! The three resource kinds as the controller sees them: cached objects handed to the one
//! intent builder (`crate::intents`) to become the planner's declared state.

use crate::api::{AddOn, LicenseAssignment, Subscription};
use crate::planner::{Declared, Kind, Meta};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;

/// (kind, namespace, name): how the controller keys objects.
pub type Key = (Kind, String, String);

/// The three kinds, seen the same way.
pub trait Managed:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    type Spec: Clone;
    /// What the planner reads of the spec.
    type Intent: for<'s> From<&'s Self::Spec>;
    type Status: Clone + Default + Serialize + DeserializeOwned;
    fn organization(&self) -> &str;
    fn parts(&self) -> (&Self::Spec, Option<&Self::Status>);
    /// The Secret (name, key) this object reads, if any.
    fn secret(&self) -> Option<(&str, &str)> {
        None
    }
}

macro_rules! managed {
    ($kind:ident, $spec:ident, $intent:ident, $status:ident $(, $extra:item)?) => {
        impl Managed for $kind {
            const KIND: Kind = Kind::$kind;
            type Spec = crate::api::$spec;
            type Intent = crate::planner::resources::$intent;
            type Status = crate::api::$status;
            fn organization(&self) -> &str {
                &self.spec.organization
            }
            fn parts(&self) -> (&Self::Spec, Option<&Self::Status>) {
                (&self.spec, self.status.as_ref())
            }
            $($extra)?
        }
    };
}

managed!(
    Subscription,
    SubscriptionSpec,
    SubscriptionIntent,
    SubscriptionStatus,
    fn secret(&self) -> Option<(&str, &str)> {
        self.spec
            .product_key
            .as_ref()
            .map(|k| (k.secret_ref.name.as_str(), k.secret_ref.key.as_str()))
    }
);
managed!(
    LicenseAssignment,
    LicenseAssignmentSpec,
    AssignmentIntent,
    LicenseAssignmentStatus
);
managed!(AddOn, AddOnSpec, AddOnIntent, AddOnStatus);

pub fn key_of(kind: Kind, m: &ObjectMeta) -> Key {
    (
        kind,
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// What the planner needs of a cached object's metadata.
pub fn meta_of(m: &ObjectMeta, now: crate::domain::Instant) -> Meta {
    crate::intents::meta(
        m,
        m.creation_timestamp.as_ref().map_or(now, |t| t.0),
        m.uid.clone().unwrap_or_default(),
        m.deletion_timestamp.is_some(),
    )
}

/// The cached objects of one organization, in key order.
pub fn of_org<K: Managed>(store: &Store<K>, org: &str) -> Vec<Arc<K>> {
    let mut v: Vec<Arc<K>> = store
        .state()
        .into_iter()
        .filter(|o| o.organization().eq_ignore_ascii_case(org))
        .collect();
    v.sort_by_key(|o| key_of(K::KIND, o.meta()));
    v
}

/// The resourceVersions of `objects`, added to `out`.
pub fn fingerprint_of<K: Managed>(out: &mut BTreeMap<Key, String>, objects: &[Arc<K>]) {
    for o in objects {
        out.insert(
            key_of(K::KIND, o.meta()),
            o.meta().resource_version.clone().unwrap_or_default(),
        );
    }
}

/// Cached objects as declared resources for the planner.
pub fn declared<K: Managed>(
    objects: &[Arc<K>],
    now: crate::domain::Instant,
) -> Vec<Declared<K::Intent, K::Status>> {
    objects
        .iter()
        .map(|o| {
            let (spec, status) = o.parts();
            let status = status.cloned().unwrap_or_default();
            crate::intents::declared(meta_of(o.meta(), now), spec, status)
        })
        .collect()
}

/// Our write's resourceVersion may stand for what we read only if nobody else changed what the
/// plan reads (spec, annotations, deletion) in between; otherwise the next trigger must plan.
pub fn unchanged_since_read(read: &Meta, after: &ObjectMeta) -> bool {
    after.generation == read.generation
        && crate::intents::flags(after.annotations.as_ref()) == read.flags
        && after.deletion_timestamp.is_some() == read.deleting
}
