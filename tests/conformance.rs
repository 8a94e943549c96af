//! One rule suite for two backends: each scenario runs through the executor against the
//! embedded simulator, and against the Microsoft backend talking real HTTP to the emulator
//! (token endpoint, Graph, Partner Center) serving the same tenant; the outcomes a user sees
//! (statuses, Blocked reasons, the licences and seats in the tenant) must be the same. Where a
//! real service forces a difference, the scenario says so and why.

use seatkeeper::backend::Backend;
use seatkeeper::backend::embedded::{Embedded, TenantFile};
use seatkeeper::backend::microsoft::{Config, Endpoints, Microsoft, ids};
use seatkeeper::clock::FixedClock;
use seatkeeper::domain::Instant;
use seatkeeper::emulator::{Emulator, Faults, Options as EmulatorOptions};
use seatkeeper::executor::{DEFAULT_MAX_PASSES, NoLedger, Report, converge};
use seatkeeper::planner::{AssignmentIntent, Declared, Desired, Meta, Options, SubscriptionIntent};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const NOW: &str = "2026-11-21T09:00:00Z";

fn now() -> Instant {
    NOW.parse().unwrap()
}

/// What a user sees after a run.
#[derive(Debug, PartialEq)]
struct Seen {
    converged: bool,
    /// Per resource: (name, Ready, Blocked reason).
    resources: Vec<(String, bool, Option<String>)>,
    /// Per LicenseAssignment user: (user, state, reason).
    users: Vec<(String, String, Option<String>)>,
    /// Per user: products held, sorted.
    licences: Vec<(String, Vec<String>)>,
    /// Per subscription (by product): seats.
    seats: Vec<(String, u32)>,
}

fn seen(report: &Report, desired: &Desired, tenant: &TenantFile) -> Seen {
    let ready = |c: &seatkeeper::api::Conditions| c.is_true("Ready");
    let mut resources = vec![];
    for d in &desired.subscriptions {
        resources.push((
            d.meta.name.clone(),
            ready(&d.status.conditions),
            d.status.blocked_reason.clone(),
        ));
    }
    let mut users = vec![];
    for d in &desired.assignments {
        resources.push((
            d.meta.name.clone(),
            ready(&d.status.conditions),
            d.status.blocked_reason.clone(),
        ));
        for u in &d.status.users {
            users.push((u.user.clone(), format!("{:?}", u.state), u.reason.clone()));
        }
    }
    let org = &tenant.organizations[0];
    let licences = org
        .users
        .iter()
        .map(|u| {
            let mut p: Vec<String> = u.licenses.iter().map(|l| l.product.clone()).collect();
            p.sort();
            (u.upn.clone(), p)
        })
        .collect();
    let mut seats: Vec<(String, u32)> = org
        .subscriptions
        .iter()
        .map(|s| (s.product.clone(), s.seats))
        .collect();
    seats.sort();
    Seen {
        converged: report.converged,
        resources,
        users,
        licences,
        seats,
    }
}

fn meta(name: &str) -> Meta {
    Meta {
        namespace: "team-a".into(),
        name: name.into(),
        created_at: now(),
        uid: format!("uid-{name}"),
        ..Default::default()
    }
}

/// Declared resources; `id` maps a tenant-file subscription id to the backend's.
type Scenario = fn(&dyn Fn(&str) -> String) -> Desired;

fn subscription(
    name: &str,
    id: &str,
    product: &str,
    seats: i32,
) -> Declared<SubscriptionIntent, seatkeeper::api::SubscriptionStatus> {
    Declared {
        meta: meta(name),
        spec: serde_json::from_value(json!({"organization": "contoso.com", "product": product,
            "subscriptionId": id, "seats": seats}))
        .unwrap(),
        status: Default::default(),
    }
}

fn assignment(
    name: &str,
    users: &[&str],
    product: &str,
    mode: &str,
) -> Declared<AssignmentIntent, seatkeeper::api::LicenseAssignmentStatus> {
    Declared {
        meta: meta(name),
        spec: serde_json::from_value(json!({"organization": "contoso.com", "users": users,
            "licenses": [{"product": product}], "mode": mode}))
        .unwrap(),
        status: Default::default(),
    }
}

async fn run_embedded(tenant: &TenantFile, scenario: Scenario) -> Seen {
    let clock = FixedClock::new(now());
    let backend = Embedded::new(tenant.clone(), None, Arc::new(FixedClock::new(now())));
    let mut desired = scenario(&|id| id.to_string());
    let report = converge(
        &backend,
        &mut NoLedger,
        &mut desired,
        &clock,
        &Options::default(),
        DEFAULT_MAX_PASSES,
    )
    .await
    .unwrap();
    seen(&report, &desired, &backend.tenant())
}

