//! The executor against the tenant simulator, with faults injected between them: throttling
//! (Graph 429 + Retry-After), a crash right after a licence call, and seat changes the
//! service accepts now and finishes later (Partner Center 202).

use seatkeeper::api::{
    AssignmentIntent, LicenseAssignmentStatus, SubscriptionIntent, SubscriptionStatus,
};
use seatkeeper::backend::embedded::{Embedded, TenantFile};
use seatkeeper::backend::hooked::{Hook, Hooked};
use seatkeeper::backend::{Backend, BackendError, Result};
use seatkeeper::clock::{Clock, FixedClock};
use seatkeeper::domain::{Instant, Refusal};
use seatkeeper::executor::{NoLedger, converge};
use seatkeeper::planner::{Declared, Desired, Meta, Options};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const NOW: &str = "2026-11-21T09:00:00Z";

fn now() -> Instant {
    NOW.parse().unwrap()
}

fn meta(name: &str, age: i64) -> Meta {
    Meta {
        namespace: "default".into(),
        name: name.into(),
        created_at: now() - jiff::SignedDuration::from_secs(age),
        generation: Some(1),
        uid: format!("uid-{name}"),
        ..Default::default()
    }
}

fn subscription(
    name: &str,
    id: &str,
    product: &str,
    seats: i32,
) -> Declared<SubscriptionIntent, SubscriptionStatus> {
    Declared {
        meta: meta(name, 100),
        spec: serde_json::from_value(serde_json::json!({
            "organization": "contoso.com", "product": product, "subscriptionId": id, "seats": seats
        }))
        .unwrap(),
        status: Default::default(),
    }
}

fn assignment(
    name: &str,
    users: &[String],
    product: &str,
) -> Declared<AssignmentIntent, LicenseAssignmentStatus> {
    Declared {
        meta: meta(name, 50),
        spec: serde_json::from_value(serde_json::json!({
            "organization": "contoso.com", "users": users, "licenses": [{"product": product}]
        }))
        .unwrap(),
        status: Default::default(),
    }
}

fn upns(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}@contoso.com")).collect()
}

fn tenant(n_users: usize, seats: u32, org_extra: &str) -> TenantFile {
    let users: String = upns(n_users)
        .iter()
        .map(|u| format!("  - {{upn: {u}, usageLocation: NL}}\n"))
        .collect();
    TenantFile::parse(
        &format!(
            "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n{org_extra}  users:\n{users}  subscriptions:\n  - {{id: sub-e3, product: ENTERPRISEPACK, seats: {seats}}}\n"
        ),
        "tenant.yaml",
    )
    .unwrap()
}

/// Faults between the executor and the simulator: throttles the next licence calls, or loses
/// the reply (fails after the service made the change) of one of them.
#[derive(Default)]
struct Faults {
    throttle_next: AtomicU32,
    crash_on_assign_call: Option<u64>,
    assign_calls: AtomicU64,
    /// This seat change (1-based) fails before it reaches the service.
    fail_seat_change: Option<u64>,
    seat_changes: AtomicU64,
}

impl Hook for Faults {
    async fn before(&self, operation: &'static str) -> Result<()> {
        let throttled = operation == "assignLicenses"
            && self
                .throttle_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if throttled {
            return Err(BackendError::Throttled {
                retry_after_seconds: 30,
            });
        }
        if operation == "setSeats" {
            let n = self.seat_changes.fetch_add(1, Ordering::SeqCst) + 1;
            if Some(n) == self.fail_seat_change {
                return Err(BackendError::Unavailable("connection refused".into()));
            }
        }
        Ok(())
    }
    async fn after(&self, operation: &'static str) -> Result<()> {
        if operation != "assignLicenses" {
            return Ok(());
        }
        let call = self.assign_calls.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(call) == self.crash_on_assign_call {
            return Err(BackendError::Unavailable("connection reset".into()));
        }
        Ok(())
    }
}

type Faulty = Hooked<Embedded, Faults>;

fn faulty(inner: Embedded) -> Faulty {
    Hooked {
        inner,
        hook: Faults::default(),
    }
}

