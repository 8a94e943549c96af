//! What the controllers share, and the one place that decides when an organization is
//! reconciled: whatever triggers a reconcile, the unit of work is the object's organization,
//! planned from the caches against one backend snapshot per pass. A trigger whose state an
//! earlier run already covered (our own status writes, several objects of one organization)
//! is answered from what that run read.

use super::finalizers;
use super::kinds::{Key, Managed, declared, fingerprint_of, key_of, of_org};
use super::metrics::{self, Metrics};
use super::status::{KubeLedger, Written};
use super::tenants::{self, Tenant, Tenants};
use super::watches::{self, Namespaces};
use super::{ReconcileError, RunConfig, events};
use crate::api::{AddOn, LicenseAssignment, Organization, SeatCounts, Subscription};
use crate::backend::Backend;
use crate::backend::BackendError;
use crate::backend::hooked::Hooked;
use crate::clock::Clock;
use crate::domain::Instant;
use crate::domain::billing::CURRENCY;
use crate::executor::{self, DEFAULT_MAX_PASSES, Report};
use crate::planner::Desired;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What one organization's last reconcile saw.
#[derive(Default)]
pub struct OrgState {
    /// When the last run wants to look again (resync, a credit check clearing, …).
    due: Option<std::time::Instant>,
    /// The resourceVersions of its objects as that run read (and wrote) them.
    seen: BTreeMap<Key, String>,
}

pub struct Ctx<B> {
    pub client: kube::Client,
    pub backend: Hooked<B, Metrics>,
    pub clock: Arc<dyn Clock>,
    pub cfg: RunConfig,
    pub subscriptions: Store<Subscription>,
    pub assignments: Store<LicenseAssignment>,
    pub add_ons: Store<AddOn>,
    pub namespaces: Namespaces,
    /// Raised once the namespace index has listed every namespace (see [`super::listed`]).
    pub namespaces_listed: super::listed::Listed,
    pub organizations: Store<Organization>,
    /// The Microsoft tenants, built from Organizations.
    pub tenants: Tenants,
    pub orgs: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<OrgState>>>>,
    /// Organizations to re-plan even though none of their objects changed (a Secret or a
    /// Namespace label did).
    pub forced: std::sync::Mutex<HashSet<String>>,
    pub leading: watch::Receiver<bool>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub backoff: std::sync::Mutex<HashMap<Key, u32>>,
    /// Deleted objects whose deletion policy could not be carried out: attempts so far.
    pub deletion_backoff: std::sync::Mutex<HashMap<Key, u32>>,
    /// Whether the API server answers: an outage is logged once, not per request.
    pub api: Arc<super::apihealth::ApiHealth>,
    /// Reconciles of an organization in progress: what a stop waits for.
    pub busy: watch::Sender<usize>,
    /// With `--sharding`: the organizations this replica owns.
    pub shards: Option<Arc<super::shards::Shards>>,
}

/// One reconcile in progress, counted in [`Ctx::busy`] until dropped.
struct Busy<'a>(&'a watch::Sender<usize>);

