//! The one status writer: statuses go to the API server by server-side apply, only when they
//! differ from what is there (condition timestamps aside), at most once per object per
//! convergence (an object that buys is written once more, before the purchase, so its key is
//! on record), concurrently for different objects. A new Blocked reason also becomes a
//! Warning event.

use super::context::Ctx;
use super::events;
use super::kinds::{Key, Managed, unchanged_since_read};
use crate::api::{API_VERSION, AddOn, LicenseAssignment, Subscription};
use crate::backend::{Backend, BackendError};
use crate::executor::{Ledger, SavePoint};
use crate::planner::{Desired, Kind, Meta, ObjectRef};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The field manager of every status write (server-side apply).
pub const FIELD_MANAGER: &str = "seatkeeper";

/// How many status writes go to the API server at once.
const CONCURRENT_WRITES: usize = 8;

/// Statuses compare equal ignoring condition timestamps: only a real change is written.
pub fn normalized(status: &Value) -> Value {
    let mut v = status.clone();
    if let Some(conditions) = v.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conditions {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastTransitionTime");
            }
        }
    }
    v
}

pub struct KubeLedger<'a, B> {
    pub ctx: &'a Ctx<B>,
    /// What each object's status is known to be (normalized).
    pub written: HashMap<Key, Value>,
    pub uids: HashMap<Key, String>,
    /// The resourceVersions of our own writes, when they stand for what the plan read.
    pub rvs: &'a mut HashMap<Key, String>,
}

impl<B: Backend> Ledger for KubeLedger<'_, B> {
    async fn save(&mut self, desired: &Desired, point: SavePoint) -> Result<(), BackendError> {
        let unavailable = |e: String| BackendError::Unavailable(format!("kubernetes: {e}"));
        if !self.ctx.leading() {
            return Err(unavailable("leadership lost: not writing status".into()));
        }
        if point == SavePoint::AfterPass {
            return Ok(());
        }
        let mut due = vec![];
        for (kind, meta, status) in crate::intents::statuses(desired) {
            let key = (kind, meta.namespace.clone(), meta.name.clone());
            let norm = normalized(&status);
            let before = self.written.get(&key);
            if before == Some(&norm) {
                continue;
            }
            // Before changes only a purchase in flight must be on record.
            let purchase = |v: Option<&Value>| v.and_then(|v| v.get("purchase")).cloned();
            if point == SavePoint::BeforeChanges
                && purchase(Some(&status)).is_none_or(|p| Some(p) == purchase(before))
            {
                continue;
            }
            due.push((key, meta.clone(), status, norm));
        }
        let ctx = self.ctx;
        let results: Vec<_> = futures::stream::iter(due)
            .map(|(key, meta, status, norm)| async move {
                let result = write(ctx, &key, &status).await;
                (key, meta, status, norm, result)
            })
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        let mut failure = None;
        for (key, meta, status, norm, result) in results {
            let after = match result {
                Ok(m) => m,
                // Deleted meanwhile: nothing left to report on.
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => {
                    failure.get_or_insert(unavailable(e.to_string()));
                    continue;
                }
            };
            if unchanged_since_read(&meta, &after) {
                self.rvs
                    .insert(key.clone(), after.resource_version.unwrap_or_default());
            }
            self.warn_new_block(&key, &meta, &status).await;
            self.written.insert(key, norm);
        }
        failure.map_or(Ok(()), Err)
    }
}

impl<B> KubeLedger<'_, B> {
    async fn warn_new_block(&self, key: &Key, meta: &Meta, status: &Value) {
        let reason = |v: &Value| {
            v.get("blockedReason")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let Some(new) = reason(status) else { return };
        if self.written.get(key).and_then(reason).as_deref() == Some(new.as_str()) {
            return;
        }
        let message = status
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Blocked"))
            .and_then(|c| c["message"].as_str())
            .unwrap_or_default();
        let r = ObjectRef::of(key.0, meta);
        let reference = events::reference(&r, self.uids.get(key));
        events::publish(
            &self.ctx.recorder,
            &events::warning(&new, message),
            &reference,
        )
        .await;
    }
}

/// Writes one status by server-side apply; returns the object's metadata after the write.
async fn write<B>(ctx: &Ctx<B>, key: &Key, status: &Value) -> Result<ObjectMeta, kube::Error> {
    let meta = match key.0 {
        Kind::Subscription => write_of::<Subscription>(&ctx.client, key, status).await?,
        Kind::LicenseAssignment => write_of::<LicenseAssignment>(&ctx.client, key, status).await?,
        Kind::AddOn => write_of::<AddOn>(&ctx.client, key, status).await?,
    };
    ctx.metrics.status_writes.inc();
    Ok(meta)
}

async fn write_of<K: Managed>(
    client: &kube::Client,
    (kind, ns, name): &Key,
    status: &Value,
) -> Result<ObjectMeta, kube::Error> {
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": kind.as_str(),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(Api::<K>::namespaced(client.clone(), ns)
        .patch_status(name, &params, &Patch::Apply(&body))
        .await?
        .meta()
        .clone())
}
