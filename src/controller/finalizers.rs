//! The finalizer `seatkeeper.dev/cleanup`: on every live object before anything is bought for
//! it, removed once its deletion policy is carried out.

use super::kinds::{Key, Managed, key_of, meta_of, unchanged_since_read};
use crate::api::{AddOn, FINALIZER, LicenseAssignment, Subscription};
use crate::planner::{Kind, ObjectRef};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Adds the finalizer where it is missing; records our writes' resourceVersions in `rvs`.
pub async fn add<K: Managed>(
    client: &kube::Client,
    objects: &[Arc<K>],
    now: crate::domain::Instant,
    rvs: &mut HashMap<Key, String>,
) -> Result<(), kube::Error> {
    for o in objects {
        let finalizers = o.finalizers();
        if o.meta().deletion_timestamp.is_some() || finalizers.iter().any(|f| f == FINALIZER) {
            continue;
        }
        // A test operation makes concurrent finalizer edits fail instead of clobbering them.
        let patch = if o.meta().finalizers.is_none() {
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
            ])
        } else {
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
            ])
        };
        let api: Api<K> = Api::namespaced(client.clone(), &o.namespace().unwrap_or_default());
        let updated = api
            .patch(&o.name_any(), &PatchParams::default(), &json_patch(patch))
            .await?;
        if unchanged_since_read(&meta_of(o.meta(), now), updated.meta()) {
            rvs.insert(
                key_of(K::KIND, o.meta()),
                updated.resource_version().unwrap_or_default(),
            );
        }
    }
    Ok(())
}

/// Lets a deleted object go.
pub async fn remove(client: &kube::Client, r: &ObjectRef) -> Result<(), kube::Error> {
    match r.kind {
        Kind::Subscription => remove_of::<Subscription>(client, r).await,
        Kind::LicenseAssignment => remove_of::<LicenseAssignment>(client, r).await,
        Kind::AddOn => remove_of::<AddOn>(client, r).await,
    }
}

async fn remove_of<K: Managed>(client: &kube::Client, r: &ObjectRef) -> Result<(), kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), &r.namespace);
    let Some(o) = api.get_opt(&r.name).await? else {
        return Ok(());
    };
    let Some(i) = o.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let patch = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]);
    match api
        .patch(&r.name, &PatchParams::default(), &json_patch(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A JSON patch from `serde_json::Value` (kube takes them typed).
fn json_patch(ops: serde_json::Value) -> Patch<()> {
    Patch::Json(serde_json::from_value(ops).expect("a well-formed JSON patch"))
}
