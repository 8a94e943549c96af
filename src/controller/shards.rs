//! Sharding (`run --sharding`): the organizations reached through their own Microsoft tenant
//! are spread over the live replicas, with Kubernetes objects only.
//!
//! - Each replica holds a Lease of its own, `seatkeeper-shard-<identity>`, renewed every
//!   `renew`; a replica whose Lease has not been renewed for `duration` is gone.
//! - Each organization is assigned to a live shard by rendezvous hashing with bounded load
//!   ([`assign`]): every replica computes the same assignment from the same Leases and
//!   Organizations.
//! - Who reconciles an organization is recorded in a Lease of its own,
//!   `seatkeeper-org-<domain>`, whose holder is the owning replica. A replica claims an
//!   organization only when that Lease is free, or its holder's shard Lease has expired; every
//!   claim is a write guarded by the resourceVersion just read, so two replicas never both win.
//! - An owner whose organization now belongs to another live shard drains it: it lets the
//!   pass in flight finish, starts no other, then frees the organization's Lease; only then
//!   does the new owner claim it.
//! - A replica acts only while its own Lease is current by its own clock (renewed less than
//!   `duration` minus a quarter of it ago): others take its organizations only after the Lease
//!   has expired by theirs. A pass checks this before each change it makes
//!   ([`crate::clock::Interrupt::fenced`]), so a replica cut off from the API server stops
//!   writing before anyone takes over. Losing the Lease drops every organization; regaining one
//!   takes a new claim, never the old record.
//!
//! Organizations on the default (embedded) backend are not sharded: they share one tenant
//! file, and the replica holding the leader Lease reconciles them.

use super::Task;
use super::context::Ctx;
use super::leader::{self, Election};
use crate::api::Organization;
use crate::backend::Backend;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::watch;

/// The prefix of each replica's own Lease.
pub const SHARD_LEASE: &str = "seatkeeper-shard-";
/// The prefix of each sharded organization's Lease.
pub const ORGANIZATION_LEASE: &str = "seatkeeper-org-";
/// The label every Lease seatkeeper's sharding writes carries (`shard` or `organization`).
pub const LEASE_LABEL: &str = "seatkeeper.dev/lease";
/// The annotation naming the organization of an organization's Lease.
pub const ORGANIZATION_ANNOTATION: &str = "seatkeeper.dev/organization";
/// How far above an even share a shard may be loaded.
pub const LOAD_FACTOR: f64 = 1.25;

/// What this replica owns, as the reconciles and the fence read it.
pub struct Shards {
    pub identity: String,
    /// Until when this replica may act: its last renewal's start plus three quarters of the
    /// Lease duration.
    valid_until: Mutex<Option<Instant>>,
    first_renewal: Mutex<Option<Instant>>,
    owned: Mutex<BTreeSet<String>>,
    draining: Mutex<BTreeSet<String>>,
    live: std::sync::atomic::AtomicUsize,
}

impl Shards {
    pub fn new(identity: &str) -> Shards {
        Shards {
            identity: identity.to_string(),
            valid_until: Mutex::new(None),
            first_renewal: Mutex::new(None),
            owned: Mutex::default(),
            draining: Mutex::default(),
            live: std::sync::atomic::AtomicUsize::new(1),
        }
    }

    /// Whether this replica's shard Lease is current by its own clock.
    pub fn valid(&self) -> bool {
        self.valid_until
            .lock()
            .expect("shard lock")
            .is_some_and(|t| Instant::now() < t)
    }

    /// Whether a new pass of `org` may start here: owned, current, not being handed over.
    pub fn owns(&self, org: &str) -> bool {
        let org = org.to_lowercase();
        self.holds(&org) && !self.draining.lock().expect("shard lock").contains(&org)
    }

    /// Whether a pass of `org` in flight may make its next change.
    pub fn holds(&self, org: &str) -> bool {
        self.valid()
            && self
                .owned
                .lock()
                .expect("shard lock")
                .contains(&org.to_lowercase())
    }