struct Served {
    root: String,
    emulator: Arc<Emulator>,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn emulate(tenant: &TenantFile, faults: Faults) -> Served {
    let backend = Embedded::new(tenant.clone(), None, Arc::new(FixedClock::new(now())));
    let emulator = Arc::new(Emulator::new(
        backend,
        EmulatorOptions {
            client_id: Some("app".into()),
            client_secret: Some("s3cret".into()),
            token_lifetime: 3600,
            faults,
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let e = emulator.clone();
    tokio::spawn(async move {
        seatkeeper::emulator::serve(listener, e, rx).await.unwrap();
    });
    Served {
        root,
        emulator,
        stop,
    }
}

fn microsoft(root: &str, partner_center: bool, secret: &str) -> Microsoft {
    Microsoft::new(Config {
        organization: "contoso.com".into(),
        tenant_id: "contoso.com".into(),
        endpoints: Endpoints::at(root),
        client_id: "app".into(),
        client_secret: secret.into(),
        partner_center_customer: partner_center.then(|| "contoso.com".to_string()),
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

async fn run_microsoft(
    tenant: &TenantFile,
    scenario: Scenario,
    partner_center: bool,
    faults: Faults,
) -> Seen {
    let served = emulate(tenant, faults).await;
    let backend = microsoft(&served.root, partner_center, "s3cret");
    let clock = FixedClock::new(now());
    let mut desired = scenario(&|id| ids::subscription_id(id));
    let report = converge(
        &backend,
        &mut NoLedger,
        &mut desired,
        &clock,
        &Options::default(),
        DEFAULT_MAX_PASSES,
    )
    .await
    .unwrap();
    let out = seen(&report, &desired, &served.emulator_tenant());
    let _ = served.stop.send(true);
    out
}

impl Served {
    fn emulator_tenant(&self) -> TenantFile {
        self.emulator.tenant()
    }
}

fn tenant(users: &[(&str, &str)], subs: &str) -> TenantFile {
    let mut y = String::from(
        "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n",
    );
    for (upn, extra) in users {
        y += &format!("  - {{upn: {upn}{extra}}}\n");
    }
    if subs.is_empty() {
        y += "  subscriptions: []\n";
    } else {
        y += "  subscriptions:\n";
        y += subs;
    }
    TenantFile::parse(&y, "tenant.yaml").unwrap()
}

async fn same(tenant: &TenantFile, scenario: Scenario) -> Seen {
    let embedded = run_embedded(tenant, scenario).await;
    let ms = run_microsoft(tenant, scenario, true, Faults::default()).await;
    assert_eq!(embedded, ms, "the two backends disagree");
    embedded
}

const LOC: &str = ", usageLocation: NL";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r02_r12_seats_bought_then_licences_in_batches_on_both_backends() {
    let users: Vec<String> = (0..45).map(|i| format!("u{i}@contoso.com")).collect();
    let list: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), LOC)).collect();
    let t = tenant(&list, "  - {id: sub-1, product: SPE_E3, seats: 5}\n");
    fn scenario(id: &dyn Fn(&str) -> String) -> Desired {
        let users: Vec<String> = (0..45).map(|i| format!("u{i}@contoso.com")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        Desired {
            subscriptions: vec![subscription("e3", &id("sub-1"), "SPE_E3", 45)],
            assignments: vec![assignment("all", &users, "SPE_E3", "Add")],
            ..Default::default()
        }
    }
    let s = same(&t, scenario).await;
    assert!(s.converged);
    assert_eq!(s.seats, vec![("SPE_E3".into(), 45)]);
    assert!(s.licences.iter().all(|(_, p)| p == &["SPE_E3"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r05_r07_r09_r14_r16_r17_refusals_are_the_same_on_both_backends() {
    let t = tenant(
        &[
            (
                "a@contoso.com",
                ", usageLocation: NL, licenses: [{product: ENTERPRISEPACK}]",
            ),
            ("b@contoso.com", LOC),
            ("c@contoso.com", ""),
            ("guest@fabrikam.example", ", guest: true, usageLocation: US"),
            ("d@contoso.com", LOC),
        ],
        concat!(
            "  - {id: sub-e3, product: ENTERPRISEPACK, seats: 2}\n",
            "  - {id: sub-exo, product: EXCHANGESTANDARD, seats: 5}\n",
            "  - {id: sub-spb, product: SPB, seats: 1}\n",
            "  - {id: sub-res, product: SPE_E3, seats: 2, channel: Reseller}\n",
            "  - {id: sub-self, product: O365_BUSINESS_PREMIUM, seats: 2, channel: SelfService}\n",
        ),
    );
    fn scenario(id: &dyn Fn(&str) -> String) -> Desired {
        Desired {
            subscriptions: vec![
                subscription("shrink", &id("sub-e3"), "ENTERPRISEPACK", 0),
                subscription("reseller", &id("sub-res"), "SPE_E3", 3),
                subscription("self", &id("sub-self"), "O365_BUSINESS_PREMIUM", 3),
            ],
            assignments: vec![
                // R14: a holds Office 365 E3, whose Exchange plan conflicts.
                assignment("conflict", &["a@contoso.com"], "EXCHANGESTANDARD", "Add"),
                // R17: a guest is licensed like anyone; c has no usage location.
                assignment(
                    "spb",
                    &["guest@fabrikam.example", "c@contoso.com", "d@contoso.com"],
                    "SPB",
                    "Add",
                ),
            ],
            ..Default::default()
        }
    }
    let s = same(&t, scenario).await;
    let reason = |name: &str| {
        s.resources
            .iter()
            .find(|r| r.0 == name)
            .and_then(|r| r.2.clone())
            .unwrap_or_default()
    };
    assert_eq!(reason("shrink"), "SeatsInUse");
    assert_eq!(reason("reseller"), "ResellerManaged");
    assert_eq!(reason("self"), "SelfServicePurchase");
    assert_eq!(reason("conflict"), "ConflictingServices");
    let user = |u: &str| s.users.iter().find(|x| x.0 == u).cloned().unwrap();
    assert_eq!(user("guest@fabrikam.example").1, "Assigned");
    assert_eq!(
        user("c@contoso.com").2.as_deref(),
        Some("UsageLocationMissing")
    );
    assert_eq!(
        user("d@contoso.com").2.as_deref(),
        Some("InsufficientSeats")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_replace_moves_users_make_before_break_on_both_backends() {
    let t = tenant(
        &[
            (
                "a@contoso.com",
                ", usageLocation: NL, licenses: [{product: O365_BUSINESS_PREMIUM}]",
            ),
            (
                "b@contoso.com",
                ", usageLocation: NL, licenses: [{product: O365_BUSINESS_PREMIUM}]",
            ),
        ],
        "  - {id: sub-bs, product: O365_BUSINESS_PREMIUM, seats: 2}\n  - {id: sub-spb, product: SPB, seats: 2}\n",
    );
    fn scenario(_: &dyn Fn(&str) -> String) -> Desired {
        Desired {
            assignments: vec![assignment(
                "move",
                &["a@contoso.com", "b@contoso.com"],
                "SPB",
                "Replace",
            )],
            ..Default::default()
        }
    }
    let s = same(&t, scenario).await;
    assert!(s.licences.iter().all(|(_, p)| p == &["SPB"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seat_change_not_supported_without_partner_center_is_an_explicit_difference() {
    // A directly billed subscription's seats change only in the admin center: without
    // Partner Center the Microsoft backend refuses, where the simulator changes them.
    let t = tenant(
        &[("a@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 1}\n",
    );
    fn scenario(id: &dyn Fn(&str) -> String) -> Desired {
        Desired {
            subscriptions: vec![subscription("spb", &id("sub-1"), "SPB", 3)],
            ..Default::default()
        }
    }
    let embedded = run_embedded(&t, scenario).await;
    assert_eq!(embedded.resources[0].2, None);
    let ms = run_microsoft(&t, scenario, false, Faults::default()).await;
    assert_eq!(ms.resources[0].2.as_deref(), Some("SeatChangeNotSupported"));
    assert_eq!(ms.seats, vec![("SPB".into(), 1)], "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_write_budget_throttles_items_which_are_retried_until_done() {
    let users: Vec<String> = (0..30).map(|i| format!("u{i}@contoso.com")).collect();
    let list: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), LOC)).collect();
    let t = tenant(&list, "  - {id: sub-1, product: SPB, seats: 30}\n");
    fn scenario(_: &dyn Fn(&str) -> String) -> Desired {
        let users: Vec<String> = (0..30).map(|i| format!("u{i}@contoso.com")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        Desired {
            assignments: vec![assignment("all", &users, "SPB", "Add")],
            ..Default::default()
        }
    }
    let served = emulate(
        &t,
        Faults {
            write_budget: Some(12),
            window: Duration::from_secs(1),
            ..Faults::default()
        },
    )
    .await;
    let backend = microsoft(&served.root, true, "s3cret");
    let clock = FixedClock::new(now());
    let mut desired = scenario(&|id| id.to_string());
    let report = converge(
        &backend,
        &mut NoLedger,
        &mut desired,
        &clock,
        &Options::default(),
        DEFAULT_MAX_PASSES,
    )
    .await
    .unwrap();
    assert!(report.converged);
    assert_eq!(desired.assignments[0].status.assigned, 30);
    assert!(
        served.emulator.throttled() > 0,
        "the budget was met and waited out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_one_clear_error_without_the_secret() {
    let t = tenant(&[("a@contoso.com", LOC)], "");
    let served = emulate(&t, Faults::default()).await;
    let backend = microsoft(&served.root, false, "wrong-secret-value");
    let err = backend
        .snapshot("contoso.com")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("credentials refused") && err.contains("AADSTS7000215"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-value") && !err.contains("s3cret"));
}
