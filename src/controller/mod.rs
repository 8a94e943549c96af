//! `seatkeeper run`: the controller. A thin Kubernetes shell around the same planner and
//! executor as `plan`/`apply`; no licensing rule lives here.
//!
//! Three kube-runtime controllers (Subscription, LicenseAssignment, AddOn) share one context.
//! Whatever triggers a reconcile, the unit of work is the object's organization: all of its
//! resources are planned together from the controllers' caches, against one backend snapshot
//! per pass, so competing assignments resolve in the planner's deterministic order.

pub mod leader;
pub mod metrics;

use crate::api::{
    API_VERSION, AddOn, FINALIZER, LicenseAssignment, ORGANIZATION_LABEL, Subscription,
};
use crate::backend::embedded::Embedded;
use crate::backend::hooked::Hooked;
use crate::clock::{Clock, SystemClock};
use crate::executor::{self, DEFAULT_MAX_PASSES, Ledger};
use crate::planner::{Declared, Desired, Kind, Meta, ObjectRef, Options};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef as KubeRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use metrics::Metrics;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The field manager of every status write (server-side apply).
pub const FIELD_MANAGER: &str = "seatkeeper";

#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The embedded backend's tenant file.
    pub state: PathBuf,
    pub resync: Duration,
    pub options: Options,
    pub metrics_addr: SocketAddr,
    /// None: no leader election (a single replica).
    pub election: Option<leader::Election>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    State(String),
    #[error("cannot serve metrics on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("licensing backend: {0}")]
    Backend(#[from] crate::backend::BackendError),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl ReconcileError {
    fn category(&self) -> &'static str {
        match self {
            ReconcileError::Backend(crate::backend::BackendError::Throttled { .. }) => "throttled",
            ReconcileError::Backend(_) => "backend",
            ReconcileError::Kube(_) => "kubernetes",
        }
    }
}

type Meter = Hooked<Embedded, Metrics>;

/// What one organization's last reconcile saw: the resourceVersions of its objects.
#[derive(Default)]
struct OrgState {
    /// When the last run wants to look again (resync, a credit check clearing, …).
    due: Option<std::time::Instant>,
    seen: BTreeMap<(Kind, String, String), String>,
}

struct Ctx {
    client: kube::Client,
    backend: Meter,
    clock: Arc<dyn Clock>,
    cfg: RunConfig,
    subscriptions: Store<Subscription>,
    assignments: Store<LicenseAssignment>,
    add_ons: Store<AddOn>,
    orgs: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<OrgState>>>>,
    /// Organizations to re-plan even though none of their objects changed (a Secret or a
    /// Namespace label did).
    forced: std::sync::Mutex<HashSet<String>>,
    leading: watch::Receiver<bool>,
    recorder: Recorder,
    metrics: Metrics,
    backoff: std::sync::Mutex<HashMap<(Kind, String, String), u32>>,
}

/// The three kinds, seen the same way.
trait Managed:
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
    type Status: Clone + Default + Serialize + DeserializeOwned;
    fn organization(&self) -> &str;
    fn parts(&self) -> (&Self::Spec, Option<&Self::Status>);
    /// The Secret this object reads, if any.
    fn secret(&self) -> Option<(&str, &str)> {
        None
    }
}