async fn run<B: Backend>(
    backend: &B,
    desired: &mut Desired,
    clock: &FixedClock,
) -> Result<seatkeeper::executor::Report> {
    converge(
        backend,
        &mut NoLedger,
        desired,
        clock,
        &Options::default(),
        8,
    )
    .await
}

fn held(b: &Embedded, product: &str) -> usize {
    b.tenant().organizations[0]
        .users
        .iter()
        .filter(|u| u.licence(product).is_some())
        .count()
}

#[tokio::test]
async fn r12_throttled_licence_calls_wait_retry_after_and_finish() {
    let clock = Arc::new(FixedClock::new(now()));
    let backend = faulty(Embedded::new(tenant(30, 30, ""), None, clock.clone()));
    backend.hook.throttle_next.store(3, Ordering::SeqCst);
    let mut desired = Desired {
        assignments: vec![assignment("staff", &upns(30), "ENTERPRISEPACK")],
        ..Default::default()
    };
    let report = run(&backend, &mut desired, &clock).await.unwrap();
    assert!(report.converged);
    assert_eq!(held(&backend.inner, "ENTERPRISEPACK"), 30);
    // Three waits of Retry-After (30 s) on the injected clock, and no call made twice.
    assert_eq!(clock.now(), now() + jiff::SignedDuration::from_secs(90));
    assert_eq!(backend.hook.assign_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn r12_throttled_for_too_long_fails_the_run_without_partial_guesswork() {
    let clock = Arc::new(FixedClock::new(now()));
    let backend = faulty(Embedded::new(tenant(5, 5, ""), None, clock.clone()));
    backend.hook.throttle_next.store(100, Ordering::SeqCst);
    let mut desired = Desired {
        assignments: vec![assignment("staff", &upns(5), "ENTERPRISEPACK")],
        ..Default::default()
    };
    let err = run(&backend, &mut desired, &clock).await.unwrap_err();
    assert!(matches!(err, BackendError::Throttled { .. }), "{err:?}");
    assert_eq!(held(&backend.inner, "ENTERPRISEPACK"), 0);
}

#[tokio::test]
async fn r19_a_lost_reply_keeps_the_licences_claimed_so_a_deletion_finds_them() {
    let clock = Arc::new(FixedClock::new(now()));
    let mut faulty = faulty(Embedded::new(tenant(5, 5, ""), None, clock.clone()));
    faulty.hook.crash_on_assign_call = Some(1);
    let mut desired = Desired {
        assignments: vec![assignment("staff", &upns(5), "ENTERPRISEPACK")],
        ..Default::default()
    };
    // The service assigned, then the connection dropped: the run fails, but the licences were
    // claimed before the call (as a purchase's key is recorded before the purchase).
    let err = run(&faulty, &mut desired, &clock).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)));
    assert_eq!(held(&faulty.inner, "ENTERPRISEPACK"), 5);
    assert_eq!(desired.assignments[0].status.owned.len(), 5);

    // The retry finds the licences in place: nothing to do, nothing assigned twice.
    faulty.hook.crash_on_assign_call = None;
    let report = run(&faulty, &mut desired, &clock).await.unwrap();
    assert!(report.converged);
    assert_eq!(report.backend_writes, 0);
    assert_eq!(faulty.hook.assign_calls.load(Ordering::SeqCst), 1);

    // Deleting with Unassign (the users' mailboxes acknowledged, R28) finds every licence.
    desired.assignments[0].meta.deleting = true;
    desired.assignments[0].meta.flags.acknowledge_downgrade = true;
    run(&faulty, &mut desired, &clock).await.unwrap();
    assert_eq!(held(&faulty.inner, "ENTERPRISEPACK"), 0);
}

/// Another admin takes seats between seatkeeper's read and its licence call: a hook on the
/// backend it wraps, which it shares.
struct SeatsTakenMeanwhile {
    tenant: Arc<Embedded>,
    taken: std::sync::atomic::AtomicBool,
}

