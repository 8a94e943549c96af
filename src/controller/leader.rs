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

/// Runs until `stop` fires, publishing whether this process leads. On stop it gives the Lease
/// up (so a successor need not wait) and reports `false`.
pub async fn run(
    client: kube::Client,
    election: Election,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    loop {
        let now = jiff::Timestamp::now();
        let lead = match try_acquire(&api, &election, now).await {
            Ok(lead) => lead,
            Err(e) => {
                tracing::warn!(error = %e, "leader election: cannot reach the Lease");
                // Without a renewal we must assume another replica may take over.
                false
            }
        };
        if *leading.borrow() != lead {
            tracing::info!(identity = %election.identity, leading = lead, "leadership changed");
        }
        leading.send_replace(lead);
        tokio::select! {
            _ = tokio::time::sleep(election.renew) => {}
            _ = stop.changed() => break,
        }
    }
    if *leading.borrow() {
        leading.send_replace(false);
        let _ = release(&api, &election).await;
    }
}

async fn try_acquire(
    api: &Api<Lease>,
    e: &Election,
    now: jiff::Timestamp,
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

async fn release(api: &Api<Lease>, e: &Election) -> Result<(), kube::Error> {
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
