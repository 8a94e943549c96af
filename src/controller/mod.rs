//! `seatkeeper run`: the controller. A thin Kubernetes shell around the same planner and
//! executor as `plan`/`apply`; no licensing rule lives here, and it works with any
//! [`Backend`].
//!
//! - [`kinds`]: the three resource kinds and the one intent builder (cached objects → the
//!   planner's declared state);
//! - [`context`]: what the controllers share, and when an organization is reconciled;
//! - [`status`]: the one status writer (server-side apply, only on change, once per object
//!   per convergence) and the Warning events for new Blocked reasons;
//! - [`watches`]: Namespaces and Secrets, watched once, as metadata only;
//! - [`finalizers`], [`events`], [`metrics`], [`leader`] (Lease election), [`http`].

pub mod apihealth;
pub mod context;
pub mod events;
pub mod finalizers;
pub mod http;
pub mod kinds;
pub mod leader;
pub mod listed;
pub mod metrics;
pub mod shards;
pub mod status;
pub mod tenants;
pub mod watches;

pub use status::FIELD_MANAGER;

use crate::api::{AddOn, LicenseAssignment, Organization, Subscription};
use crate::backend::embedded::Embedded;
use crate::backend::hooked::Hooked;
use crate::backend::{Backend, BackendError};
use crate::clock::{Clock, SystemClock};
use crate::planner::Options;
use context::Ctx;
use futures::{StreamExt, TryStreamExt};
use kinds::{Managed, key_of};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The embedded backend's tenant file (used by [`run`]; [`run_with`] takes a backend).
    pub state: PathBuf,
    pub resync: Duration,
    pub options: Options,
    pub metrics_addr: SocketAddr,
    /// None: no leader election (a single replica).
    pub election: Option<leader::Election>,
    /// Graph's write budgets the Microsoft tenants are paced to.
    pub graph_budgets: tenants::GraphBudgets,
    /// Spread the organizations with their own Microsoft tenant over the replicas (see
    /// [`shards`]), with the election's namespace, identity and timings. Needs `election`.
    pub sharding: bool,
    /// [`run`] holds the tenant file's lock (see [`crate::backend::lock`]): without leader
    /// election from start to stop, waiting this long for it at start; with it, while leading.
    /// None: no lock (a backend without a file).
    pub lock_timeout: Option<Duration>,
    /// After the stop signal, the work in flight has this long to finish its batch; then
    /// whatever is left is dropped and the process ends.
    pub shutdown_timeout: Duration,
    /// Where Secrets (credentials, product keys) may be read.
    pub secret_namespaces: watches::SecretNamespaces,
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
    Backend(#[from] BackendError),
    #[error("kubernetes API: {}", apihealth::describe(.0))]
    Kube(#[from] kube::Error),
}

impl ReconcileError {
    /// The failure category of the `seatkeeper_reconcile_failures_total` metric.
    fn category(&self) -> &'static str {
        match self {
            ReconcileError::Backend(BackendError::Throttled { .. }) => "throttled",
            ReconcileError::Backend(BackendError::CredentialsInvalid(_)) => "credentials",
            // A status write or a Secret read: the cluster, not the licensing service.
            ReconcileError::Backend(BackendError::Cluster(_)) => "kubernetes",
            ReconcileError::Backend(_) => "backend",
            ReconcileError::Kube(_) => "kubernetes",
        }
    }
}

/// Runs the controller with the embedded backend kept in `cfg.state`, until `stop` turns true.
pub async fn run(
    client: kube::Client,
    cfg: RunConfig,
    stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Without an election this process is the only writer from start to stop.
    let _lock = match (cfg.lock_timeout, &cfg.election) {
        (Some(timeout), None) => {
            let path = cfg.state.clone();
            let lock = tokio::task::spawn_blocking(move || {
                crate::backend::lock::acquire(
                    &path,
                    crate::backend::lock::Access::Write,
                    timeout,
                    "seatkeeper run",
                )
            })
            .await
            .expect("the lock task does not panic")
            .map_err(|e| RunError::State(e.to_string()))?;
            Some(lock)
        }
        _ => None,
    };
    let embedded =
        Embedded::open(&cfg.state, clock.clone()).map_err(|e| RunError::State(e.to_string()))?;
    let state = cfg.lock_timeout.map(|_| cfg.state.clone());
    run_inner(client, cfg, embedded, clock, stop, state).await
}