    /// Live shards as last seen (at least this one): the app-wide budget is shared by them.
    pub fn live(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::Relaxed).max(1)
    }

    pub fn owned(&self) -> BTreeSet<String> {
        self.owned.lock().expect("shard lock").clone()
    }
}

/// Passes in progress in this process, per organization, with the replica running each: a
/// probe for tests that run several replicas in one process. A second replica starting a pass
/// of an organization another is still in would be a sharding bug: it is counted and logged.
static PASSES: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
static OVERLAPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One pass of an organization by a replica, until dropped (a killed replica's task drops it).
pub struct Pass(String);

impl Pass {
    pub fn enter(org: &str, replica: &str) -> Pass {
        let org = org.to_lowercase();
        let mut passes = PASSES.lock().expect("passes lock");
        if let Some(other) = passes.get(&org).filter(|r| *r != replica) {
            OVERLAPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tracing::error!(organization = %org, replica, other = %other, "two replicas reconcile one organization at once");
        }
        passes.insert(org.clone(), replica.to_string());
        Pass(org)
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        PASSES.lock().expect("passes lock").remove(&self.0);
    }
}

/// How many times, in this process, a replica started a pass of an organization another
/// replica was still in (always 0 unless sharding is broken).
pub fn overlaps() -> u64 {
    OVERLAPS.load(std::sync::atomic::Ordering::SeqCst)
}

/// A stable 64-bit hash (FNV-1a): every replica, whatever its build, weighs alike.
fn weight(org: &str, shard: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in org.bytes().chain([0u8]).chain(shard.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly on short keys; a final avalanche (splitmix64's).
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Rendezvous hashing with bounded load: each organization (in name order) goes to the shard
/// that weighs it most and still has room; room is `LOAD_FACTOR` times an even share, so no
/// shard holds much more than its share, and a shard joining or leaving moves few others.
pub fn assign(orgs: &BTreeSet<String>, shards: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if shards.is_empty() {
        return out;
    }
    let capacity = ((orgs.len() as f64 / shards.len() as f64) * LOAD_FACTOR).ceil() as usize;
    let capacity = capacity.max(1);
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for org in orgs {
        let mut ranked: Vec<&String> = shards.iter().collect();
        ranked.sort_by_key(|s| std::cmp::Reverse(weight(org, s)));
        let chosen = ranked
            .iter()
            .find(|s| load.get(s.as_str()).copied().unwrap_or(0) < capacity)
            .unwrap_or(&ranked[0]);
        *load.entry(chosen.as_str()).or_default() += 1;
        out.insert(org.clone(), (*chosen).clone());
    }
    out
}

/// An organization's Lease name: `seatkeeper-org-` and the domain, as a DNS subdomain.
pub fn organization_lease(domain: &str) -> String {
    let clean: String = domain
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("{ORGANIZATION_LEASE}{clean}");
    if name.len() > 240 {
        name.truncate(224);
        name += &format!("-{:016x}", weight(domain, ""));
    }
    name.trim_end_matches(['.', '-']).to_string()
}

/// Whether a shard Lease is current by the wall clock `now`.
fn current(lease: &Lease, now: jiff::Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return false;
    }
    match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(t), Some(d)) => t.0 + jiff::SignedDuration::from_secs(d as i64) >= now,
        _ => false,
    }
}

/// The live shards among the cached Leases (identities), with this one when it is current.
fn live_shards(leases: &Store<Lease>, me: &Shards, now: jiff::Timestamp) -> BTreeSet<String> {
    let mut live: BTreeSet<String> = leases
        .state()
        .iter()
        .filter(|l| {
            l.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(SHARD_LEASE))
        })
        .filter(|l| current(l, now))
        .filter_map(|l| l.spec.as_ref()?.holder_identity.clone())
        .collect();
    if me.valid() {
        live.insert(me.identity.clone());
    } else {
        live.remove(&me.identity);
    }
    live
}

/// The organizations sharding spreads: those reached through their own Microsoft tenant.
pub fn sharded(o: &Organization) -> bool {
    o.spec.backend.microsoft.is_some()
}