impl<'a> Busy<'a> {
    fn enter(busy: &'a watch::Sender<usize>) -> Busy<'a> {
        busy.send_modify(|n| *n += 1);
        Busy(busy)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl<B: Backend> Ctx<B> {
    pub fn leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// The parts the status writer needs; `allowed` says whether this replica may still write
    /// (it leads, or its shard still holds the organization).
    pub fn writer<'a>(
        &'a self,
        allowed: &'a (dyn Fn() -> bool + Send + Sync),
    ) -> super::status::Writer<'a> {
        super::status::Writer {
            client: &self.client,
            recorder: &self.recorder,
            metrics: &self.metrics,
            api: &self.api,
            allowed,
        }
    }

    /// Whether a pass of `org` in flight may still write: a sharded organization while this
    /// replica's shard holds it (a pass being handed over finishes), any other while leading.
    fn may_write(&self, org: &str) -> bool {
        self.shard_of(org)
            .map_or_else(|| self.leading(), |s| s.holds(org))
    }

    /// A failed reconcile, in the log: a Kubernetes failure through the outage gate (one
    /// WARN when the API server goes, expected races at debug); anything else as one WARN,
    /// unless the API server is known to be down (then it is the cause).
    pub fn report_failure(&self, what: &str, err: &super::ReconcileError) {
        match err {
            super::ReconcileError::Kube(e) => self.api.failed(what, e),
            _ if self.api.is_down() => tracing::debug!(error = %err, "{what}"),
            _ => tracing::warn!(error = %err, "{what}"),
        }
    }

    /// SIGTERM or SIGINT: the run in flight finishes its batch, nothing new starts.
    pub fn stopping(&self) -> bool {
        self.cfg.options.interrupt.was_requested()
    }

    pub(super) fn org_state(&self, org: &str) -> Arc<tokio::sync::Mutex<OrgState>> {
        self.orgs
            .lock()
            .expect("orgs lock")
            .entry(org.to_lowercase())
            .or_default()
            .clone()
    }

    /// Whether this replica reconciles `org`: sharded, when its shard owns it; otherwise when
    /// it leads.
    pub fn may_reconcile(&self, org: &str) -> bool {
        self.shard_of(org)
            .map_or_else(|| self.leading(), |s| s.owns(org))
    }

    /// This replica's shards when `org` is spread by sharding (`--sharding`, and an
    /// Organization with its own Microsoft tenant); None when the leader reconciles it.
    fn shard_of(&self, org: &str) -> Option<&Arc<super::shards::Shards>> {
        self.shards.as_ref().filter(|_| {
            tenants::organization_of(&self.organizations, org)
                .is_some_and(|o| super::shards::sharded(&o))
        })
    }

    /// When a replica that does not reconcile `org` looks again: a sharded organization is
    /// triggered when this replica claims it, so not before the resync.
    fn idle(&self, org: &str) -> Duration {
        if self.shard_of(org).is_some() {
            self.cfg.resync
        } else {
            Duration::from_secs(5)
        }
    }

    pub fn force(&self, org: &str) {
        self.forced
            .lock()
            .expect("forced lock")
            .insert(org.to_lowercase());
    }

    /// The resourceVersions of everything the organization's plan reads from the caches.
    fn fingerprint(&self, org: &str) -> BTreeMap<Key, String> {
        let mut out = BTreeMap::new();
        fingerprint_of(&mut out, &of_org(&self.subscriptions, org));
        fingerprint_of(&mut out, &of_org(&self.assignments, org));
        fingerprint_of(&mut out, &of_org(&self.add_ons, org));
        out
    }

    /// Plans and applies one organization, unless a run already covered this state. Returns
    /// when to look again.
    pub async fn reconcile_org(&self, org: &str) -> Result<Duration, ReconcileError> {
        // Counted before the stop is looked at: a stop never misses a reconcile starting.
        let _busy = Busy::enter(&self.busy);
        if !self.may_reconcile(org) || self.stopping() {
            // Followers observe only; the leader (or the organization's shard) does the
            // work. Stopping: no new work.
            return Ok(self.idle(org));
        }
        let state = self.org_state(org);
        let mut state = state.lock().await;
        if !self.may_reconcile(org) || self.stopping() {
            // Waited for the organization while the run in flight finished its batch (or its
            // shard handed it over meanwhile).
            return Ok(self.idle(org));
        }
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
            return Ok(due - now);
        }
        // Boxed: thousands of reconciles of one organization wait on its lock at once (one
        // per object after a restart), and each would otherwise hold a converge's whole state
        // machine (kilobytes) while it waits.
        Box::pin(self.reconcile_locked(org, &mut state)).await
    }

