//! The finalizer `seatkeeper.dev/cleanup`: on every live object before anything is bought for
//! it, removed once its deletion policy is carried out.

use super::kinds::{Key, Managed, key_of, meta_of, unchanged_since_read};
use crate::api::FINALIZER;
use crate::planner::ObjectRef;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Adds the finalizer where it is missing; records our writes' resourceVersions in `rvs`.
///
/// An object read from the cache may have changed since (the benign race at startup and after
/// a failover, when the watch has not caught up): the guarded patch then fails, the object is
/// read again and the patch retried on what the server holds. `Ok(false)`: an object was
/// deleted meanwhile, so this pass must not go on with what it read.
pub async fn add<K: Managed>(
    client: &kube::Client,
    objects: &[Arc<K>],
    now: crate::domain::Instant,
    rvs: &mut HashMap<Key, String>,
) -> Result<bool, kube::Error> {
    for o in objects {
        if o.meta().deletion_timestamp.is_some() || has_finalizer(o.as_ref()) {
            continue;
        }
        let api: Api<K> = Api::namespaced(client.clone(), &o.namespace().unwrap_or_default());
        let mut current = (**o).clone();
        let mut tries = 0;
        let updated = loop {
            tries += 1;
            match api
                .patch(&o.name_any(), &PatchParams::default(), &add_patch(&current))
                .await
            {
                Ok(updated) => break updated,
                // 422: the test operation failed; 409: a conflicting write. Read it again (a
                // few times: an object that keeps changing is an error, retried later).
                Err(kube::Error::Api(s)) if (s.code == 422 || s.code == 409) && tries < 3 => {
                    tracing::debug!(object = %o.name_any(), "changed since read; adding the finalizer to what the server holds");
                    match api.get_opt(&o.name_any()).await? {
                        Some(latest) if latest.meta().deletion_timestamp.is_some() => {
                            return Ok(false);
                        }
                        Some(latest) if has_finalizer(&latest) => break latest,
                        Some(latest) => current = latest,
                        None => return Ok(false),
                    }
                }
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
                Err(e) => return Err(e),
            }
        };
        if unchanged_since_read(&meta_of(o.meta(), now), updated.meta()) {
            rvs.insert(
                key_of(K::KIND, o.meta()),
                updated.resource_version().unwrap_or_default(),
            );
        }
    }
    Ok(true)
}

fn has_finalizer<K: Managed>(o: &K) -> bool {
    o.finalizers().iter().any(|f| f == FINALIZER)
}

/// Appends the finalizer, guarded by a test of the list as read: a concurrent finalizer edit
/// fails the patch instead of being clobbered.
fn add_patch<K: Managed>(o: &K) -> Patch<()> {
    json_patch(match &o.meta().finalizers {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(finalizers) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    })
}

/// Lets a deleted object go.
pub async fn remove(client: &kube::Client, r: &ObjectRef) -> Result<(), kube::Error> {
    crate::for_kind!(r.kind, K => remove_of::<K>(client, r).await)
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