macro_rules! managed {
    ($kind:ident, $spec:ident, $status:ident $(, $extra:item)?) => {
        impl Managed for $kind {
            const KIND: Kind = Kind::$kind;
            type Spec = crate::api::$spec;
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
    LicenseAssignmentStatus
);
managed!(AddOn, AddOnSpec, AddOnStatus);

fn key_of(kind: Kind, m: &ObjectMeta) -> (Kind, String, String) {
    (
        kind,
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn meta_of(m: &ObjectMeta, now: crate::domain::Instant) -> Meta {
    Meta {
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        created_at: m.creation_timestamp.as_ref().map_or(now, |t| t.0),
        generation: m.generation,
        uid: m.uid.clone().unwrap_or_default(),
        annotations: m.annotations.clone().unwrap_or_default(),
        deleting: m.deletion_timestamp.is_some(),
    }
}

fn of_org<K: Managed>(store: &Store<K>, org: &str) -> Vec<Arc<K>> {
    let mut v: Vec<Arc<K>> = store
        .state()
        .into_iter()
        .filter(|o| o.organization().eq_ignore_ascii_case(org))
        .collect();
    v.sort_by_key(|o| key_of(K::KIND, o.meta()));
    v
}

fn fingerprint_of<K: Managed>(
    out: &mut BTreeMap<(Kind, String, String), String>,
    objects: &[Arc<K>],
) {
    for o in objects {
        out.insert(
            key_of(K::KIND, o.meta()),
            o.resource_version().unwrap_or_default(),
        );
    }
}

fn declared<K: Managed>(
    objects: &[Arc<K>],
    now: crate::domain::Instant,
) -> Vec<Declared<K::Spec, K::Status>> {
    objects
        .iter()
        .map(|o| {
            let (spec, status) = o.parts();
            Declared {
                meta: meta_of(o.meta(), now),
                spec: spec.clone(),
                status: status.cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// Statuses compare equal ignoring condition timestamps: only a real change is written.
fn normalized(status: &Value) -> Value {
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

impl Ctx {
    fn leading(&self) -> bool {
        *self.leading.borrow()
    }

    fn org_state(&self, org: &str) -> Arc<tokio::sync::Mutex<OrgState>> {
        self.orgs
            .lock()
            .expect("orgs lock")
            .entry(org.to_lowercase())
            .or_default()
            .clone()
    }

    fn force(&self, org: &str) {
        self.forced
            .lock()
            .expect("forced lock")
            .insert(org.to_lowercase());
    }

    /// The resourceVersions of everything the organization's plan reads from the caches.
    fn fingerprint(&self, org: &str) -> BTreeMap<(Kind, String, String), String> {
        let mut out = BTreeMap::new();
        fingerprint_of(&mut out, &of_org(&self.subscriptions, org));
        fingerprint_of(&mut out, &of_org(&self.assignments, org));
        fingerprint_of(&mut out, &of_org(&self.add_ons, org));
        out
    }

    /// Plans and applies one organization. Returns when to look again.
    async fn reconcile_org(&self, org: &str) -> Result<Duration, ReconcileError> {
        if !self.leading() {
            // Followers observe only; the leader does the work.
            return Ok(Duration::from_secs(5));
        }
        let state = self.org_state(org);
        let mut state = state.lock().await;
        let forced = self
            .forced
            .lock()
            .expect("forced lock")
            .remove(&org.to_lowercase());
        let now = std::time::Instant::now();
        if !forced
            && let Some(due) = state.due
            && now < due
            && state.seen == self.fingerprint(org)
        {
            // Another trigger already covered this state (or it is our own status write).
            return Ok(due - now);
        }
        let started = std::time::Instant::now();
        self.metrics.reconciles.inc();
        let result = self.reconcile_org_now(org, &mut state).await;
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            self.metrics.fail(e.category());
            // The retry must run, even though nothing changed in the cluster.
            state.due = None;
        }
        result
    }

    async fn reconcile_org_now(
        &self,
        org: &str,
        state: &mut OrgState,
    ) -> Result<Duration, ReconcileError> {
        let now = self.clock.now();
        let subs = of_org(&self.subscriptions, org);
        let las = of_org(&self.assignments, org);
        let add_ons = of_org(&self.add_ons, org);
        let mut read = BTreeMap::new();
        fingerprint_of(&mut read, &subs);
        fingerprint_of(&mut read, &las);
        fingerprint_of(&mut read, &add_ons);
        let mut desired = Desired {
            subscriptions: declared(&subs, now),
            assignments: declared(&las, now),
            add_ons: declared(&add_ons, now),
            ..Default::default()
        };
        let namespaces: HashSet<String> = desired
            .statuses()
            .iter()
            .map(|(_, m, _)| m.namespace.clone())
            .collect();
        let ns_api: Api<Namespace> = Api::all(self.client.clone());
        for ns in namespaces {
            let label = ns_api
                .get_opt(&ns)
                .await?
                .and_then(|n| n.metadata.labels)
                .and_then(|l| l.get(ORGANIZATION_LABEL).cloned());
            desired.namespaces.insert(ns, label);
        }
        for s in &subs {
            if let Some((name, key)) = s.secret() {
                let ns = s.namespace().unwrap_or_default();
                let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
                if let Some(value) = secrets
                    .get_opt(name)
                    .await?
                    .and_then(|sec| sec.data)
                    .and_then(|d| d.get(key).cloned())
                {
                    desired.secrets.insert(
                        (ns.clone(), name.to_string(), key.to_string()),
                        String::from_utf8_lossy(&value.0).trim().to_string(),
                    );
                }
            }
        }

        // Every live object carries the finalizer before anything is bought for it.
        let mut rvs: HashMap<(Kind, String, String), String> = HashMap::new();
        self.add_finalizers(&subs, &mut rvs).await?;
        self.add_finalizers(&las, &mut rvs).await?;
        self.add_finalizers(&add_ons, &mut rvs).await?;

        let mut ledger = KubeLedger {
            ctx: self,
            written: desired
                .statuses()
                .into_iter()
                .map(|(k, m, s)| ((k, m.namespace.clone(), m.name.clone()), normalized(&s)))
                .collect(),
            uids: desired
                .statuses()
                .into_iter()
                .map(|(k, m, _)| ((k, m.namespace.clone(), m.name.clone()), m.uid.clone()))
                .collect(),
            rvs: &mut rvs,
        };
        let report = executor::converge(
            &self.backend,
            &mut ledger,
            &mut desired,
            self.clock.as_ref(),
            &self.cfg.options,
            DEFAULT_MAX_PASSES,
        )
        .await?;
        let uids = ledger.uids.clone();
        for e in &report.executed {
            let r = e.action.resource();
            let reference =
                self.reference(&r, uids.get(&(r.kind, r.namespace.clone(), r.name.clone())));
            let event = match &e.refused {
                None => Event {
                    type_: EventType::Normal,
                    reason: changed_reason(&e.action.op).into(),
                    note: Some(e.action.op.describe()),
                    action: "Reconcile".into(),
                    secondary: None,
                },
                Some(b) => Event {
                    type_: EventType::Warning,
                    reason: b.reason.to_string(),
                    note: Some(truncate(&b.message)),
                    action: "Reconcile".into(),
                    secondary: None,
                },
            };
            self.publish(&event, &reference).await;
        }
        for r in &report.plan.deleted {
            self.remove_finalizer(r).await?;
        }
        self.update_gauges(org, &desired);

        // What this run read (not what the caches hold now: a change that arrived meanwhile
        // must still be planned), with our own writes' resourceVersions.
        let mut seen = read;
        for (k, rv) in rvs {
            if let Some(v) = seen.get_mut(&k) {
                *v = rv;
            }
        }
        state.seen = seen;
        let mut next = self.cfg.resync;
        if let Some(at) = report.plan.requeue_at {
            let wait = at.duration_since(self.clock.now()).as_secs().max(1) as u64;
            next = next.min(Duration::from_secs(wait));
        }
        if !report.converged {
            next = next.min(Duration::from_secs(30));
        }
        state.due = Some(std::time::Instant::now() + next);
        Ok(next)
    }

    async fn add_finalizers<K: Managed>(
        &self,
        objects: &[Arc<K>],
        rvs: &mut HashMap<(Kind, String, String), String>,
    ) -> Result<(), ReconcileError> {
        for o in objects {
            let finalizers = o.finalizers();
            if o.meta().deletion_timestamp.is_some() || finalizers.iter().any(|f| f == FINALIZER) {
                continue;
            }
            let patch: json_patch_ops::Ops = if o.meta().finalizers.is_none() {
                json_patch_ops::Ops(json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
                ]))
            } else {
                json_patch_ops::Ops(json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
                ]))
            };
            let api: Api<K> =
                Api::namespaced(self.client.clone(), &o.namespace().unwrap_or_default());
            let updated = api
                .patch(&o.name_any(), &PatchParams::default(), &patch.into_patch())
                .await?;
            let read = meta_of(o.meta(), self.clock.now());
            if unchanged_since_read(&read, updated.meta()) {
                rvs.insert(
                    key_of(K::KIND, o.meta()),
                    updated.resource_version().unwrap_or_default(),
                );
            }
        }
        Ok(())
    }

    async fn remove_finalizer(&self, r: &ObjectRef) -> Result<(), ReconcileError> {
        match r.kind {
            Kind::Subscription => self.remove_finalizer_of::<Subscription>(r).await,
            Kind::LicenseAssignment => self.remove_finalizer_of::<LicenseAssignment>(r).await,
            Kind::AddOn => self.remove_finalizer_of::<AddOn>(r).await,
        }
    }

    async fn remove_finalizer_of<K: Managed>(&self, r: &ObjectRef) -> Result<(), ReconcileError> {
        let api: Api<K> = Api::namespaced(self.client.clone(), &r.namespace);
        let Some(o) = api.get_opt(&r.name).await? else {
            return Ok(());
        };
        let Some(i) = o.finalizers().iter().position(|f| f == FINALIZER) else {
            return Ok(());
        };
        let patch = json_patch_ops::Ops(json!([
            {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
            {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
        ]));
        match api
            .patch(&r.name, &PatchParams::default(), &patch.into_patch())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn reference(&self, r: &ObjectRef, uid: Option<&String>) -> ObjectReference {
        ObjectReference {
            api_version: Some(API_VERSION.into()),
            kind: Some(r.kind.as_str().to_string()),
            namespace: Some(r.namespace.clone()),
            name: Some(r.name.clone()),
            uid: uid.cloned(),
            ..Default::default()
        }
    }

    async fn publish(&self, event: &Event, reference: &ObjectReference) {
        if let Err(e) = self.recorder.publish(event, reference).await {
            tracing::warn!(error = %e, "cannot record an event");
        }
    }

    fn update_gauges(&self, org: &str, desired: &Desired) {
        for (product, seats) in pool_gauges(desired) {
            let labels = metrics::Pool {
                organization: org.to_string(),
                product,
            };
            let m = &self.metrics;
            m.seats_purchased
                .get_or_create(&labels)
                .set(seats.purchased);
            m.seats_assigned.get_or_create(&labels).set(seats.assigned);
            m.seats_available
                .get_or_create(&labels)
                .set(seats.available);
        }
    }

    /// Writes one status by server-side apply; returns the object's metadata after the write.
    async fn write_status(
        &self,
        r: &(Kind, String, String),
        status: &Value,
    ) -> Result<ObjectMeta, kube::Error> {
        let meta = match r.0 {
            Kind::Subscription => self.write_status_of::<Subscription>(r, status).await?,
            Kind::LicenseAssignment => self.write_status_of::<LicenseAssignment>(r, status).await?,
            Kind::AddOn => self.write_status_of::<AddOn>(r, status).await?,
        };
        self.metrics.status_writes.inc();
        Ok(meta)
    }

    async fn write_status_of<K: Managed>(
        &self,
        (kind, ns, name): &(Kind, String, String),
        status: &Value,
    ) -> Result<ObjectMeta, kube::Error> {
        let body = json!({
            "apiVersion": API_VERSION,
            "kind": kind.as_str(),
            "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        Ok(Api::<K>::namespaced(self.client.clone(), ns)
            .patch_status(name, &params, &Patch::Apply(&body))
            .await?
            .meta()
            .clone())
    }
}

/// Per product: seats purchased over all the organization's declared subscriptions and
/// add-ons of it, and the pool's assigned and available licences (the same for each of them).
fn pool_gauges(desired: &Desired) -> BTreeMap<String, crate::api::SeatCounts> {
    let subs = desired
        .subscriptions
        .iter()
        .filter_map(|d| Some((&d.spec.product, d.status.seats.as_ref()?)));
    let add_ons = desired
        .add_ons
        .iter()
        .filter_map(|d| Some((&d.spec.product, d.status.quantity.as_ref()?)));
    let mut out: BTreeMap<String, crate::api::SeatCounts> = BTreeMap::new();
    for (product, seats) in subs.chain(add_ons) {
        let g = out.entry(product.clone()).or_default();
        g.purchased += seats.purchased;
        g.assigned = seats.assigned;
        g.available = seats.available;
    }
    out
}

/// Our write's resourceVersion may stand for what we read only if nobody else changed what the
/// plan reads (spec, annotations, deletion) in between; otherwise the next trigger must plan.
fn unchanged_since_read(read: &Meta, after: &ObjectMeta) -> bool {
    after.generation == read.generation
        && after.annotations.clone().unwrap_or_default() == read.annotations
        && after.deletion_timestamp.is_some() == read.deleting
}

/// JSON patches built from `serde_json::Value` (kube takes them typed).
mod json_patch_ops {
    pub struct Ops(pub serde_json::Value);

    impl Ops {
        pub fn into_patch(self) -> kube::api::Patch<()> {
            kube::api::Patch::Json(
                serde_json::from_value(self.0).expect("a well-formed JSON patch"),
            )
        }
    }
}

/// The reason of the Event recorded for a change made in the licensing service.
fn changed_reason(op: &crate::planner::Op) -> &'static str {
    use crate::planner::Op;
    match op {
        Op::Buy { .. } => "Purchased",
        Op::ConvertTrial { .. } => "TrialConverted",
        Op::SetSeats { .. } => "SeatsChanged",
        Op::SetRecurringBilling { .. } => "RecurringBillingChanged",
        Op::Cancel { .. } => "Canceled",
        Op::BuyAddOn { .. } => "AddOnPurchased",
        Op::SetAddOnQuantity { .. } => "AddOnQuantityChanged",
        Op::AssignLicenses { .. } => "LicensesChanged",
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= 1000 {
        return s.to_string();
    }
    let mut end = 1000;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Status writes through the API server: only what changed, only while leading; a new Blocked
/// reason also becomes a Warning event.
struct KubeLedger<'a> {
    ctx: &'a Ctx,
    written: HashMap<(Kind, String, String), Value>,
    uids: HashMap<(Kind, String, String), String>,
    rvs: &'a mut HashMap<(Kind, String, String), String>,
}

impl Ledger for KubeLedger<'_> {
    async fn save(&mut self, desired: &Desired) -> Result<(), crate::backend::BackendError> {
        let unavailable =
            |e: String| crate::backend::BackendError::Unavailable(format!("kubernetes: {e}"));
        if !self.ctx.leading() {
            return Err(unavailable("leadership lost: not writing status".into()));
        }
        for (kind, meta, status) in desired.statuses() {
            let key = (kind, meta.namespace.clone(), meta.name.clone());
            let norm = normalized(&status);
            let before = self.written.get(&key);
            if before == Some(&norm) {
                continue;
            }
            let old_reason = before
                .and_then(|v| v.get("blockedReason"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let after = match self.ctx.write_status(&key, &status).await {
                Ok(m) => m,
                // Deleted meanwhile: nothing left to report on.
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => return Err(unavailable(e.to_string())),
            };
            if unchanged_since_read(meta, &after) {
                self.rvs
                    .insert(key.clone(), after.resource_version.unwrap_or_default());
            }
            let new_reason = status.get("blockedReason").and_then(Value::as_str);
            if let Some(reason) = new_reason
                && old_reason.as_deref() != Some(reason)
            {
                let message = status
                    .get("conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|c| c["type"] == "Blocked"))
                    .and_then(|c| c["message"].as_str())
                    .unwrap_or_default()
                    .to_string();
                let r = ObjectRef::of(kind, meta);
                let reference = self.ctx.reference(&r, self.uids.get(&key));
                self.ctx
                    .publish(
                        &Event {
                            type_: EventType::Warning,
                            reason: reason.to_string(),
                            note: Some(truncate(&message)),
                            action: "Reconcile".into(),
                            secondary: None,
                        },
                        &reference,
                    )
                    .await;
            }
            self.written.insert(key, norm);
        }
        Ok(())
    }
}

async fn reconcile<K: Managed>(obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let org = obj.organization().to_string();
    let next = ctx.reconcile_org(&org).await?;
    ctx.backoff
        .lock()
        .expect("backoff lock")
        .remove(&key_of(K::KIND, obj.meta()));
    Ok(Action::requeue(next))
}

/// Transient failures back off exponentially per object: 1 s, 2 s, 4 s … up to 5 minutes.
fn error_policy<K: Managed>(obj: Arc<K>, err: &ReconcileError, ctx: Arc<Ctx>) -> Action {
    let mut backoff = ctx.backoff.lock().expect("backoff lock");
    let n = backoff.entry(key_of(K::KIND, obj.meta())).or_insert(0);
    *n = (*n + 1).min(16);
    let wait = Duration::from_secs((1u64 << (*n - 1)).min(300));
    tracing::warn!(error = %err, object = %obj.name_any(), retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Runs the controller until `stop` turns true. Serves /metrics, /healthz and /readyz.
pub async fn run(
    client: kube::Client,
    cfg: RunConfig,
    stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let embedded =
        Embedded::open(&cfg.state, clock.clone()).map_err(|e| RunError::State(e.to_string()))?;
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(cfg.metrics_addr)
        .await
        .map_err(|e| RunError::Listen(cfg.metrics_addr, e))?;
    let http = serve_http(listener, metrics.clone(), ready.clone(), stop.clone());

    let (leading_tx, leading) = watch::channel(cfg.election.is_none());
    let election = cfg
        .election
        .clone()
        .map(|e| tokio::spawn(leader::run(client.clone(), e, leading_tx, stop.clone())));

    let wc = watcher::Config::default().any_semantic();
    let subs = Controller::new(Api::<Subscription>::all(client.clone()), wc.clone());
    let las = Controller::new(Api::<LicenseAssignment>::all(client.clone()), wc.clone());
    let add_ons = Controller::new(Api::<AddOn>::all(client.clone()), wc.clone());
    let identity = cfg
        .election
        .as_ref()
        .map_or_else(|| "seatkeeper".to_string(), |e| e.identity.clone());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "seatkeeper".into(),
                instance: Some(identity),
            },
        ),
        client: client.clone(),
        backend: Hooked {
            inner: embedded,
            hook: metrics.clone(),
        },
        clock,
        subscriptions: subs.store(),
        assignments: las.store(),
        add_ons: add_ons.store(),
        orgs: Default::default(),
        forced: Default::default(),
        leading,
        metrics,
        backoff: Default::default(),
        cfg,
    });

    let subs = control(subs, &client, &ctx, stop.clone());
    let las = control(las, &client, &ctx, stop.clone());
    let add_ons = control(add_ons, &client, &ctx, stop.clone());
    let readiness = {
        let ctx = ctx.clone();
        async move {
            let _ = ctx.subscriptions.wait_until_ready().await;
            let _ = ctx.assignments.wait_until_ready().await;
            let _ = ctx.add_ons.wait_until_ready().await;
            ready.store(true, Ordering::SeqCst);
            tracing::info!("caches synced; ready");
        }
    };
    tokio::join!(subs, las, add_ons, readiness, http);
    if let Some(e) = election {
        let _ = e.await;
    }
    Ok(())
}

/// One kind's controller, running until `stop` turns true.
fn control<K: Managed>(
    controller: Controller<K>,
    client: &kube::Client,
    ctx: &Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    watch_related(controller, client, ctx)
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .run(reconcile::<K>, error_policy::<K>, ctx.clone())
        .for_each(|_| async {})
}

/// Namespaces (binding labels) and Secrets (product keys) re-plan the organizations of the
/// objects that depend on them.
fn watch_related<K: Managed>(
    controller: Controller<K>,
    client: &kube::Client,
    ctx: &Arc<Ctx>,
) -> Controller<K> {
    let store = controller.store();
    let by_namespace = {
        let (store, ctx) = (store.clone(), Arc::downgrade(ctx));
        move |ns: Namespace| {
            let name = ns.name_any();
            let hits: Vec<Arc<K>> = store
                .state()
                .into_iter()
                .filter(|o| o.namespace().as_deref() == Some(name.as_str()))
                .collect();
            if let Some(ctx) = ctx.upgrade() {
                for o in &hits {
                    ctx.force(o.organization());
                }
            }
            hits.into_iter()
                .map(|o| KubeRef::from_obj(&*o))
                .collect::<Vec<_>>()
        }
    };
    let by_secret = {
        let (store, ctx) = (store, Arc::downgrade(ctx));
        move |secret: Secret| {
            let (ns, name) = (secret.namespace(), secret.name_any());
            let hits: Vec<Arc<K>> = store
                .state()
                .into_iter()
                .filter(|o| o.namespace() == ns && o.secret().is_some_and(|(s, _)| s == name))
                .collect();
            if let Some(ctx) = ctx.upgrade() {
                for o in &hits {
                    ctx.force(o.organization());
                }
            }
            hits.into_iter()
                .map(|o| KubeRef::from_obj(&*o))
                .collect::<Vec<_>>()
        }
    };
    controller
        .watches(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            by_namespace,
        )
        .watches(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            by_secret,
        )
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::SeqCst) {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "caches not synced",
                        )
                    }
                }
            }),
        );
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "metrics server failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SeatCounts, SubscriptionStatus};

    #[test]
    fn seats_purchased_gauge_sums_the_subscriptions_of_a_product() {
        let sub = |seats: i64| Declared {
            meta: Meta::default(),
            spec: serde_json::from_value(
                json!({"organization": "contoso.com", "product": "SPB", "seats": seats}),
            )
            .unwrap(),
            status: SubscriptionStatus {
                seats: Some(SeatCounts {
                    desired: seats,
                    purchased: seats,
                    assigned: 9,
                    available: 4,
                }),
                ..Default::default()
            },
        };
        let desired = Desired {
            subscriptions: vec![sub(5), sub(8)],
            ..Default::default()
        };
        let g = &pool_gauges(&desired)["SPB"];
        assert_eq!((g.purchased, g.assigned, g.available), (13, 9, 4));
    }
}