    /// [`Ctx::reconcile_org`] once it holds the organization's lock and has work to do.
    async fn reconcile_locked(
        &self,
        org: &str,
        state: &mut OrgState,
    ) -> Result<Duration, ReconcileError> {
        let started = std::time::Instant::now();
        let _pass = self
            .shard_of(org)
            .map(|s| super::shards::Pass::enter(org, &s.identity));
        self.metrics.reconciles.inc();
        let result = match self.converge_org(org, state).await {
            // Credentials that do not work are a condition on the Organization, looked at
            // again at the next resync or when the Organization or its Secret changes; not a
            // crash loop.
            // So is a tenant that refuses the app (consent revoked, a GDAP relationship
            // expired): that organization alone is Blocked; the others go on.
            Err(ReconcileError::Backend(
                e @ (BackendError::CredentialsInvalid(_)
                | BackendError::Refused(crate::domain::Refusal::PermissionDenied { .. })),
            )) => {
                self.metrics.fail("credentials");
                self.report_organization(org, None, Some(&e)).await?;
                let next = self.cfg.resync;
                state.due = Some(std::time::Instant::now() + next);
                Ok(next)
            }
            other => other,
        };
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
}

/// The uids of the objects read, for Events.
fn uids_of<A: Managed, L: Managed, D: Managed>(
    subs: &[Arc<A>],
    las: &[Arc<L>],
    add_ons: &[Arc<D>],
) -> HashMap<Key, String> {
    fn of<K: Managed>(out: &mut HashMap<Key, String>, objects: &[Arc<K>]) {
        for o in objects {
            if let Some(uid) = &o.meta().uid {
                out.insert(key_of(K::KIND, o.meta()), uid.clone());
            }
        }
    }
    let mut out = HashMap::new();
    of(&mut out, subs);
    of(&mut out, las);
    of(&mut out, add_ons);
    out
}

impl<B: Backend> Ctx<B> {
    /// Read → finalizers → converge → events, finalizers, gauges → when to look again.
    async fn converge_org(
        &self,
        org: &str,
        state: &mut OrgState,
    ) -> Result<Duration, ReconcileError> {
        let now = self.clock.now();
        let subs = self
            .current(of_org(&self.subscriptions, org), &state.seen)
            .await?;
        let las = self
            .current(of_org(&self.assignments, org), &state.seen)
            .await?;
        let add_ons = self
            .current(of_org(&self.add_ons, org), &state.seen)
            .await?;
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
        self.read_bindings(&mut desired);
        // Deleted objects with nothing to carry out go now, before the service is asked
        // anything (it may be unreachable, refuse the credentials, not know the product).
        for (r, why) in crate::planner::deletion::releasable(&desired) {
            finalizers::remove(&self.client, &r).await?;
            desired.forget(&r);
            let key = (r.kind, r.namespace.clone(), r.name.clone());
            self.deletion_backoff
                .lock()
                .expect("deletion backoff lock")
                .remove(&key);
            tracing::info!(object = %r, reason = why.describe(), "deleted: finalizer removed");
        }
        self.read_product_keys(&subs, &mut desired).await?;

        // Every live object carries the finalizer before anything is bought for it.
        let mut rvs: HashMap<Key, String> = HashMap::new();
        let fresh = finalizers::add(&self.client, &subs, now, &mut rvs).await?
            && finalizers::add(&self.client, &las, now, &mut rvs).await?
            && finalizers::add(&self.client, &add_ons, now, &mut rvs).await?;
        if !fresh {
            // Deleted since it was read: the watch brings the deletion, planned then.
            tracing::debug!(
                organization = org,
                "an object was deleted while being read; planning again"
            );
            return Ok(Duration::from_secs(1));
        }

        let organization = tenants::organization_of(&self.organizations, org);
        let tenant = self
            .tenants
            .backend(
                &self.client,
                &self.metrics,
                &self.cfg.secret_namespaces,
                organization.as_deref(),
            )
            .await?;
        let report = self.converge(org, &mut desired, &mut rvs, tenant).await?;
        self.report_organization(org, Some(&report.observed), None)
            .await?;
        for r in &report.plan.deleted {
            finalizers::remove(&self.client, r).await?;
        }
        let uids = uids_of(&subs, &las, &add_ons);
        let deletion_retry = self
            .report_waiting_deletions(&desired, &report, &uids)
            .await;
        self.update_gauges(org, &desired, &report);

        // What this run read (not what the caches hold now: a change that arrived meanwhile
        // must still be planned), with our own writes' resourceVersions.
        let mut seen = read;
        for (k, rv) in rvs {
            if let Some(v) = seen.get_mut(&k) {
                *v = rv;
            }
        }
        state.seen = seen;
        let next =
            deletion_retry.map_or(self.next_look(&report), |d| self.next_look(&report).min(d));
        state.due = Some(std::time::Instant::now() + next);
        Ok(next)
    }