impl Hook for SeatsTakenMeanwhile {
    async fn before(&self, operation: &'static str) -> Result<()> {
        if operation == "assignLicenses" && !self.taken.swap(true, Ordering::SeqCst) {
            // Two seats go to users outside seatkeeper's declarations.
            let other = seatkeeper::domain::UserChange {
                user: "u4@contoso.com".into(),
                add: vec![seatkeeper::domain::Licence::new("ENTERPRISEPACK", &[])],
                remove: vec![],
                plans_only: vec![],
            };
            let mut also = other.clone();
            also.user = "u3@contoso.com".into();
            self.tenant
                .assign_licences("contoso.com", &[other, also])
                .await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn r16_a_seat_taken_between_read_and_write_refuses_that_user_and_claims_nothing_for_them() {
    let clock = Arc::new(FixedClock::new(now()));
    let tenant = Arc::new(Embedded::new(tenant(5, 3, ""), None, clock.clone()));
    let backend = Hooked {
        inner: tenant.clone(),
        hook: SeatsTakenMeanwhile {
            tenant,
            taken: Default::default(),
        },
    };
    let mut desired = Desired {
        assignments: vec![assignment("staff", &upns(3), "ENTERPRISEPACK")],
        ..Default::default()
    };
    let report = run(&backend, &mut desired, &clock).await.unwrap();
    let refused: Vec<_> = report
        .executed
        .iter()
        .filter(|e| e.refused.is_some())
        .collect();
    assert!(
        !refused.is_empty(),
        "the service refused: {:?}",
        report.executed
    );
    let owned: Vec<&str> = desired.assignments[0]
        .status
        .owned
        .iter()
        .map(|o| o.user.as_str())
        .collect();
    let holders: Vec<String> = backend.inner.tenant().organizations[0]
        .users
        .iter()
        .filter(|u| u.licence("ENTERPRISEPACK").is_some())
        .map(|u| u.upn.clone())
        .collect();
    // Exactly the declared users that got a licence are claimed; u3 and u4 (assigned by
    // someone else) and the refused ones are not.
    for u in &owned {
        assert!(
            holders.iter().any(|h| h == u),
            "{u} claimed without a licence"
        );
    }
    assert!(!owned.contains(&"u3@contoso.com") && !owned.contains(&"u4@contoso.com"));
    assert_eq!(owned.len() + 2, holders.len(), "{owned:?} {holders:?}");
}

#[tokio::test]
async fn r02_accepted_seat_change_is_not_repeated_and_its_seats_wait_until_finished() {
    let clock = Arc::new(FixedClock::new(now()));
    let backend = Embedded::new(
        tenant(15, 10, "  seatChangeDelayMinutes: 60\n"),
        None,
        clock.clone(),
    );
    let mut desired = Desired {
        subscriptions: vec![subscription("e3", "sub-e3", "ENTERPRISEPACK", 15)],
        assignments: vec![assignment("staff", &upns(15), "ENTERPRISEPACK")],
        ..Default::default()
    };
    let report = run(&backend, &mut desired, &clock).await.unwrap();
    // 10 users fit now; the other 5 wait for the accepted change.
    assert_eq!(held(&backend, "ENTERPRISEPACK"), 10);
    let sub = &backend.tenant().organizations[0].subscriptions[0];
    assert_eq!(sub.seats, 10);
    assert_eq!(sub.pending_seat_change.as_ref().unwrap().seats, 15);
    let set_seats = report
        .executed
        .iter()
        .filter(|e| matches!(e.action.op, seatkeeper::planner::Op::SetSeats { .. }))
        .count();
    assert_eq!(set_seats, 1, "an accepted change is not asked for again");
    let cond = desired.subscriptions[0]
        .status
        .conditions
        .get("Ready")
        .unwrap();
    assert_eq!(cond.status, "False");
    assert!(
        desired.subscriptions[0]
            .status
            .conditions
            .get("Ready")
            .unwrap()
            .message
            .contains("accepted"),
        "{:?}",
        desired.subscriptions[0].status.conditions
    );
    assert_eq!(
        report.plan.requeue_at,
        Some(now() + jiff::SignedDuration::from_secs(3600))
    );

    // Half an hour on: still accepted, nothing new is asked of the service.
    let writes = backend.writes();
    clock.set(now() + jiff::SignedDuration::from_secs(1800));
    run(&backend, &mut desired, &clock).await.unwrap();
    assert_eq!(backend.writes(), writes);

    // Once finished, the waiting users get their licences.
    clock.set(now() + jiff::SignedDuration::from_secs(3600));
    let report = run(&backend, &mut desired, &clock).await.unwrap();
    assert!(report.converged);
    assert_eq!(held(&backend, "ENTERPRISEPACK"), 15);
    assert_eq!(backend.tenant().organizations[0].subscriptions[0].seats, 15);
}

#[test]
fn large_tenant_files_load_past_the_yaml_parsers_default_node_budget() {
    // 60k users are ~300k YAML nodes, over the parser's default budget of 250k.
    let t = tenant(60_000, 10, "");
    assert_eq!(t.organizations[0].users.len(), 60_000);
}

#[tokio::test]
async fn r07_the_simulator_refuses_to_cancel_a_subscription_whose_licences_are_in_use() {
    let clock = Arc::new(FixedClock::new(now()));
    let backend = Embedded::new(tenant(3, 5, ""), None, clock.clone());
    let mut desired = Desired {
        assignments: vec![assignment("staff", &upns(3), "ENTERPRISEPACK")],
        ..Default::default()
    };
    run(&backend, &mut desired, &clock).await.unwrap();
    let err = backend.cancel("contoso.com", "sub-e3").await.unwrap_err();
    assert_eq!(
        err,
        BackendError::Refused(Refusal::SeatsInUse {
            assigned: 3,
            requested: 0
        })
    );
    assert_eq!(
        backend.tenant().organizations[0].subscriptions[0].status,
        seatkeeper::domain::SubscriptionState::Active
    );
}

/// A ledger that keeps what it is told as it is told: the controller publishes an Event for
/// each of these.
#[derive(Default)]
struct Told(Vec<String>);

impl seatkeeper::executor::Ledger for Told {
    async fn save(&mut self, _: &Desired, _: seatkeeper::executor::SavePoint) -> Result<()> {
        Ok(())
    }
    async fn confirmed(&mut self, done: &[seatkeeper::executor::Executed]) {
        for e in done {
            let users = match &e.action.op {
                seatkeeper::planner::Op::AssignLicenses { users } => format!(" {}", users.len()),
                _ => String::new(),
            };
            self.0.push(format!("{}{users}", e.action.name));
        }
    }
}

#[tokio::test]
async fn a_pass_that_fails_half_way_still_tells_every_change_the_service_confirmed() {
    // Seat changes: the second fails; the first was made and is told, the third never ran.
    let clock = Arc::new(FixedClock::new(now()));
    let file = TenantFile::parse(
        "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  subscriptions:\n  - {id: s1, product: ENTERPRISEPACK, seats: 5}\n  - {id: s2, product: SPB, seats: 5}\n  - {id: s3, product: O365_BUSINESS_PREMIUM, seats: 5}\n",
        "tenant.yaml",
    )
    .unwrap();
    let mut backend = faulty(Embedded::new(file, None, clock.clone()));
    backend.hook.fail_seat_change = Some(2);
    let mut desired = Desired {
        subscriptions: vec![
            subscription("e3", "s1", "ENTERPRISEPACK", 6),
            subscription("bp", "s2", "SPB", 6),
            subscription("prem", "s3", "O365_BUSINESS_PREMIUM", 6),
        ],
        ..Default::default()
    };
    let mut told = Told::default();
    let options = Options::default();
    let err = converge(&backend, &mut told, &mut desired, &*clock, &options, 8).await;
    assert!(err.is_err());
    assert_eq!(
        told.0,
        ["e3"],
        "told as it was confirmed, before the failure"
    );

    // Licences: three batches (20, 20, 5); the second's reply is lost. The two that answered
    // are told (25 users), with the failure.
    let mut backend = faulty(Embedded::new(tenant(45, 45, ""), None, clock.clone()));
    backend.hook.crash_on_assign_call = Some(2);
    let mut desired = Desired {
        assignments: vec![assignment("staff", &upns(45), "ENTERPRISEPACK")],
        ..Default::default()
    };
    let mut told = Told::default();
    let one_at_a_time = Options {
        concurrency: 1,
        ..Options::default()
    };
    let err = converge(
        &backend,
        &mut told,
        &mut desired,
        &*clock,
        &one_at_a_time,
        8,
    )
    .await;
    assert!(err.is_err());
    assert_eq!(told.0, ["staff 25"]);
    backend.hook.crash_on_assign_call = None;
}