/// Runs until `stop`, then, once `drained`, frees this replica's organizations and its Lease
/// so the others need not wait for them to expire.
pub async fn run<B: Backend + 'static>(
    ctx: Arc<Ctx<B>>,
    shards: Arc<Shards>,
    election: Election,
    trigger: futures::channel::mpsc::UnboundedSender<ObjectRef<Organization>>,
    mut stop: watch::Receiver<bool>,
    mut drained: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &election.namespace);
    let (leases, writer) = reflector::store();
    let watch = watcher(
        api.clone(),
        watcher::Config::default()
            .labels(LEASE_LABEL)
            .any_semantic(),
    )
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    let watching = Task(tokio::spawn({
        let health = ctx.api.clone();
        async move {
            let mut watch = std::pin::pin!(watch);
            while let Some(r) = futures::StreamExt::next(&mut watch).await {
                if let Err(e) = r {
                    health.watch_failed("watching the shard Leases", &e);
                }
            }
        }
    }));
    let own = Election {
        name: format!("{SHARD_LEASE}{}", election.identity),
        ..election.clone()
    };
    // Renewed on its own, never behind a long round of claims: a replica busy balancing must
    // not lose its Lease (and fence its own passes) for it.
    let renewing = Task(tokio::spawn(renew(
        ctx.api.clone(),
        api.clone(),
        own.clone(),
        shards.clone(),
    )));
    let mut listed = false;
    loop {
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        if !shards.valid() && !shards.owned().is_empty() {
            tracing::warn!(
                shard = %shards.identity,
                "the shard Lease could not be renewed in time: this replica lets go of its organizations"
            );
            let lost = std::mem::take(&mut *shards.owned.lock().expect("shard lock"));
            for org in lost {
                forget(&ctx, &shards, &org).await;
            }
        }
        if !listed {
            // Acting on an empty cache would take organizations that others hold.
            listed = tokio::time::timeout(election.renew, leases.wait_until_ready())
                .await
                .is_ok();
        }
        if listed && shards.valid() {
            // Replicas starting together see each other before claiming: one renewal period
            // after this one's first renewal.
            let settled = shards
                .first_renewal
                .lock()
                .expect("shard lock")
                .is_some_and(|t| t.elapsed() >= election.renew);
            balance(&ctx, &shards, &api, &leases, &trigger, settled).await;
        }
        let wait = election.renew.saturating_sub(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = stop.changed() => if r.is_err() { break; },
        }
    }
    // Stopping: the reconciles in flight finish their batch; then everything is freed.
    let _ = drained.wait_for(|d| *d).await;
    for org in shards.owned() {
        let _ = release(&api, &organization_lease(&org), &shards.identity, false).await;
        forget(&ctx, &shards, &org).await;
    }
    drop(renewing);
    let _ = leader::release(&api, &own).await;
    *shards.valid_until.lock().expect("shard lock") = None;
    drop(watching);
}

/// Keeps this replica's shard Lease, every `renew`, until aborted.
async fn renew(
    health: Arc<super::apihealth::ApiHealth>,
    api: Api<Lease>,
    own: Election,
    shards: Arc<Shards>,
) {
    let margin = own.duration / 4;
    loop {
        let started = Instant::now();
        match leader::try_acquire_labelled(&api, &own, jiff::Timestamp::now(), "shard").await {
            Ok(true) => {
                health.reached();
                *shards.valid_until.lock().expect("shard lock") =
                    Some(started + own.duration - margin);
                shards
                    .first_renewal
                    .lock()
                    .expect("shard lock")
                    .get_or_insert(started);
            }
            Ok(false) => {}
            Err(e) => health.failed("sharding: cannot renew the shard Lease", &e),
        }
        tokio::time::sleep(own.renew.saturating_sub(started.elapsed())).await;
    }
}