    /// Deleted objects whose deletion policy could not be carried out this time: a Warning
    /// Event and a log line per attempt, and a retry with backoff (5 s, 10 s … 5 min) per
    /// object. Returns the soonest retry.
    async fn report_waiting_deletions(
        &self,
        desired: &Desired,
        report: &Report,
        uids: &HashMap<Key, String>,
    ) -> Option<Duration> {
        let mut soonest: Option<Duration> = None;
        for (meta, at) in crate::intents::each_status(desired) {
            let r = crate::planner::ObjectRef::of(at.kind, meta);
            let key = (at.kind, meta.namespace.clone(), meta.name.clone());
            if !meta.deleting || report.plan.deleted.contains(&r) {
                self.deletion_backoff
                    .lock()
                    .expect("deletion backoff lock")
                    .remove(&key);
                continue;
            }
            let Some(why) = super::status::blocked_message(&at.value(desired)) else {
                continue; // still in progress (removals, a cancellation): not waiting
            };
            let attempt = {
                let mut b = self.deletion_backoff.lock().expect("deletion backoff lock");
                let n = b.entry(key.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let wait = Duration::from_secs((5u64 << (attempt - 1).min(6)).min(300));
            tracing::warn!(object = %r, retry_in_seconds = wait.as_secs(), "deletion waits: {why}");
            let reference = events::reference(&r, uids.get(&key));
            events::publish(
                &self.recorder,
                &events::warning("DeletionBlocked", &why),
                &reference,
            )
            .await;
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
        soonest
    }

    /// The objects as they stand, with our own last status. The cache can lag behind our own
    /// status writes: an object whose cached version is not the one the last run saw (or
    /// wrote) is read again, so a stale status (the licences a LicenseAssignment owns, a
    /// purchase in flight) is never planned from.
    async fn current<K: Managed>(
        &self,
        objects: Vec<Arc<K>>,
        seen: &BTreeMap<Key, String>,
    ) -> Result<Vec<Arc<K>>, kube::Error> {
        let mut out = Vec::with_capacity(objects.len());
        for o in objects {
            let key = key_of(K::KIND, o.meta());
            let cached = o.meta().resource_version.as_ref();
            if seen.get(&key).is_none_or(|rv| Some(rv) == cached) {
                out.push(o);
                continue;
            }
            let api: Api<K> = Api::namespaced(self.client.clone(), &key.1);
            if let Some(latest) = api.get_opt(&key.2).await? {
                out.push(Arc::new(latest));
            }
        }
        Ok(out)
    }

    /// Namespace bindings: a namespace's label, else the Organization whose
    /// `namespaceSelector` selects it.
    fn read_bindings(&self, desired: &mut Desired) {
        let namespaces: HashSet<String> = crate::intents::metas(desired)
            .map(|(_, m)| m.namespace.clone())
            .collect();
        let labels: BTreeMap<String, BTreeMap<String, String>> = namespaces
            .into_iter()
            .map(|ns| {
                let l = watches::labels(&self.namespaces, &ns);
                (ns, l)
            })
            .collect();
        let organizations: Vec<Organization> = self
            .organizations
            .state()
            .iter()
            .map(|o| (**o).clone())
            .collect();
        desired.namespaces = crate::organizations::bindings(&labels, &organizations);
    }

    /// The Organization's status, when one declares `org`.
    async fn report_organization(
        &self,
        org: &str,
        observed: Option<&crate::planner::Observed>,
        failure: Option<&BackendError>,
    ) -> Result<(), ReconcileError> {
        let Some(o) = tenants::organization_of(&self.organizations, org) else {
            return Ok(());
        };
        let mut status = tenants::status_of(&o, observed, failure, self.clock.now());
        status.shard = self.shard_of(org).map(|s| s.identity.clone());
        let before = o.status.as_ref().and_then(|s| s.blocked_reason.clone());
        if tenants::write_status(&self.client, &o, &status, self.cfg.resync).await? {
            self.metrics.status_writes.inc();
        }
        // A new Blocked reason: one Warning Event and one log line, as for every kind.
        if let Some(reason) = status
            .blocked_reason
            .as_ref()
            .filter(|r| Some(*r) != before.as_ref())
        {
            let message = status
                .conditions
                .get("Blocked")
                .map(|c| c.message.clone())
                .unwrap_or_default();
            let name = o.metadata.name.clone().unwrap_or_default();
            tracing::warn!(organization = %name, reason = %reason, "{message}");
            let reference = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some(crate::api::API_VERSION.into()),
                kind: Some("Organization".into()),
                name: Some(name),
                uid: o.metadata.uid.clone(),
                ..Default::default()
            };
            events::publish(
                &self.recorder,
                &events::warning(reason, &message),
                &reference,
            )
            .await;
        }
        Ok(())
    }

    /// The product keys Subscriptions name, read with a GET when needed (never cached).
    async fn read_product_keys(
        &self,
        subs: &[Arc<Subscription>],
        desired: &mut Desired,
    ) -> Result<(), kube::Error> {
        for s in subs {
            let Some((name, key)) = s.secret() else {
                continue;
            };
            let ns = s.namespace().unwrap_or_default();
            if !self.cfg.secret_namespaces.allows(&ns) {
                let why = self
                    .cfg
                    .secret_namespaces
                    .refusal("spec.productKey", &ns, name);
                desired
                    .secrets_out_of_reach
                    .insert((ns, name.to_string()), why);
                continue;
            }
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
        Ok(())
    }

    /// The executor's run, with statuses written through the one status writer and an Event
    /// for every change made or refused, published as each is confirmed.
    async fn converge(
        &self,
        org: &str,
        desired: &mut Desired,
        rvs: &mut HashMap<Key, String>,
        tenant: Option<Arc<Tenant>>,
    ) -> Result<Report, ReconcileError> {
        let mut options = self.cfg.options.clone();
        options.per_organization = tenants::limits(&self.organizations);
        if let Some(shards) = self.shard_of(org) {
            // Each change is made only while this replica's shard still holds the
            // organization: a replica cut off from its Lease stops before another takes over.
            let (shards, org) = (shards.clone(), org.to_lowercase());
            options.interrupt = options
                .interrupt
                .fenced(Arc::new(move || shards.holds(&org)));
        }
        match tenant {
            Some(t) => self.run_executor(org, &*t, desired, rvs, &options).await,
            None => {
                self.run_executor(org, &self.backend, desired, rvs, &options)
                    .await
            }
        }
    }

    async fn run_executor<X: Backend>(
        &self,
        org: &str,
        backend: &X,
        desired: &mut Desired,
        rvs: &mut HashMap<Key, String>,
        options: &crate::planner::Options,
    ) -> Result<Report, ReconcileError> {
        let allowed = || self.may_write(org);
        let mut ledger = KubeLedger {
            ctx: self.writer(&allowed),
            written: crate::intents::each_status(desired)
                .map(|(m, at)| {
                    let key = (at.kind, m.namespace.clone(), m.name.clone());
                    (key, Written::of(&at.value(desired)))
                })
                .collect(),
            uids: crate::intents::metas(desired)
                .map(|(k, m)| ((k, m.namespace.clone(), m.name.clone()), m.uid.clone()))
                .collect(),
            rvs,
        };
        // The per-user states read from status are fingerprinted above and planned afresh;
        // nothing reads them, and at 100k users they are tens of megabytes held through the
        // first plan.
        for a in &mut desired.assignments {
            a.status.users = Vec::new();
        }
        let report = executor::converge(
            backend,
            &mut ledger,
            desired,
            self.clock.as_ref(),
            options,
            DEFAULT_MAX_PASSES,
        )
        .await?;
        // Each change's Event went out as the service confirmed it (KubeLedger::confirmed).
        Ok(report)
    }

    /// The resync, sooner when something is due by itself (a credit check, a 202) or the run
    /// did not converge.
    fn next_look(&self, report: &Report) -> Duration {
        let mut next = self.cfg.resync;
        if let Some(at) = report.plan.requeue_at {
            let wait = at.duration_since(self.clock.now()).as_secs().max(1) as u64;
            next = next.min(Duration::from_secs(wait));
        }
        if !report.converged {
            next = next.min(Duration::from_secs(30));
        }
        next
    }

    fn update_gauges(&self, org: &str, desired: &Desired, report: &Report) {
        self.metrics
            .set_organization(org, &figures(org, desired, report, self.clock.now()));
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
}

/// One organization's cost, showback and Blocked figures for the metrics, from what this
/// reconcile read and decided.
fn figures(org: &str, desired: &Desired, report: &Report, now: Instant) -> metrics::Figures {
    let mut f = metrics::Figures::default();
    if let Some(o) = report.observed.organizations.get(org) {
        let catalog = &report.observed.catalog;
        for p in crate::report::products(o, catalog, now) {
            if let (Some(m), Some(free)) = (p.monthly_cost, p.free_monthly_cost) {
                f.costs.push((p.product, CURRENCY.into(), m, free));
            }
        }
        let mut teams: BTreeMap<&str, (i64, Option<f64>)> = BTreeMap::new();
        for h in &report.plan.held {
            let Some(d) = desired.assignments.get(h.assignment) else {
                continue;
            };
            let price = catalog.product(&h.product).and_then(|p| p.monthly_price);
            let t = teams
                .entry(d.meta.namespace.as_str())
                .or_insert((0, Some(0.0)));
            t.0 += h.users as i64;
            t.1 = t.1.zip(price).map(|(sum, p)| sum + p * h.users as f64);
        }
        f.namespaces = teams
            .into_iter()
            .map(|(ns, (seats, cost))| {
                let cost = cost.map(|c| (CURRENCY.to_string(), (c * 100.0).round() / 100.0));
                (ns.to_string(), seats, cost)
            })
            .collect();
    }
    let mut blocked: BTreeMap<(&str, String), i64> = BTreeMap::new();
    let mut oldest: Option<Instant> = None;
    let conditions = desired
        .subscriptions
        .iter()
        .map(|d| ("Subscription", &d.status.conditions))
        .chain(
            desired
                .assignments
                .iter()
                .map(|d| ("LicenseAssignment", &d.status.conditions)),
        )
        .chain(
            desired
                .add_ons
                .iter()
                .map(|d| ("AddOn", &d.status.conditions)),
        );
    for (kind, c) in conditions {
        if let Some(b) = c.get("Blocked").filter(|b| b.status == "True") {
            *blocked.entry((kind, b.reason.clone())).or_default() += 1;
            oldest = Some(oldest.map_or(b.last_transition_time, |o| o.min(b.last_transition_time)));
        }
    }
    f.blocked = blocked
        .into_iter()
        .map(|((k, r), n)| (k.to_string(), r, n))
        .collect();
    f.oldest_blocked_since = oldest.map(|t| t.as_millisecond() as f64 / 1000.0);
    f
}

/// Per product: seats purchased over all the organization's declared subscriptions and
/// add-ons of it, and the pool's assigned and available licences (the same for each of them).
fn pool_gauges(desired: &Desired) -> BTreeMap<String, SeatCounts> {
    let subs = desired
        .subscriptions
        .iter()
        .filter_map(|d| Some((&d.spec.product, d.status.seats.as_ref()?)));
    let add_ons = desired
        .add_ons
        .iter()
        .filter_map(|d| Some((&d.spec.product, d.status.quantity.as_ref()?)));
    let mut out: BTreeMap<String, SeatCounts> = BTreeMap::new();
    for (product, seats) in subs.chain(add_ons) {
        let g = out.entry(product.clone()).or_default();
        g.purchased += seats.purchased;
        g.assigned = seats.assigned;
        g.available = seats.available;
    }
    out
}

impl<B: Backend> watches::Watched for Ctx<B> {
    fn client(&self) -> &kube::Client {
        &self.client
    }
    fn api(&self) -> &Arc<super::apihealth::ApiHealth> {
        &self.api
    }
    fn secret_namespaces(&self) -> &watches::SecretNamespaces {
        &self.cfg.secret_namespaces
    }
    fn subscriptions(&self) -> &Store<Subscription> {
        &self.subscriptions
    }
    fn assignments(&self) -> &Store<LicenseAssignment> {
        &self.assignments
    }
    fn add_ons(&self) -> &Store<AddOn> {
        &self.add_ons
    }
    fn organizations(&self) -> &Store<Organization> {
        &self.organizations
    }
    fn force(&self, organization: &str) {
        Ctx::force(self, organization)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SubscriptionStatus;
    use crate::planner::{Declared, Meta};
    use serde_json::json;

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
