//! The rules as a user sees them, in-process: the core's planner and executor against the
//! embedded simulator (no process, no file, a fixed clock). The binary's suite
//! (`tests/suites/rules.rs` at the root) keeps the command line's contract and one test per
//! rule through it; these cover what it left to the binary alone.

use seatkeeper_core::clock::FixedClock;
use seatkeeper_core::domain::Instant;
use seatkeeper_core::executor::{DEFAULT_MAX_PASSES, NoLedger, Report, converge};
use seatkeeper_core::planner::{Declared, Desired, Flags, Meta, Options};
use seatkeeper_embedded::embedded::{Embedded, TenantFile};
use serde::de::DeserializeOwned;
use std::sync::Arc;

const NOW: &str = "2026-11-21T09:00:00Z";

fn now() -> Instant {
    NOW.parse().unwrap()
}

/// A tenant, what is declared against it, and the clock.
struct World {
    backend: Embedded,
    desired: Desired,
    clock: Arc<FixedClock>,
}

fn world(tenant: &str) -> World {
    let clock = Arc::new(FixedClock::new(now()));
    let tenant = TenantFile::parse(tenant, "tenant.yaml").unwrap();
    World {
        backend: Embedded::new(tenant, None, clock.clone()),
        desired: Desired::default(),
        clock,
    }
}

/// `n` users (u0…) in NL holding `licences` (a YAML list), and `subscriptions` (YAML lines).
fn tenant(n: usize, licences: &str, subscriptions: &str) -> String {
    let mut y = "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n"
        .to_string();
    for i in 0..n {
        y += &format!("  - {{upn: u{i}@contoso.com, usageLocation: NL, licenses: {licences}}}\n");
    }
    y + "  subscriptions:\n" + subscriptions
}

fn users(range: std::ops::Range<usize>) -> String {
    let names: Vec<String> = range.map(|i| format!("u{i}@contoso.com")).collect();
    format!("[{}]", names.join(", "))
}

fn declared<S: DeserializeOwned, St: Default>(
    name: &str,
    spec: &str,
    flags: Flags,
) -> Declared<S, St> {
    Declared {
        meta: Meta {
            namespace: "team-a".into(),
            name: name.into(),
            created_at: now(),
            uid: format!("uid-{name}"),
            flags,
            ..Default::default()
        },
        spec: serde_saphyr::from_str(&format!("{{organization: contoso.com, {spec}}}"))
            .unwrap_or_else(|e| panic!("{name}: {e}")),
        status: St::default(),
    }
}

impl World {
    fn subscription(&mut self, name: &str, spec: &str, flags: Flags) -> &mut Self {
        self.desired.subscriptions.retain(|d| d.meta.name != name);
        self.desired.subscriptions.push(declared(name, spec, flags));
        self
    }

    /// Declares (or declares anew, keeping what it owns) a LicenseAssignment.
    fn assignment(&mut self, name: &str, spec: &str, flags: Flags) -> &mut Self {
        let mut d = declared(name, spec, flags);
        if let Some(old) = self
            .desired
            .assignments
            .iter()
            .find(|d| d.meta.name == name)
        {
            d.status = old.status.clone();
        }
        self.desired.assignments.retain(|d| d.meta.name != name);
        self.desired.assignments.push(d);
        self
    }

    fn add_on(&mut self, name: &str, spec: &str, flags: Flags) -> &mut Self {
        let mut d = declared(name, spec, flags);
        if let Some(old) = self.desired.add_ons.iter().find(|d| d.meta.name == name) {
            d.status = old.status.clone();
        }
        self.desired.add_ons.retain(|d| d.meta.name != name);
        self.desired.add_ons.push(d);
        self
    }

    fn converge(&mut self) -> Report {
        let options = Options::default();
        futures::executor::block_on(converge(
            &self.backend,
            &mut NoLedger,
            &mut self.desired,
            &*self.clock,
            &options,
            DEFAULT_MAX_PASSES,
        ))
        .expect("the simulator answers")
    }

    /// Products held per user, in the simulator.
    fn holders(&self, product: &str) -> usize {
        self.backend.tenant().organizations[0]
            .users
            .iter()
            .filter(|u| u.licence(product).is_some())
            .count()
    }
}

#[test]
fn r19_removing_a_licence_records_when_its_data_is_deleted() {
    let mut w = world(&tenant(
        2,
        "[]",
        "  - {id: sub-1, product: SPB, seats: 2}\n",
    ));
    let spb = "licenses: [{product: SPB}]";
    w.assignment(
        "a",
        &format!("users: {}, {spb}", users(0..2)),
        Flags::default(),
    );
    assert!(w.converge().converged);
    assert_eq!(w.holders("SPB"), 2);
    // u1 leaves; losing the mailbox is acknowledged (R28).
    let ack = Flags {
        acknowledge_downgrade: true,
        ..Flags::default()
    };
    w.assignment("a", &format!("users: {}, {spb}", users(0..1)), ack);
    w.converge();
    assert_eq!(w.holders("SPB"), 1);
    let removal = &w.desired.assignments[0].status.removals[0];
    assert_eq!(removal.user, "u1@contoso.com");
    assert_eq!(removal.removed_at, now());
    assert_eq!(
        removal.data_retained_until,
        "2026-12-21T09:00:00Z".parse::<Instant>().unwrap(),
        "30 days later"
    );
}