/// One round: claim what is ours and free, hand over what is no longer ours.
async fn balance<B: Backend + 'static>(
    ctx: &Arc<Ctx<B>>,
    shards: &Arc<Shards>,
    api: &Api<Lease>,
    leases: &Store<Lease>,
    trigger: &futures::channel::mpsc::UnboundedSender<ObjectRef<Organization>>,
    claiming: bool,
) {
    let now = jiff::Timestamp::now();
    let live = live_shards(leases, shards, now);
    shards
        .live
        .store(live.len(), std::sync::atomic::Ordering::Relaxed);
    ctx.metrics.shards_live.set(live.len() as i64);
    // Each replica paces to its share of the app's write budget.
    crate::backend::microsoft::fleet::set_replicas(live.len());
    let organizations: BTreeMap<String, Arc<Organization>> = ctx
        .organizations
        .state()
        .into_iter()
        .filter(|o| sharded(o))
        .map(|o| (o.spec.domain.to_lowercase(), o))
        .collect();
    let domains: BTreeSet<String> = organizations.keys().cloned().collect();
    let targets = assign(&domains, &live);
    let owned = shards.owned();
    for (org, target) in &targets {
        if !claiming || *target != shards.identity || owned.contains(org) || ctx.stopping() {
            continue;
        }
        match claim(api, &organization_lease(org), org, &shards.identity, &live).await {
            Ok(true) => {
                tracing::info!(organization = %org, shard = %shards.identity, "organization taken over by this shard");
                shards.owned.lock().expect("shard lock").insert(org.clone());
                ctx.metrics
                    .organization_shard
                    .get_or_create(&super::metrics::Owned {
                        organization: org.clone(),
                        shard: shards.identity.clone(),
                    })
                    .set(1);
                ctx.force(org);
                if let Some(o) = organizations.get(org) {
                    let _ = trigger.unbounded_send(ObjectRef::from_obj(&**o));
                }
            }
            Ok(false) => {}
            Err(e) => ctx.api.failed("sharding: cannot claim an organization", &e),
        }
    }
    for org in owned {
        let moving = match targets.get(&org) {
            // Gone from the cluster (or no longer sharded): freed, its Lease deleted.
            None => Some(true),
            Some(t) if *t != shards.identity && live.contains(t) => Some(false),
            Some(_) => None,
        };
        let Some(gone) = moving else { continue };
        if !shards
            .draining
            .lock()
            .expect("shard lock")
            .insert(org.clone())
        {
            continue; // already being handed over
        }
        let (ctx, shards, api) = (ctx.clone(), shards.clone(), api.clone());
        tokio::spawn(async move {
            // The pass in flight finishes; no other starts (`owns` is false while draining).
            let state = ctx.org_state(&org);
            let _pass = state.lock().await;
            match release(&api, &organization_lease(&org), &shards.identity, gone).await {
                Ok(()) => {
                    tracing::info!(organization = %org, shard = %shards.identity, "organization handed over: its pass finished");
                    ctx.metrics.shard_handovers.inc();
                    shards.owned.lock().expect("shard lock").remove(&org);
                    forget(&ctx, &shards, &org).await;
                }
                Err(e) => ctx
                    .api
                    .failed("sharding: cannot hand an organization over", &e),
            }
            shards.draining.lock().expect("shard lock").remove(&org);
        });
    }
    ctx.metrics
        .shard_organizations
        .get_or_create(&super::metrics::Shard {
            shard: shards.identity.clone(),
        })
        .set(shards.owned().len() as i64);
}

/// What this replica kept for an organization it no longer owns: its tenant (tokens, the
/// tenant read) and its metric series.
async fn forget<B: Backend>(ctx: &Ctx<B>, shards: &Shards, org: &str) {
    ctx.tenants.forget(org).await;
    ctx.metrics
        .organization_shard
        .remove(&super::metrics::Owned {
            organization: org.to_string(),
            shard: shards.identity.clone(),
        });
}

