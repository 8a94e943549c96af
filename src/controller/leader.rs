//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder changes the backend or
//! writes status. The holder renews every `renew`; others take over once `duration` has passed
//! without a renewal. Every write is guarded by the Lease's resourceVersion, so two candidates
//! can never both win the same round.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub renew: Duration,
}

/// Runs until `stop` fires, publishing whether this process leads. A follower stops at once
/// (it never takes the Lease while stopping); the leader keeps leading, and renewing, until
/// `drained` (the work in flight finished its batch and saved it), then gives the Lease up (so
/// a successor need not wait) and reports `false`. With `state`, this process leads only while
/// it also holds that tenant file's lock (a CLI `apply` on the file keeps it from leading
/// until the apply is over).
pub async fn run(
    client: kube::Client,
    election: Election,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
    mut drained: watch::Receiver<bool>,
    state: Option<std::path::PathBuf>,
    // Shared with the controllers: an outage is told once, and once when it ends.
    health: std::sync::Arc<super::apihealth::ApiHealth>,
) {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    let mut file = FileLock::default();
    loop {
        let stopping = *stop.borrow();
        if (stopping && !*leading.borrow()) || *drained.borrow() {
            break;
        }
        let now = jiff::Timestamp::now();
        let lead = match try_acquire(&api, &election, now).await {
            Ok(lead) => {
                health.reached();
                lead
            }
            Err(e) => {
                health.failed("leader election: cannot reach the Lease", &e);
                // Without a renewal we must assume another replica may take over.
                false
            }
        };
        let lead = match &state {
            Some(path) => file.hold(path, lead),
            None => lead,
        };
        if *leading.borrow() != lead {
            tracing::info!(identity = %election.identity, leading = lead, "leadership changed");
        }
        leading.send_replace(lead);
        tokio::select! {
            _ = tokio::time::sleep(election.renew) => {}
            // A dropped sender counts as a stop.
            r = stop.changed(), if !stopping => {
                if r.is_err() {
                    break;
                }
            }
            _ = drained.changed() => {}
        }
    }
    if *leading.borrow() {
        leading.send_replace(false);
        let _ = release(&api, &election).await;
    }
    drop(file);
}

/// The tenant file's lock, held while leading.
#[derive(Default)]
struct FileLock {
    held: Option<crate::backend::lock::StateLock>,
    /// The holder last reported, so a long wait logs once.
    waiting_for: Option<String>,
}

impl FileLock {
    /// Whether this process may lead: it holds the Lease (`lease`) and the file.
    fn hold(&mut self, path: &std::path::Path, lease: bool) -> bool {
        if !lease {
            self.held = None;
            return false;
        }
        if self.held.is_some() {
            return true;
        }
        match crate::backend::lock::try_acquire(path, "seatkeeper run") {
            Ok(Some(l)) => {
                self.held = Some(l);
                self.waiting_for = None;
                true
            }
            Ok(None) => {
                let holder = crate::backend::lock::held_by(path).unwrap_or_default();
                if self.waiting_for.as_ref() != Some(&holder) {
                    tracing::warn!(
                        file = %path.display(),
                        holder = %holder,
                        "the tenant file is in use by another process: not leading until it is free"
                    );
                    self.waiting_for = Some(holder);
                }
                false
            }
            Err(e) => {
                tracing::warn!("{e}");
                false
            }
        }
    }
}

async fn try_acquire(
    api: &Api<Lease>,
    e: &Election,
    now: jiff::Timestamp,
) -> Result<bool, kube::Error> {
    acquire(api, e, now, None).await
}

/// [`try_acquire`] for a Lease created with the `seatkeeper.dev/lease` label (a shard's).
pub(super) async fn try_acquire_labelled(
    api: &Api<Lease>,
    e: &Election,
    now: jiff::Timestamp,
    label: &str,
) -> Result<bool, kube::Error> {
    acquire(api, e, now, Some(label)).await
}

async fn acquire(
    api: &Api<Lease>,
    e: &Election,
    now: jiff::Timestamp,
    label: Option<&str>,
) -> Result<bool, kube::Error> {
    let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(e.identity.clone()),
        lease_duration_seconds: Some(e.duration.as_secs() as i32),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(mut lease) = api.get_opt(&e.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(e.name.clone()),
                namespace: Some(e.namespace.clone()),
                labels: label
                    .map(|l| [(super::shards::LEASE_LABEL.to_string(), l.to_string())].into()),
                ..Default::default()
            },
            spec: Some(spec(0, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(err) => Err(err),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    let mine = current.holder_identity.as_deref() == Some(e.identity.as_str());
    let expired = match (&current.renew_time, current.lease_duration_seconds) {
        (Some(t), Some(d)) => t.0 + jiff::SignedDuration::from_secs(d as i64) < now,
        _ => true,
    };
    let vacant = current.holder_identity.as_deref().is_none_or(str::is_empty);
    if !mine && !expired && !vacant {
        return Ok(false);
    }
    let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
    lease.spec = Some(spec(
        transitions,
        if mine { current.acquire_time } else { None },
    ));
    // The resourceVersion read above guards the write: a concurrent winner makes this a 409.
    match api.replace(&e.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

pub(super) async fn release(api: &Api<Lease>, e: &Election) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&e.name).await? else {
        return Ok(());
    };
    if lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        != Some(e.identity.as_str())
    {
        return Ok(());
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = None;
    }
    api.replace(&e.name, &PostParams::default(), &lease).await?;
    Ok(())
}
