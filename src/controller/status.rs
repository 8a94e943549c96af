//! The one status writer: statuses go to the API server by server-side apply, only when they
//! differ from what is there (condition timestamps aside), at most once per object per
//! convergence (an object that buys is written once more, before the purchase, so its key is
//! on record), concurrently for different objects. A new Blocked reason also becomes a
//! Warning event.

use super::apihealth::ApiHealth;
use super::events;
use super::kinds::{Key, Managed, unchanged_since_read};
use super::metrics::Metrics;
use crate::api::API_VERSION;
use crate::backend::BackendError;
use crate::executor::{Ledger, SavePoint};
use crate::planner::{Desired, Meta, ObjectRef};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The field manager of every status write (server-side apply).
pub const FIELD_MANAGER: &str = "seatkeeper";

/// How many status writes go to the API server at once.
const CONCURRENT_WRITES: usize = 8;

/// What is remembered of a status written (or read): enough to tell a real change (condition
/// timestamps aside) without keeping the status itself, which at 100k users would be hundreds
/// of megabytes of JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// A hash of the status without its conditions' lastTransitionTime.
    fingerprint: u64,
    blocked_reason: Option<String>,
    /// The purchase in flight, as JSON text.
    purchase: Option<String>,
}

/// Feeds serialized JSON into a hasher without building the text.
struct HashWriter<'a>(&'a mut std::collections::hash_map::DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Written {
    pub fn of(status: &Value) -> Written {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        if let Some(fields) = status.as_object() {
            for (k, v) in fields {
                std::hash::Hash::hash(k, &mut hasher);
                let mut v = std::borrow::Cow::Borrowed(v);
                if k == "conditions" {
                    for c in v.to_mut().as_array_mut().into_iter().flatten() {
                        c.as_object_mut().map(|c| c.remove("lastTransitionTime"));
                    }
                }
                serde_json::to_writer(HashWriter(&mut hasher), &*v).expect("hashing JSON");
            }
        }
        Written {
            fingerprint: std::hash::Hasher::finish(&hasher),
            blocked_reason: status
                .get("blockedReason")
                .and_then(Value::as_str)
                .map(str::to_string),
            purchase: status.get("purchase").map(Value::to_string),
        }
    }
}

/// What the status writer needs of the controller: the API, the Event recorder, the metrics,
/// the outage gate and whether this replica leads (only a leader writes).
#[derive(Clone, Copy)]
pub struct Writer<'a> {
    pub client: &'a kube::Client,
    pub recorder: &'a kube::runtime::events::Recorder,
    pub metrics: &'a Metrics,
    pub api: &'a ApiHealth,
    /// Whether this replica may write (it leads, or its shard holds the organization).
    pub allowed: &'a (dyn Fn() -> bool + Send + Sync),
}

pub struct KubeLedger<'a> {
    pub ctx: Writer<'a>,
    /// What each object's status is known to be.
    pub written: HashMap<Key, Written>,
    pub uids: HashMap<Key, String>,
    /// The resourceVersions of our own writes, when they stand for what the plan read.
    pub rvs: &'a mut HashMap<Key, String>,
}

impl Ledger for KubeLedger<'_> {
    /// One Event per change, published as soon as the service confirmed or refused it.
    async fn confirmed(&mut self, done: &[crate::executor::Executed]) {
        for e in done {
            let r = e.action.resource();
            let uid = self
                .uids
                .get(&(r.kind, r.namespace.clone(), r.name.clone()));
            let event = match &e.refused {
                None => super::events::changed(&e.action.op),
                Some(b) => super::events::warning(b.reason.as_str(), &b.message),
            };
            super::events::publish(
                self.ctx.recorder,
                &event,
                &super::events::reference(&r, uid),
            )
            .await;
        }
    }

    async fn save(&mut self, desired: &Desired, point: SavePoint) -> Result<(), BackendError> {
        let unavailable = |e: String| BackendError::Cluster(format!("kubernetes: {e}"));
        if !(self.ctx.allowed)() {
            return Err(unavailable(
                "this replica no longer leads (or its shard no longer holds the organization): not writing status"
                    .into(),
            ));
        }
        if point == SavePoint::AfterPass {
            return Ok(());
        }
        let mut due = vec![];
        for (meta, at) in crate::intents::each_status(desired) {
            let key = (at.kind, meta.namespace.clone(), meta.name.clone());
            let now = Written::of(&at.value(desired));
            let before = self.written.get(&key);
            if before.is_some_and(|b| b.fingerprint == now.fingerprint) {
                continue;
            }
            // Before changes only a purchase in flight must be on record.
            if point == SavePoint::BeforeChanges
                && (now.purchase.is_none()
                    || now.purchase == before.and_then(|b| b.purchase.clone()))
            {
                continue;
            }
            due.push((key, meta.clone(), at, now));
        }
        let ctx = self.ctx;
        let results: Vec<_> = futures::stream::iter(due)
            .map(|(key, meta, at, now)| async move {
                // JSON again, only while it is written.
                let status = at.value(desired);
                let result = write(ctx, &key, &status).await;
                let message = blocked_message(&status).unwrap_or_default();
                (key, meta, now, message, result)
            })
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        let mut failure = None;
        for (key, meta, now, message, result) in results {
            let after = match result {
                Ok(m) => {
                    self.ctx.api.reached();
                    m
                }
                // Deleted meanwhile, or its namespace is going: nothing left to report on.
                Err(e) if super::apihealth::expected_race(&e) && !is_conflict(&e) => {
                    tracing::debug!(object = %key.2, error = %super::apihealth::describe(&e), "status not written");
                    continue;
                }
                Err(e) => {
                    if super::apihealth::unreachable(&e) {
                        self.ctx.api.failed("writing status", &e);
                    }
                    failure.get_or_insert(unavailable(super::apihealth::describe(&e)));
                    continue;
                }
            };
            if unchanged_since_read(&meta, &after) {
                self.rvs
                    .insert(key.clone(), after.resource_version.unwrap_or_default());
            }
            self.warn_new_block(&key, &meta, &now, &message).await;
            self.written.insert(key, now);
        }
        failure.map_or(Ok(()), Err)
    }
}

/// A newer write won: the status is written again from a fresh read, not skipped.
fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The Blocked condition's message while it is True.
pub(super) fn blocked_message(status: &Value) -> Option<String> {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c["type"] == "Blocked" && c["status"] == "True")
        })
        .and_then(|c| c["message"].as_str())
        .map(str::to_string)
}

impl KubeLedger<'_> {
    async fn warn_new_block(&self, key: &Key, meta: &Meta, now: &Written, message: &str) {
        let Some(new) = &now.blocked_reason else {
            return;
        };
        if self
            .written
            .get(key)
            .and_then(|w| w.blocked_reason.as_ref())
            == Some(new)
        {
            return;
        }
        let r = ObjectRef::of(key.0, meta);
        // One log line beside the Event, once per new reason.
        tracing::warn!(object = %r, reason = %new, "{message}");
        let reference = events::reference(&r, self.uids.get(key));
        events::publish(
            self.ctx.recorder,
            &events::warning(new, message),
            &reference,
        )
        .await;
    }
}

/// Writes one status by server-side apply; returns the object's metadata after the write.
async fn write(ctx: Writer<'_>, key: &Key, status: &Value) -> Result<ObjectMeta, kube::Error> {
    let meta = crate::for_kind!(key.0, K => write_of::<K>(ctx.client, key, status).await?);
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