/// Claims an organization's Lease for `me` when it is free or its holder's shard is gone.
/// The write carries the resourceVersion just read: a concurrent claim makes it a 409.
async fn claim(
    api: &Api<Lease>,
    name: &str,
    org: &str,
    me: &str,
    live: &BTreeSet<String>,
) -> Result<bool, kube::Error> {
    let now = MicroTime(jiff::Timestamp::now());
    let Some(mut lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some([(LEASE_LABEL.to_string(), "organization".to_string())].into()),
                annotations: Some([(ORGANIZATION_ANNOTATION.to_string(), org.to_string())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(me.to_string()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    // A live holder other than this replica drains and frees it first; this one waits.
    if let Some(h) = &holder
        && h != me
        && live.contains(h)
    {
        return Ok(false);
    }
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(me.to_string()),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(
            spec.lease_transitions.unwrap_or(0) + i32::from(holder.as_deref() != Some(me)),
        ),
        ..spec
    });
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Frees an organization's Lease held by `me` (deletes it when the organization is gone).
async fn release(api: &Api<Lease>, name: &str, me: &str, delete: bool) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(());
    };
    if lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        != Some(me)
    {
        return Ok(());
    }
    if delete {
        let rv = lease.metadata.resource_version.clone();
        let dp = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: rv,
                uid: None,
            }),
            ..Default::default()
        };
        return match api.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        };
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
    }
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        names.into_iter().collect()
    }

    fn orgs(n: usize) -> BTreeSet<String> {
        set((0..n).map(|i| format!("customer{i}.onmicrosoft.com")))
    }

    fn replicas(names: &[&str]) -> BTreeSet<String> {
        set(names.iter().map(|s| s.to_string()))
    }

    #[test]
    fn fleet_organizations_spread_evenly_over_the_live_shards() {
        let a = assign(&orgs(1000), &replicas(&["r0", "r1", "r2"]));
        let mut load: BTreeMap<&str, usize> = BTreeMap::new();
        for s in a.values() {
            *load.entry(s).or_default() += 1;
        }
        assert_eq!(load.len(), 3);
        // Even is 333.3; bounded load allows 1.25 × that.
        assert!(load.values().all(|n| *n <= 417), "{load:?}");
        assert!(load.values().all(|n| *n >= 250), "{load:?}");
    }

    #[test]
    fn fleet_every_replica_computes_the_same_assignment() {
        let shards = replicas(&["r0", "r1", "r2"]);
        assert_eq!(assign(&orgs(200), &shards), assign(&orgs(200), &shards));
    }

    #[test]
    fn fleet_a_replica_leaving_moves_mostly_its_own_organizations() {
        let before = assign(&orgs(1000), &replicas(&["r0", "r1", "r2"]));
        let after = assign(&orgs(1000), &replicas(&["r0", "r1"]));
        let theirs = before.values().filter(|s| *s == "r2").count();
        let moved = before.iter().filter(|(o, s)| after[*o] != **s).count();
        assert!(after.values().all(|s| s != "r2"));
        // Its own must move; bounded load shuffles a few more, never most of the fleet.
        assert!(
            moved >= theirs && moved <= theirs * 2,
            "{moved} moved, {theirs} were r2's"
        );
    }

    #[test]
    fn fleet_a_replica_joining_takes_about_its_share() {
        let before = assign(&orgs(1000), &replicas(&["r0", "r1"]));
        let after = assign(&orgs(1000), &replicas(&["r0", "r1", "r2"]));
        let moved = before.iter().filter(|(o, s)| after[*o] != **s).count();
        let joined = after.values().filter(|s| *s == "r2").count();
        assert!(joined >= 250, "{joined}");
        assert!(moved <= joined * 2, "{moved} moved for {joined} taken");
    }

    #[test]
    fn fleet_organization_leases_have_valid_names() {
        assert_eq!(
            organization_lease("Contoso.com"),
            "seatkeeper-org-contoso.com"
        );
        let long = format!("{}.com", "a".repeat(300));
        let name = organization_lease(&long);
        assert!(name.len() <= 253, "{}", name.len());
        assert_ne!(
            name,
            organization_lease(&format!("{}.com", "a".repeat(301)))
        );
        assert_eq!(organization_lease("a_b.com"), "seatkeeper-org-a-b.com");
    }
}