#[test]
fn removal_limit_blocks_bulk_removal_and_removes_nothing() {
    let mut w = world(&tenant(
        25,
        "[]",
        "  - {id: sub-1, product: SPB, seats: 25}\n",
    ));
    let spb = "licenses: [{product: SPB}]";
    w.assignment(
        "a",
        &format!("users: {}, {spb}", users(0..25)),
        Flags::default(),
    );
    w.converge();
    assert_eq!(w.holders("SPB"), 25);
    let ack = Flags {
        acknowledge_downgrade: true,
        ..Flags::default()
    };
    w.assignment("a", &format!("users: {}, {spb}", users(0..2)), ack);
    let r = w.converge();
    assert!(r.executed.is_empty(), "nothing done");
    let status = &w.desired.assignments[0].status;
    assert_eq!(
        status.blocked_reason.as_deref(),
        Some("RemovalLimitExceeded")
    );
    assert_eq!(
        w.holders("SPB"),
        25,
        "23 removals are over the limit of 20: none made"
    );
    // The annotation lifts the limit.
    let bulk = Flags {
        allow_bulk_removal: true,
        ..ack
    };
    w.assignment("a", &format!("users: {}, {spb}", users(0..2)), bulk);
    w.converge();
    assert_eq!(w.holders("SPB"), 2);
}

#[test]
fn paused_resources_are_observed_only() {
    let mut w = world(&tenant(
        1,
        "[]",
        "  - {id: sub-1, product: SPB, seats: 1}\n",
    ));
    let paused = Flags {
        paused: true,
        ..Flags::default()
    };
    w.subscription(
        "spb",
        "product: SPB, subscriptionId: sub-1, seats: 2",
        paused,
    );
    let r = w.converge();
    assert_eq!(
        w.backend.tenant().organizations[0].subscriptions[0].seats,
        1
    );
    assert!(
        !w.desired.subscriptions[0]
            .status
            .conditions
            .is_true("Ready")
    );
    assert!(r.executed.is_empty(), "nothing done");
}

#[test]
fn r23_traditional_add_on_removal_requires_support() {
    let mut w = world(&tenant(
        1,
        "[]",
        "  - {id: sub-1, product: EXCHANGESTANDARD, seats: 1}\n",
    ));
    w.subscription(
        "base",
        "product: EXCHANGESTANDARD, subscriptionId: sub-1, seats: 1",
        Flags::default(),
    );
    let arch = "product: EXCHANGEARCHIVE_ADDON, type: Traditional, subscriptionRef: {name: base}, deletionPolicy: Cancel";
    w.add_on("arch", &format!("{arch}, quantity: 2"), Flags::default());
    assert!(w.converge().converged);
    w.add_on("arch", &format!("{arch}, quantity: 4"), Flags::default());
    w.converge();
    let quantity =
        |w: &World| w.backend.tenant().organizations[0].subscriptions[0].add_ons[0].quantity;
    assert_eq!(quantity(&w), 4, "its quantity can still change");
    w.desired.add_ons[0].meta.deleting = true;
    let r = w.converge();
    assert_eq!(
        w.desired.add_ons[0].status.blocked_reason.as_deref(),
        Some("RemovalRequiresSupport")
    );
    assert_eq!(quantity(&w), 4, "still there");
    assert!(r.plan.deleted.is_empty(), "the resource waits");
}

#[test]
fn r24_standalone_add_on_is_a_subscription_of_its_own() {
    let mut w = world(&tenant(
        1,
        "[]",
        "  - {id: sub-1, product: O365_BUSINESS_PREMIUM, seats: 1}\n",
    ));
    w.add_on(
        "atp",
        "product: ATP_ENTERPRISE, type: Standalone, quantity: 2",
        Flags::default(),
    );
    assert!(w.converge().converged);
    let bought = w.desired.add_ons[0]
        .status
        .add_on_id
        .clone()
        .expect("bought");
    let subs = w.backend.tenant().organizations[0].subscriptions.clone();
    let own: Vec<_> = subs
        .iter()
        .filter(|s| s.product == "ATP_ENTERPRISE")
        .collect();
    assert_eq!(own.len(), 1, "a subscription of its own");
    assert_eq!(own[0].id, bought);
    assert_eq!(own[0].seats, 2);
    w.converge();
    let again = w.backend.tenant().organizations[0].subscriptions.len();
    assert_eq!(again, subs.len(), "bought once");
}

#[test]
fn autoscale_a_standalone_add_on_follows_demand_like_a_subscription() {
    let mut w = world(&tenant(
        3,
        "[{product: O365_BUSINESS_PREMIUM}]",
        "  - {id: sub-1, product: O365_BUSINESS_PREMIUM, seats: 3}\n",
    ));
    w.add_on(
        "atp",
        "product: ATP_ENTERPRISE, type: Standalone, quantity: 1, autoscale: {maxSeats: 10, headroom: 1}",
        Flags::default(),
    );
    w.assignment(
        "defender",
        &format!(
            "users: {}, licenses: [{{product: ATP_ENTERPRISE}}]",
            users(0..3)
        ),
        Flags::default(),
    );
    assert!(w.converge().converged);
    assert_eq!(w.desired.assignments[0].status.assigned, 3);
    let status = &w.desired.add_ons[0].status;
    assert_eq!(
        status.autoscale.as_ref().map(|a| a.target),
        Some(4),
        "3 users + 1 headroom"
    );
    assert_eq!(status.quantity.as_ref().map(|q| q.purchased), Some(4));
    assert_eq!(w.holders("ATP_ENTERPRISE"), 3);
}