/// Runs the controller with any backend until `stop` turns true. Serves /metrics, /healthz
/// and /readyz.
pub async fn run_with<B: Backend + 'static>(
    client: kube::Client,
    cfg: RunConfig,
    backend: B,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    run_inner(client, cfg, backend, clock, stop, None).await
}

/// `run_with`, leading only while holding `state`'s lock when one is given.
async fn run_inner<B: Backend + 'static>(
    client: kube::Client,
    cfg: RunConfig,
    backend: B,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
    state: Option<PathBuf>,
) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(cfg.metrics_addr)
        .await
        .map_err(|e| RunError::Listen(cfg.metrics_addr, e))?;
    let http = http::serve(listener, metrics.clone(), ready.clone(), stop.clone());

    let (leading_tx, leading) = watch::channel(cfg.election.is_none());
    // The leader keeps its Lease (and renews it) until the work in flight is drained.
    let (drained_tx, drained) = watch::channel(false);
    // The stop signal reaches the run in flight: it finishes the call it is making, saves,
    // and starts nothing else; queued reconciles return at once.
    let interrupt = cfg.options.interrupt.clone();
    let shutdown_timeout = cfg.shutdown_timeout;
    let mut stopped = stop.clone();
    let stopped = async move {
        let _ = stopped.wait_for(|s| *s).await;
        interrupt.request();
        tracing::info!(
            timeout_seconds = shutdown_timeout.as_secs(),
            "stopping: finishing the work in flight"
        );
        tokio::time::sleep(shutdown_timeout).await;
    };

    // Whether the API server answers: shared by watches, reconciles, status writes and the
    // Lease, so an outage is told once and its end once.
    let health = Arc::new(apihealth::ApiHealth::default());
    let wc = watcher::Config::default().any_semantic();
    let (triggers, receivers) = watches::triggers();
    // Each watch's first complete list; the namespaces' one is what reconciles wait for.
    let (flags, all_listed): (Vec<_>, Vec<_>) = (0..5).map(|_| listed::flag()).unzip();
    let [subs_l, las_l, add_ons_l, orgs_l, namespaces_l]: [listed::Lister; 5] =
        flags.try_into().ok().expect("five flags");
    let h = &health;
    let subs = slim(
        Api::<Subscription>::all(client.clone()),
        wc.clone(),
        subs_l,
        h,
    )
    .reconcile_on(receivers.subscriptions);
    let las = slim(
        Api::<LicenseAssignment>::all(client.clone()),
        wc.clone(),
        las_l,
        h,
    )
    .reconcile_on(receivers.assignments);
    let add_ons = slim(Api::<AddOn>::all(client.clone()), wc.clone(), add_ons_l, h)
        .reconcile_on(receivers.add_ons);
    let orgs = slim(Api::<Organization>::all(client.clone()), wc, orgs_l, h)
        .reconcile_on(receivers.organizations);
    let (namespaces, namespace_changes) = watches::namespaces(client.clone(), namespaces_l);
    let stores = (
        subs.store(),
        las.store(),
        add_ons.store(),
        (namespaces, all_listed[4].clone()),
        orgs.store(),
    );
    let election = cfg.election.clone();
    let sharding = election.clone().filter(|_| cfg.sharding);
    let organizations_trigger = triggers.organizations();
    let ctx = context(
        client.clone(),
        cfg,
        backend,
        clock,
        stores,
        leading,
        (metrics, health),
    );
    let election = election.map(|e| {
        let health = ctx.api.clone();
        let run = leader::run(client, e, leading_tx, stop.clone(), drained, state, health);
        Task(tokio::spawn(run))
    });
    let sharding = sharding.zip(ctx.shards.clone()).map(|(e, shards)| {
        let run = shards::run(
            ctx.clone(),
            shards,
            e,
            organizations_trigger,
            stop.clone(),
            drained_tx.subscribe(),
        );
        Task(tokio::spawn(run))
    });
    let related = {
        let mut stop = stop.clone();
        let watching = watches::run(ctx.clone(), namespace_changes, triggers);
        async move {
            tokio::select! {
                _ = watching => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
    };
    let subs = control(subs, &ctx, stop.clone());
    let las = control(las, &ctx, stop.clone());
    let add_ons = control(add_ons, &ctx, stop.clone());
    let orgs = {
        let mut stop = stop.clone();
        orgs.graceful_shutdown_on(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .run(reconcile_organization::<B>, organization_error, ctx.clone())
        .for_each(|_| async {})
    };
    let readiness = {
        let ready = ready.clone();
        let mut stop = stop.clone();
        let synced = async move {
            for l in &all_listed {
                l.wait().await;
            }
            ready.store(true, Ordering::SeqCst);
            tracing::info!("caches synced; ready");
        };
        async move {
            tokio::select! {
                _ = synced => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
    };
    let controllers = async {
        tokio::join!(subs, las, add_ons, orgs, related, readiness);
    };
    // Stopping, the drain is over when seatkeeper's own reconciles are: the kube-runtime
    // controllers around them are then let go, finished or not (one of them sometimes never
    // completes its own graceful shutdown).
    let ours_drained = {
        let mut stop = stop.clone();
        let mut busy = ctx.busy.subscribe();
        async move {
            let _ = stop.wait_for(|s| *s).await;
            let _ = busy.wait_for(|n| *n == 0).await;
        }
    };
    let metrics_server = Task(tokio::spawn(http));
    tokio::select! {
        _ = controllers => {}
        _ = ours_drained => {}
        _ = stopped => {
            // Past the bound: what is still running is dropped (its tasks are aborted).
            tracing::warn!(
                timeout_seconds = shutdown_timeout.as_secs(),
                "stopping: work still running after --shutdown-timeout, dropped"
            );
        }
    }
    ready.store(false, Ordering::SeqCst);
    drained_tx.send_replace(true);
    if let Some(mut e) = election {
        // Releases the Lease (bounded: an unreachable API server cannot hold the exit).
        if tokio::time::timeout(Duration::from_secs(3), &mut e.0)
            .await
            .is_err()
        {
            tracing::warn!("stopping: the Lease could not be released in time");
        }
    }
    if let Some(mut s) = sharding
        && tokio::time::timeout(Duration::from_secs(3), &mut s.0)
            .await
            .is_err()
    {
        tracing::warn!("stopping: the shard Leases could not be released in time");
    }
    drop(metrics_server);
    tracing::info!("stopped");
    Ok(())
}

/// A task of the run (the Lease keepers, the metrics server), aborted when the run is dropped:
/// a run that ends, or is dropped as a crashed process would be, leaves nothing behind.
pub(crate) struct Task(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the controllers share.
fn context<B: Backend>(
    client: kube::Client,
    cfg: RunConfig,
    backend: B,
    clock: Arc<dyn Clock>,
    (subscriptions, assignments, add_ons, (namespaces, namespaces_listed), organizations): Stores,
    leading: watch::Receiver<bool>,
    (metrics, api): (Metrics, Arc<apihealth::ApiHealth>),
) -> Arc<Ctx<B>> {
    let identity = cfg
        .election
        .as_ref()
        .map_or_else(|| "seatkeeper".to_string(), |e| e.identity.clone());
    let reporter = Reporter {
        controller: "seatkeeper".into(),
        instance: Some(identity),
    };
    Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        backend: Hooked {
            inner: backend,
            hook: metrics.clone(),
        },
        clock,
        subscriptions,
        assignments,
        add_ons,
        namespaces,
        namespaces_listed,
        organizations,
        tenants: tenants::Tenants::new(cfg.graph_budgets),
        orgs: Default::default(),
        forced: Default::default(),
        leading,
        metrics,
        backoff: Default::default(),
        deletion_backoff: Default::default(),
        api,
        busy: watch::channel(0).0,
        shards: cfg
            .election
            .as_ref()
            .filter(|_| cfg.sharding)
            .map(|e| Arc::new(shards::Shards::new(&e.identity))),
        cfg,
    })
}

/// The caches the controllers keep.
type Stores = (
    Store<Subscription>,
    Store<LicenseAssignment>,
    Store<AddOn>,
    (watches::Namespaces, listed::Listed),
    Store<Organization>,
);

/// An Organization changed (or its Secret did): its organization is planned again, with its
/// backend rebuilt from the new credentials.
async fn reconcile_organization<B: Backend + 'static>(
    obj: Arc<Organization>,
    ctx: Arc<Ctx<B>>,
) -> Result<Action, ReconcileError> {
    ctx.namespaces_listed.wait().await;
    ctx.force(&obj.spec.domain);
    let next = ctx.reconcile_org(&obj.spec.domain).await?;
    Ok(Action::requeue(next))
}

fn organization_error<B: Backend>(
    obj: Arc<Organization>,
    err: &ReconcileError,
    ctx: Arc<Ctx<B>>,
) -> Action {
    let what = format!("reconcile of organization {} failed", obj.spec.domain);
    ctx.report_failure(&what, err);
    Action::requeue(Duration::from_secs(30))
}

/// A controller whose cache keeps objects without their `managedFields`: seatkeeper never
/// reads them, and at thousands of objects they are megabytes. `lister` is raised at the
/// watch's first complete list; every event the watch brings is an answer from the API server.
fn slim<K>(
    api: Api<K>,
    wc: watcher::Config,
    lister: listed::Lister,
    health: &Arc<apihealth::ApiHealth>,
) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    // Backed off when the API server fails: an outage is retried calmly, not in a tight loop.
    let objects = kube::runtime::watcher(api, wc)
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .inspect_ok({
            let health = health.clone();
            move |e| {
                lister.note(e);
                health.reached();
            }
        })
        .applied_objects();
    Controller::for_stream(objects, reader)
}

/// One kind's controller, running until `stop` turns true.
fn control<K: Managed, B: Backend + 'static>(
    controller: Controller<K>,
    ctx: &Arc<Ctx<B>>,
    mut stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    let health = ctx.clone();
    controller
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .run(reconcile::<K, B>, error_policy::<K, B>, ctx.clone())
        .for_each(move |r| {
            if let Err(kube::runtime::controller::Error::QueueError(e)) = r {
                health
                    .api
                    .watch_failed(&format!("watching {}s", K::KIND), &e);
            }
            async {}
        })
}

async fn reconcile<K: Managed, B: Backend + 'static>(
    obj: Arc<K>,
    ctx: Arc<Ctx<B>>,
) -> Result<Action, ReconcileError> {
    // Planning reads the namespace index: wait for it once, at start.
    ctx.namespaces_listed.wait().await;
    let org = obj.organization().to_string();
    // No `api.reached()` here: a reconcile that wrote nothing made no call, and proves nothing
    // about the API server (during an outage it said "reachable again" falsely).
    let next = ctx.reconcile_org(&org).await?;
    ctx.backoff
        .lock()
        .expect("backoff lock")
        .remove(&key_of(K::KIND, obj.meta()));
    Ok(Action::requeue(next))
}

/// Transient failures back off exponentially per object: 1 s, 2 s, 4 s … up to 5 minutes.
fn error_policy<K: Managed, B: Backend>(
    obj: Arc<K>,
    err: &ReconcileError,
    ctx: Arc<Ctx<B>>,
) -> Action {
    let mut backoff = ctx.backoff.lock().expect("backoff lock");
    let n = backoff.entry(key_of(K::KIND, obj.meta())).or_insert(0);
    *n = (*n + 1).min(16);
    let wait = Duration::from_secs((1u64 << (*n - 1)).min(300));
    drop(backoff);
    let what = format!(
        "reconcile of {} {}/{} failed (retried in {}s)",
        K::KIND,
        obj.namespace().unwrap_or_default(),
        obj.name_any(),
        wait.as_secs()
    );
    ctx.report_failure(&what, err);
    Action::requeue(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_status_write_or_secret_read_counts_as_kubernetes_not_as_the_backend() {
        let category = |e: BackendError| ReconcileError::Backend(e).category();
        assert_eq!(
            category(BackendError::Cluster("kubernetes: gone".into())),
            "kubernetes"
        );
        assert_eq!(
            category(BackendError::Unavailable("Graph: 503".into())),
            "backend"
        );
        assert_eq!(
            category(BackendError::Throttled {
                retry_after_seconds: 1
            }),
            "throttled"
        );
        assert_eq!(
            category(BackendError::CredentialsInvalid("no".into())),
            "credentials"
        );
    }
}
