//! One rule suite for two backends: each scenario runs through the executor against the
//! embedded simulator, and against the Microsoft backend talking real HTTP to the emulator
//! (token endpoint, Graph, Partner Center) serving the same tenant; the outcomes a user sees
//! (statuses, Blocked reasons, the licences and seats in the tenant) must be the same. Where a
//! real service forces a difference, the scenario says so and why.

use seatkeeper::backend::Backend;
use seatkeeper::backend::embedded::{Embedded, TenantFile};
use seatkeeper::backend::microsoft::{Config, Endpoints, Microsoft};
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
    /// Per LicenseAssignment group: (group, members, licensed, blocked, first error's reason).
    groups: Vec<(String, i64, i64, i64, Option<String>)>,
    /// Per tenant group: the products it holds.
    group_licences: Vec<(String, Vec<String>)>,
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
    let groups = desired
        .assignments
        .iter()
        .flat_map(|d| &d.status.groups)
        .map(|g| {
            let reason = g.errors.first().and_then(|e| e.reason.clone());
            (g.group.clone(), g.members, g.licensed, g.blocked, reason)
        })
        .collect();
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
    let group_licences = org
        .groups
        .iter()
        .map(|g| {
            let mut p: Vec<String> = g.licenses.iter().map(|l| l.product.clone()).collect();
            p.sort();
            (g.name.clone(), p)
        })
        .collect();
    Seen {
        converged: report.converged,
        resources,
        users,
        licences,
        seats,
        groups,
        group_licences,
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

/// One run to convergence at the suite's fixed time, with no ledger and default options.
async fn converge_now<B: Backend>(
    backend: &B,
    desired: &mut Desired,
) -> Result<Report, seatkeeper::backend::BackendError> {
    let clock = FixedClock::new(now());
    converge(
        backend,
        &mut NoLedger,
        desired,
        &clock,
        &Options::default(),
        DEFAULT_MAX_PASSES,
    )
    .await
}

async fn run_embedded(tenant: &TenantFile, scenario: Scenario) -> Seen {
    let backend = Embedded::new(tenant.clone(), None, Arc::new(FixedClock::new(now())));
    let mut desired = scenario(&|id| id.to_string());
    let report = converge_now(&backend, &mut desired).await.unwrap();
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

/// The Microsoft backend's configuration for the emulator at `root`.
fn config(root: &str, partner_center: bool, secret: &str) -> Config {
    Config {
        organization: "contoso.com".into(),
        tenant_id: "contoso.com".into(),
        endpoints: Endpoints::at(root),
        client_id: "app".into(),
        credential: seatkeeper::backend::microsoft::credential::Credential::Secret(secret.into()),
        partner_center_customer: partner_center.then(|| "contoso.com".to_string()),
        timeout: Duration::from_secs(10),
        write_budget: None,
        app_budget: None,
        partner_pause: None,
    }
}

fn microsoft(root: &str, partner_center: bool, secret: &str) -> Microsoft {
    Microsoft::new(config(root, partner_center, secret)).unwrap()
}

async fn run_microsoft(
    tenant: &TenantFile,
    scenario: Scenario,
    partner_center: bool,
    faults: Faults,
) -> Seen {
    let served = emulate(tenant, faults).await;
    let backend = microsoft(&served.root, partner_center, "s3cret");
    let mut desired = scenario(&|id| seatkeeper::emulator::subscription_id(id));
    let report = converge_now(&backend, &mut desired).await.unwrap();
    let out = seen(&report, &desired, &served.emulator_tenant());
    let _ = served.stop.send(true);
    out
}

impl Served {
    fn emulator_tenant(&self) -> TenantFile {
        self.emulator.tenant()
    }

    /// How many subscriptions of `product` the emulated tenant holds.
    fn bought(&self, product: &str) -> usize {
        self.emulator_tenant().organizations[0]
            .subscriptions
            .iter()
            .filter(|s| s.product == product)
            .count()
    }

    /// How many checkouts Partner Center received.
    fn checkouts(&self) -> usize {
        self.emulator
            .partner_center_calls()
            .iter()
            .filter(|c| c.path.ends_with("/checkout"))
            .count()
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
    let mut desired = scenario(&|id| id.to_string());
    let report = converge_now(&backend, &mut desired).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_scope_is_the_clouds_whatever_the_endpoints_say() {
    let t = tenant(&[("a@contoso.com", LOC)], "");
    let served = emulate(&t, Faults::default()).await;
    // Pointed at the emulator's root, the client still asks for Graph's own scope: the
    // emulator (as the identity platform) issues no token for a scope made of its address.
    let backend = microsoft(&served.root, true, "s3cret");
    backend.snapshot("contoso.com").await.unwrap();
    // A scope derived from the endpoint, as an earlier version sent, is AADSTS70011.
    let mut wrong = Endpoints::at(&served.root);
    wrong.graph_scope = format!("{}/.default", served.root);
    let backend = Microsoft::new(Config {
        organization: "contoso.com".into(),
        tenant_id: "contoso.com".into(),
        endpoints: wrong,
        client_id: "app".into(),
        credential: seatkeeper::backend::microsoft::credential::Credential::Secret("s3cret".into()),
        partner_center_customer: None,
        timeout: Duration::from_secs(10),
        write_budget: None,
        app_budget: None,
        partner_pause: None,
    })
    .unwrap();
    let err = backend
        .snapshot("contoso.com")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("AADSTS70011"), "{err}");
    // A Graph token is no Partner Center token: the audience is checked.
    let http = plain_http();
    let token: serde_json::Value = http
        .post(format!("{}/contoso.com/oauth2/v2.0/token", served.root))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "s3cret"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap();
    let pc = http
        .get(format!(
            "{}/v1/customers/contoso.com/subscriptions",
            served.root
        ))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(pc.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_read_past_graphs_999_per_page() {
    let users: Vec<String> = (0..1205).map(|i| format!("u{i}@contoso.com")).collect();
    let list: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), LOC)).collect();
    let t = tenant(&list, "  - {id: sub-1, product: SPB, seats: 2}\n");
    let served = emulate(&t, Faults::default()).await;
    let backend = microsoft(&served.root, true, "s3cret");
    let snap = backend.snapshot("contoso.com").await.unwrap();
    let org = snap.organization.unwrap();
    assert_eq!(
        org.users.len(),
        1205,
        "two pages of 999 followed by nextLink"
    );
    assert!(org.user("u1204@contoso.com").is_some());
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_dies_mid_run_is_renewed() {
    let users: Vec<String> = (0..60).map(|i| format!("u{i}@contoso.com")).collect();
    let list: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), LOC)).collect();
    let t = tenant(&list, "  - {id: sub-1, product: SPB, seats: 60}\n");
    // Each token works for 150 ms, although it says an hour; the licence calls are slower.
    let served = emulate(
        &t,
        Faults {
            tokens_die_after: Some(Duration::from_millis(150)),
            latency: Duration::from_millis(40),
            ..Faults::default()
        },
    )
    .await;
    let backend = microsoft(&served.root, true, "s3cret");
    fn scenario(_: &dyn Fn(&str) -> String) -> Desired {
        let users: Vec<String> = (0..60).map(|i| format!("u{i}@contoso.com")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        Desired {
            assignments: vec![assignment("all", &users, "SPB", "Add")],
            ..Default::default()
        }
    }
    let mut desired = scenario(&|id| id.to_string());
    let report = converge_now(&backend, &mut desired).await.unwrap();
    assert!(report.converged);
    assert_eq!(desired.assignments[0].status.assigned, 60);
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_purchase_reply_never_buys_a_second_subscription() {
    let t = tenant(
        &[("a@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 1}\n",
    );
    let served = emulate(
        &t,
        Faults {
            drop_rate: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let backend = microsoft(&served.root, true, "s3cret");
    let mut desired = Desired {
        subscriptions: vec![Declared {
            meta: meta("new"),
            spec: serde_json::from_value(
                json!({"organization": "contoso.com", "product": "SPE_E3", "seats": 3}),
            )
            .unwrap(),
            status: Default::default(),
        }],
        ..Default::default()
    };
    // Every reply is lost (the order is placed, the answer never arrives): the run fails.
    let first = converge_now(&backend, &mut desired).await;
    assert!(first.is_err(), "{first:?}");
    // The service answers again; the same purchase key finds the same order.
    served.emulator.set_faults(Faults::default());
    let report = converge_now(&backend, &mut desired).await.unwrap();
    assert!(report.converged);
    let bought: Vec<_> = served.emulator.tenant().organizations[0]
        .subscriptions
        .iter()
        .filter(|s| s.product == "SPE_E3")
        .cloned()
        .collect();
    assert_eq!(bought.len(), 1, "bought once: {bought:?}");
    assert_eq!(
        desired.subscriptions[0].status.subscription_id.as_deref(),
        Some(seatkeeper::emulator::subscription_id(&bought[0].id).as_str())
    );
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_partner_center_call_has_its_own_request_id_and_an_operation_its_correlation_id() {
    let t = tenant(
        &[("a@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 1}\n",
    );
    let served = emulate(&t, Faults::default()).await;
    let backend = microsoft(&served.root, true, "s3cret");
    let mut desired = Desired {
        subscriptions: vec![
            Declared {
                meta: meta("new"),
                spec: serde_json::from_value(
                    json!({"organization": "contoso.com", "product": "SPE_E3", "seats": 3}),
                )
                .unwrap(),
                status: Default::default(),
            },
            subscription(
                "spb",
                &seatkeeper::emulator::subscription_id("sub-1"),
                "SPB",
                2,
            ),
        ],
        ..Default::default()
    };
    let report = converge_now(&backend, &mut desired).await.unwrap();
    assert!(report.converged);
    let calls = served.emulator.partner_center_calls();
    assert!(
        calls
            .iter()
            .all(|c| c.request_id.is_some() && c.correlation_id.is_some()),
        "every call carries both ids: {calls:#?}"
    );
    let cart = calls.iter().find(|c| c.path.ends_with("/carts")).unwrap();
    let checkout = calls
        .iter()
        .find(|c| c.path.ends_with("/checkout"))
        .unwrap();
    assert_ne!(
        cart.request_id, checkout.request_id,
        "two calls, two request ids"
    );
    assert_eq!(
        cart.correlation_id, checkout.correlation_id,
        "one purchase, one correlation id"
    );
    let patch = calls.iter().find(|c| c.method == "PATCH").unwrap();
    assert_ne!(patch.correlation_id, cart.correlation_id);
    // Distinct calls never share a request id (retries of one call would).
    let mut ids: Vec<_> = calls
        .iter()
        .map(|c| (c.request_id.clone(), format!("{} {}", c.method, c.path)))
        .collect();
    ids.sort();
    ids.dedup();
    let mut only_ids: Vec<_> = ids.iter().map(|(id, _)| id.clone()).collect();
    only_ids.dedup();
    assert_eq!(only_ids.len(), ids.len(), "{ids:#?}");
    // The emulator catches a request id reused for another call, as a test of the client.
    let http = plain_http();
    let token: serde_json::Value = http
        .post(format!("{}/contoso.com/oauth2/v2.0/token", served.root))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "s3cret"),
            ("scope", "https://api.partnercenter.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reused = http
        .post(format!("{}/v1/customers/contoso.com/carts", served.root))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .header("MS-RequestId", checkout.request_id.clone().unwrap())
        .json(&json!({"lineItems": [{"id": 0, "catalogItemId": "SPB", "quantity": 1, "billingCycle": "monthly"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 400);
    assert!(reused.text().await.unwrap().contains("names one call"));
    let _ = served.stop.send(true);
}

fn to_buy(
    name: &str,
    spec: serde_json::Value,
) -> Declared<SubscriptionIntent, seatkeeper::api::SubscriptionStatus> {
    let mut spec = spec;
    spec["organization"] = json!("contoso.com");
    Declared {
        meta: meta(name),
        spec: serde_json::from_value(spec).unwrap(),
        status: Default::default(),
    }
}

fn blocked(desired: &Desired, i: usize) -> (String, String) {
    let s = &desired.subscriptions[i].status;
    let message = s
        .conditions
        .get("Blocked")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    (s.blocked_reason.clone().unwrap_or_default(), message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_buys_the_one_catalog_offer_for_its_term_or_says_why_not() {
    use seatkeeper::emulator::catalog;
    let t = TenantFile::parse(
        "catalog:\n  products:\n  - {sku: SPE_E3_TWIN, name: Microsoft 365 E3, kind: Base, plans: [EXCHANGE_S_ENTERPRISE], monthlyPrice: 30}\norganizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users: []\n  subscriptions: []\n",
        "tenant.yaml",
    )
    .unwrap();
    let served = emulate(&t, Faults::default()).await;
    let backend = microsoft(&served.root, true, "s3cret");
    let mut desired = Desired {
        subscriptions: vec![
            // Found by its name, for a three-year term billed annually: the `T` availability.
            to_buy(
                "basic",
                json!({"product": "O365_BUSINESS_ESSENTIALS", "seats": 2,
                "term": "P3Y", "billingFrequency": "Annual"}),
            ),
            // No availability sells P3Y billed monthly.
            to_buy(
                "standard",
                json!({"product": "O365_BUSINESS_PREMIUM", "seats": 2,
                "term": "P3Y"}),
            ),
            // Two catalog products carry the name "Microsoft 365 E3".
            to_buy("e3", json!({"product": "SPE_E3", "seats": 2})),
        ],
        ..Default::default()
    };
    let _ = converge_now(&backend, &mut desired).await;
    let bought = |part: &str| {
        served.emulator.tenant().organizations[0]
            .subscriptions
            .iter()
            .filter(|s| s.product == part)
            .count()
    };
    assert_eq!(bought("O365_BUSINESS_ESSENTIALS"), 1);
    let (reason, message) = blocked(&desired, 1);
    assert_eq!(reason, "OfferNotFound", "{message}");
    assert!(
        message.contains("P3Y") && message.contains("P1M"),
        "{message}"
    );
    assert_eq!(bought("O365_BUSINESS_PREMIUM"), 0);
    let (reason, message) = blocked(&desired, 2);
    assert_eq!(reason, "OfferAmbiguous", "{message}");
    for part in ["SPE_E3", "SPE_E3_TWIN"] {
        assert!(message.contains(&catalog::product_id(part)), "{message}");
    }
    assert!(message.contains("spec.offer"), "{message}");
    assert_eq!(bought("SPE_E3") + bought("SPE_E3_TWIN"), 0, "never a guess");
    // spec.offer chooses; the one-year term is what it buys.
    desired.subscriptions[2].spec.offer = Some(catalog::item("SPE_E3", "M"));
    desired.subscriptions[2].spec.term = seatkeeper::domain::Term::P1Y;
    desired.subscriptions.truncate(3);
    desired.subscriptions.remove(1);
    let report = converge_now(&backend, &mut desired).await.unwrap();
    assert!(report.converged, "{:?}", blocked(&desired, 1));
    assert_eq!(bought("SPE_E3"), 1);
    assert_eq!(bought("SPE_E3_TWIN"), 0);
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_checkout_reply_is_found_in_the_orders_and_never_checked_out_again() {
    let t = tenant(&[("a@contoso.com", LOC)], "");
    let served = emulate(
        &t,
        Faults {
            lose_checkout_replies: true,
            ..Faults::default()
        },
    )
    .await;
    let backend = microsoft(&served.root, true, "s3cret");
    let mut desired = Desired {
        subscriptions: vec![to_buy("new", json!({"product": "SPE_E3", "seats": 3}))],
        ..Default::default()
    };
    // The checkout goes through and its reply is lost: the order, named after the purchase,
    // tells which subscription it made, in the same run.
    let report = converge_now(&backend, &mut desired).await.unwrap();
    assert!(report.converged);
    let calls = served.emulator.partner_center_calls();
    let checkouts = calls
        .iter()
        .filter(|c| c.path.ends_with("/checkout"))
        .count();
    assert_eq!(checkouts, 1, "{calls:#?}");
    assert!(calls.iter().any(|c| c.path.ends_with("/orders")));
    // A second run (another process) with the same purchase key finds it too.
    served.emulator.set_faults(Faults::default());
    let again = microsoft(&served.root, true, "s3cret");
    let mut fresh = Desired {
        subscriptions: vec![to_buy("new", json!({"product": "SPE_E3", "seats": 3}))],
        ..Default::default()
    };
    fresh.subscriptions[0].status.purchase = desired.subscriptions[0].status.purchase.clone();
    converge_now(&again, &mut fresh).await.unwrap();
    let bought: Vec<_> = served.emulator.tenant().organizations[0]
        .subscriptions
        .iter()
        .filter(|s| s.product == "SPE_E3")
        .cloned()
        .collect();
    assert_eq!(bought.len(), 1, "bought once: {bought:?}");
    let checkouts = served.checkouts();
    assert_eq!(checkouts, 1, "never checked out twice");
    let _ = served.stop.send(true);
}

/// Throttling, latency, server errors and lost replies all at once, on a larger tenant:
/// repeated reconciles converge, nothing is bought twice, and no licence is removed that the
/// declared state does not ask to remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_together_converge_without_buying_twice_or_removing_unasked() {
    const USERS: usize = 400;
    let users: Vec<String> = (0..USERS).map(|i| format!("u{i}@contoso.com")).collect();
    // The last 50 hold Exchange already, given outside seatkeeper: never to be removed.
    let list: Vec<(String, &str)> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let extra = if i >= USERS - 50 {
                ", usageLocation: NL, licenses: [{product: EXCHANGESTANDARD}]"
            } else {
                LOC
            };
            (u.clone(), extra)
        })
        .collect();
    let list: Vec<(&str, &str)> = list.iter().map(|(u, e)| (u.as_str(), *e)).collect();
    let t = tenant(
        &list,
        "  - {id: sub-1, product: SPB, seats: 100}\n  - {id: sub-exo, product: EXCHANGESTANDARD, seats: 50}\n",
    );
    let faults = Faults {
        latency: Duration::from_millis(2),
        error_rate: 0.05,
        drop_rate: 0.05,
        write_budget: Some(40),
        window: Duration::from_millis(400),
        seed: 7,
        ..Faults::default()
    };
    let served = emulate(&t, faults).await;
    let backend = microsoft(&served.root, true, "s3cret");
    let mut desired = Desired {
        subscriptions: vec![subscription(
            "spb",
            &seatkeeper::emulator::subscription_id("sub-1"),
            "SPB",
            USERS as i32,
        )],
        assignments: vec![assignment(
            "everyone",
            &users.iter().map(String::as_str).collect::<Vec<_>>(),
            "SPB",
            "Add",
        )],
        ..Default::default()
    };
    desired.assignments[0].meta.flags.allow_bulk_removal = true;
    let options = Options {
        max_seat_increase: 1000,
        ..Options::default()
    };
    let clock = FixedClock::new(now());
    let mut reconciles = 0;
    let converged = loop {
        reconciles += 1;
        match converge(
            &backend,
            &mut NoLedger,
            &mut desired,
            &clock,
            &options,
            DEFAULT_MAX_PASSES,
        )
        .await
        {
            Ok(r) if r.converged => break true,
            _ if reconciles >= 30 => break false,
            _ => {}
        }
    };
    let tenant = served.emulator.tenant();
    let org = &tenant.organizations[0];
    let spb_subscriptions = org
        .subscriptions
        .iter()
        .filter(|s| s.product == "SPB")
        .count();
    let licensed = org
        .users
        .iter()
        .filter(|u| u.licence("SPB").is_some())
        .count();
    let kept_exchange = org
        .users
        .iter()
        .filter(|u| u.licence("EXCHANGESTANDARD").is_some())
        .count();
    let (requests, errors, dropped, throttled) = served.emulator.fault_counts();
    println!(
        "fault run: {reconciles} reconciles, {requests} requests, {errors} answered 5xx, {dropped} replies lost, {throttled} items throttled; {licensed} licensed, {spb_subscriptions} SPB subscription(s), {kept_exchange} Exchange licences kept"
    );
    assert!(converged, "did not converge in {reconciles} reconciles");
    assert!(
        errors > 0 && dropped > 0 && throttled > 0,
        "every fault happened"
    );
    assert_eq!(spb_subscriptions, 1, "nothing bought twice");
    assert_eq!(
        org.subscriptions
            .iter()
            .find(|s| s.product == "SPB")
            .unwrap()
            .seats,
        USERS as u32
    );
    assert_eq!(licensed, USERS);
    assert_eq!(
        kept_exchange, 50,
        "no licence removed that was not asked for"
    );
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_signs_in_with_a_client_assertion() {
    use seatkeeper::backend::microsoft::credential::Credential;
    let mut t = tenant(
        &[("a@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 1}\n",
    );
    let read = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/microsoft/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    // The app registration's certificate, as uploaded under Certificates & secrets.
    t.applications
        .push(seatkeeper::backend::embedded::Application {
            client_id: "app".into(),
            certificates: vec![read("test-only.crt")],
            ..Default::default()
        });
    let served = emulate(&t, Faults::default()).await;
    let credential =
        Credential::certificate(&read("test-only.crt"), &read("test-only.key")).unwrap();
    let config = |client_id: &str| Config {
        organization: "contoso.com".into(),
        tenant_id: "contoso.com".into(),
        endpoints: Endpoints::at(&served.root),
        client_id: client_id.into(),
        credential: credential.clone(),
        partner_center_customer: None,
        timeout: Duration::from_secs(10),
        write_budget: None,
        app_budget: None,
        partner_pause: None,
    };
    let backend = Microsoft::new(config("app")).unwrap();
    let snap = backend.snapshot("contoso.com").await.unwrap();
    assert_eq!(snap.organization.unwrap().users.len(), 1);
    // An assertion for another application is refused.
    let other = Microsoft::new(config("someone-else")).unwrap();
    let err = other.snapshot("contoso.com").await.unwrap_err().to_string();
    assert!(
        err.contains("AADSTS700016") || err.contains("AADSTS700027"),
        "{err}"
    );
    // Signed with another key than the registered certificate's: refused, as the identity
    // platform refuses it (the signature is verified, not only the claims).
    let forged = Credential::certificate(&read("test-only.crt"), &read("test-only-other.key"));
    // The client may refuse a key that does not match the certificate before sending it.
    if let Ok(forged) = forged {
        let mut cfg = config("app");
        cfg.credential = forged;
        let err = Microsoft::new(cfg)
            .unwrap()
            .snapshot("contoso.com")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("AADSTS700027"), "{err}");
    }
    let unregistered =
        Credential::certificate(&read("test-only-other.crt"), &read("test-only-other.key"))
            .unwrap();
    let mut cfg = config("app");
    cfg.credential = unregistered;
    let err = Microsoft::new(cfg)
        .unwrap()
        .snapshot("contoso.com")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AADSTS700027"),
        "a certificate not registered: {err}"
    );
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_signs_in_with_the_projected_token() {
    use base64::Engine;
    use seatkeeper::backend::microsoft::credential::Credential;
    let mut t = tenant(&[("a@contoso.com", LOC)], "");
    // The app's federated identity credential: this cluster's issuer and service account.
    t.applications
        .push(seatkeeper::backend::embedded::Application {
            client_id: "app".into(),
            federated_credentials: vec![seatkeeper::backend::embedded::FederatedCredential {
                issuer: "https://oidc.example/cluster".into(),
                subject: "system:serviceaccount:seatkeeper-system:seatkeeper".into(),
                audiences: vec!["api://AzureADTokenExchange".into()],
            }],
            ..Default::default()
        });
    let served = emulate(&t, Faults::default()).await;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let dir = tempfile::tempdir().unwrap();
    let backend_for = |subject: &str, name: &str| {
        let token = format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(json!({"alg": "RS256"})),
            b64(json!({"aud": "api://AzureADTokenExchange",
                "iss": "https://oidc.example/cluster", "sub": subject}))
        );
        let file = dir.path().join(name);
        std::fs::write(&file, token).unwrap();
        Microsoft::new(Config {
            organization: "contoso.com".into(),
            tenant_id: "contoso.com".into(),
            endpoints: Endpoints::at(&served.root),
            client_id: "app".into(),
            credential: Credential::Federated { token_file: file },
            partner_center_customer: None,
            timeout: Duration::from_secs(10),
            write_budget: None,
            app_budget: None,
            partner_pause: None,
        })
        .unwrap()
    };
    let ok = backend_for("system:serviceaccount:seatkeeper-system:seatkeeper", "ok");
    assert!(ok.snapshot("contoso.com").await.is_ok());
    // Another service account of the same cluster is not the registered subject.
    let other = backend_for("system:serviceaccount:default:default", "other");
    let refused = other.snapshot("contoso.com").await.unwrap_err().to_string();
    assert!(
        refused.contains("AADSTS70021")
            && refused.contains("system:serviceaccount:default:default"),
        "{refused}"
    );
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_licence_a_group_gives_is_never_removed_on_both_backends() {
    let t = tenant(
        &[(
            "a@contoso.com",
            ", usageLocation: NL, licenses: [{product: O365_BUSINESS_PREMIUM, byGroup: true}]",
        )],
        "  - {id: sub-bs, product: O365_BUSINESS_PREMIUM, seats: 1}\n  - {id: sub-spb, product: SPB, seats: 1}\n",
    );
    fn scenario(_: &dyn Fn(&str) -> String) -> Desired {
        Desired {
            assignments: vec![assignment("move", &["a@contoso.com"], "SPB", "Replace")],
            ..Default::default()
        }
    }
    let s = same(&t, scenario).await;
    assert_eq!(s.users[0].2.as_deref(), Some("LicenseAssignedByGroup"));
    assert_eq!(
        s.licences[0].1,
        vec!["O365_BUSINESS_PREMIUM"],
        "nothing removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_pacing_keeps_within_graphs_write_budget() {
    let users: Vec<String> = (0..60).map(|i| format!("u{i}@contoso.com")).collect();
    let list: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), LOC)).collect();
    let t = tenant(&list, "  - {id: sub-1, product: SPB, seats: 60}\n");
    let budget = (20, Duration::from_millis(300));
    let served = emulate(
        &t,
        Faults {
            write_budget: Some(budget.0),
            window: budget.1,
            ..Faults::default()
        },
    )
    .await;
    let backend = Microsoft::new(Config {
        write_budget: Some(budget),
        app_budget: None,
        partner_pause: None,
        ..config(&served.root, false, "s3cret")
    })
    .unwrap();
    let (desired, took) = assign_everyone(&backend, &users).await;
    assert_eq!(desired.assignments[0].status.assigned, 60);
    assert_eq!(
        served.emulator.throttled(),
        0,
        "paced: nothing was throttled"
    );
    println!("paced 60 writes at 20 per 300 ms in {took:?} (floor 600 ms)");
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_adapts_to_a_budget_smaller_than_documented_without_being_told() {
    let users: Vec<String> = (0..1200).map(|i| format!("u{i}@contoso.com")).collect();
    let list: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), LOC)).collect();
    let t = tenant(&list, "  - {id: sub-1, product: SPB, seats: 1200}\n");
    // The client is configured with 1,600 writes per window; the service grants a quarter (400:
    // as Graph's 3,000 per 150 s to a client told 12,000, the scale of four batches in flight).
    let window = Duration::from_millis(500);
    let served = emulate(
        &t,
        Faults {
            write_budget: Some(400),
            window,
            ..Faults::default()
        },
    )
    .await;
    let backend = Microsoft::new(Config {
        write_budget: Some((1600, window)),
        app_budget: None,
        partner_pause: None,
        ..config(&served.root, false, "s3cret")
    })
    .unwrap();
    let (desired, took) = assign_everyone(&backend, &users).await;
    assert_eq!(desired.assignments[0].status.assigned, 1200);
    let throttled = served.emulator.throttled();
    // Graph's warning (x-ms-throttle-limit-percentage from 0.8 on) slows it before a 429.
    assert!(
        throttled * 100 <= 1200,
        "{throttled} of 1200 writes answered 429 (at most 1 %)"
    );
    println!(
        "1200 writes at a hidden 400 per 500 ms in {took:?} (floor 1.5 s), {throttled} throttled"
    );
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_subscription_read_with_replication_lag_is_waited_for() {
    let t = tenant(
        &[("a@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 1}\n",
    );
    let served = emulate(
        &t,
        Faults {
            replication_lag: Duration::from_millis(600),
            ..Faults::default()
        },
    )
    .await;
    let backend = microsoft(&served.root, true, "s3cret");
    let mut desired = Desired {
        subscriptions: vec![Declared {
            meta: meta("new"),
            spec: serde_json::from_value(
                json!({"organization": "contoso.com", "product": "SPE_E3", "seats": 2}),
            )
            .unwrap(),
            status: Default::default(),
        }],
        ..Default::default()
    };
    let report = converge_now(&backend, &mut desired).await.unwrap();
    assert!(report.converged, "{:?}", desired.subscriptions[0].status);
    assert_eq!(served.bought("SPE_E3"), 1, "bought once");
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_blocks_naming_it() {
    let t = tenant(
        &[("a@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 1}\n",
    );
    let served = emulate(
        &t,
        Faults {
            deny_licence_writes: true,
            ..Faults::default()
        },
    )
    .await;
    let backend = microsoft(&served.root, true, "s3cret");
    let mut desired = Desired {
        assignments: vec![assignment("a", &["a@contoso.com"], "SPB", "Add")],
        ..Default::default()
    };
    let _ = converge_now(&backend, &mut desired).await.unwrap();
    let status = &desired.assignments[0].status;
    assert_eq!(status.blocked_reason.as_deref(), Some("PermissionDenied"));
    let message = status.conditions.get("Blocked").unwrap().message.clone();
    assert!(
        message.contains("LicenseAssignment.ReadWrite.All"),
        "{message}"
    );
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reduction_window_is_partner_centers_refundable_quantity_and_800090() {
    // Seats added on 1 November could be removed until 20 November (now is the 21st).
    let t = tenant(
        &[("a@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 5, reductionWindowEndsAt: '2026-11-20T00:00:00Z'}\n",
    );
    let served = emulate(&t, Faults::default()).await;
    let backend = microsoft(&served.root, true, "s3cret");
    let snapshot = backend.snapshot("contoso.com").await.unwrap();
    let sub = snapshot.organization.unwrap().subscriptions[0].clone();
    assert_eq!(
        sub.reduction_window_ends_at,
        Some("2026-11-20T00:00:00Z".parse().unwrap()),
        "read from refundableQuantity.details[].allowedUntilDateTime"
    );
    // Asked directly (past the planner), the service refuses with 800090, which maps back.
    let refused = backend
        .set_seats("contoso.com", &sub.id, 4, None)
        .await
        .unwrap_err();
    assert_eq!(
        format!("{:?}", refused),
        format!(
            "{:?}",
            seatkeeper::backend::BackendError::Refused(
                seatkeeper::domain::Refusal::ReductionWindowClosed {
                    closed_at: Some("2026-11-20T00:00:00Z".parse().unwrap())
                }
            )
        )
    );
    // Raising is not limited by it.
    backend
        .set_seats("contoso.com", &sub.id, 6, None)
        .await
        .unwrap();
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licence_batches_reuse_the_directory_their_pass_read() {
    // 200 users in 10 batches of 20: the user directory is read once per pass, not once per
    // batch (which made 100k users cost 100 pages of users for each of 5,000 batches).
    let (requests, bound) = requests_for_200_users(200, false).await;
    assert!(requests <= bound, "{requests} requests (at most {bound})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r02_a_seat_increase_does_not_make_the_licence_batches_read_the_directory_again() {
    // Seats first (R02), then the batches: a seat change leaves every id a batch maps as it
    // was, so the batches use the directory their pass read (at 100k users a second read
    // cost half a second before the first batch).
    let (requests, bound) = requests_for_200_users(150, true).await;
    assert!(requests <= bound, "{requests} requests (at most {bound})");
}

/// Requests made to assign SPB to 200 users when the tenant has `seats` of it (a Subscription
/// declares 200 when `partner_center`), and the most the batches and each pass's reads need.
async fn requests_for_200_users(seats: u32, partner_center: bool) -> (u64, u64) {
    let users: Vec<String> = (0..200).map(|i| format!("u{i}@contoso.com")).collect();
    let list: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), LOC)).collect();
    let t = tenant(
        &list,
        &format!("  - {{id: sub-1, product: SPB, seats: {seats}}}\n"),
    );
    let served = emulate(&t, Faults::default()).await;
    let backend = microsoft(&served.root, partner_center, "s3cret");
    let users_ref: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut desired = Desired {
        assignments: vec![assignment("all", &users_ref, "SPB", "Add")],
        ..Default::default()
    };
    if partner_center {
        let id = seatkeeper::emulator::subscription_id("sub-1");
        desired.subscriptions = vec![subscription("spb", &id, "SPB", 200)];
    }
    let report = converge_now(&backend, &mut desired).await.unwrap();
    assert!(report.converged);
    assert_eq!(desired.assignments[0].status.assigned, 200);
    // One pass that changes everything and one that finds nothing left: a bound that grew
    // with the passes would let a needless third pass through.
    assert_eq!(
        report.passes, 2,
        "one pass changing, one finding nothing left"
    );
    let (requests, _, _, _) = served.emulator.fault_counts();
    let _ = served.stop.send(true);
    // subscribedSkus, directory/subscriptions, one page of users, one of groups (none:
    // no members to read) (+ Partner Center's list)
    let reads_per_pass = if partner_center { 5 } else { 4 };
    // 10 batches, the seat change (Partner Center's subscription, then the patch), the tokens
    let (changes, tokens) = if partner_center { (10 + 2, 2) } else { (10, 1) };
    let bound = changes + reads_per_pass * 2 + tokens;
    (requests, bound)
}

/// Where `served` differs from `documented` in shape: a field the vendor's example does not
/// have, or a different JSON type (null in the example stands for any type). Arrays compare
/// their first elements.
fn shape_problems(
    path: &str,
    served: &serde_json::Value,
    documented: &serde_json::Value,
) -> Vec<String> {
    use serde_json::Value;
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    match (served, documented) {
        (_, Value::Null) | (Value::Null, _) => vec![],
        (Value::Object(s), Value::Object(d)) => s
            .iter()
            .flat_map(|(k, v)| match d.get(k) {
                // Partner Center's examples are not consistent about a field's first letter.
                None => match d.iter().find(|(dk, _)| dk.eq_ignore_ascii_case(k)) {
                    Some((_, dv)) => shape_problems(&format!("{path}.{k}"), v, dv),
                    None => vec![format!("{path}.{k}: not in the vendor's example")],
                },
                Some(dv) => shape_problems(&format!("{path}.{k}"), v, dv),
            })
            .collect(),
        (Value::Array(s), Value::Array(d)) => match (s.first(), d.first()) {
            (Some(a), Some(b)) => shape_problems(&format!("{path}[0]"), a, b),
            _ => vec![],
        },
        (s, d) if kind(s) == kind(d) => vec![],
        (s, d) => vec![format!(
            "{path}: {} where the example has {}",
            kind(s),
            kind(d)
        )],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_answers_in_the_shapes_of_the_vendors_examples() {
    let mut t = tenant(
        &[("a@contoso.com", LOC), ("b@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 2}\n  - {id: sub-t, product: ENTERPRISEPACK, seats: 25, trial: true}\n",
    );
    t.organizations[0].groups.push(seatkeeper::domain::Group {
        id: None,
        name: "sales".into(),
        members: vec!["a@contoso.com".into()],
        licenses: vec![seatkeeper::domain::Licence::new("SPB", &[])],
        processing: false,
    });
    for u in &mut t.organizations[0].users {
        u.last_sign_in_at = Some("2026-11-20T08:00:00Z".parse().unwrap());
    }
    let served = emulate(&t, Faults::default()).await;
    let http = plain_http();
    let token = |scope: &'static str| {
        let http = http.clone();
        let root = served.root.clone();
        async move {
            let t: serde_json::Value = http
                .post(format!("{root}/contoso.com/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", "app"),
                    ("client_secret", "s3cret"),
                    ("scope", scope),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            t["access_token"].as_str().unwrap().to_string()
        }
    };
    let graph = token("https://graph.microsoft.com/.default").await;
    let pc = token("https://api.partnercenter.microsoft.com/.default").await;
    let fixture = |name: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/tests/fixtures/microsoft/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap()
    };
    let get = |bearer: &str, path: String| {
        let http = http.clone();
        let url = format!("{}{path}", served.root);
        let bearer = bearer.to_string();
        async move {
            let r = http.get(url).bearer_auth(bearer).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let mut problems = vec![];
    let mut check = |name: &str, served: &serde_json::Value, documented: serde_json::Value| {
        problems.extend(shape_problems(name, served, &documented));
    };
    let skus = get(&graph, "/v1.0/subscribedSkus".into()).await;
    check("subscribedSkus", &skus, fixture("subscribedSkus.json"));
    let subs = get(&graph, "/v1.0/directory/subscriptions".into()).await;
    check(
        "directory/subscriptions",
        &subs,
        fixture("directorySubscriptions.json"),
    );
    let c = "/v1/customers/contoso.com";
    let products = get(&pc, format!("{c}/products?targetView=OnlineServices")).await;
    check("products", &products, fixture("pcProducts.json"));
    let spb = seatkeeper::emulator::catalog::product_id("SPB");
    let pc_skus = get(&pc, format!("{c}/products/{spb}/skus")).await;
    check("skus", &pc_skus, fixture("pcSkus.json"));
    let availabilities = get(&pc, format!("{c}/products/{spb}/skus/0001/availabilities")).await;
    check(
        "availabilities.items[0]",
        &availabilities["items"][0],
        fixture("pcAvailabilities.json"),
    );
    let subscriptions = get(&pc, format!("{c}/subscriptions")).await;
    check(
        "subscriptions.items[0]",
        &subscriptions["items"][0],
        fixture("pcNceSubscription.json"),
    );
    let cart: serde_json::Value = http
        .post(format!("{}{c}/carts", served.root))
        .bearer_auth(&pc)
        .header("MS-RequestId", "d0e38dfd-a2c5-4a14-ac06-12d30f0ec54e")
        .json(&serde_json::json!({"lineItems": [{"id": 0,
            "catalogItemId": seatkeeper::emulator::catalog::item("SPB", "M"),
            "quantity": 1, "billingCycle": "monthly", "termDuration": "P1M"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check("cart", &cart, fixture("pcCart.json"));
    let done: serde_json::Value = http
        .post(format!(
            "{}{c}/carts/{}/checkout",
            served.root,
            cart["id"].as_str().unwrap()
        ))
        .bearer_auth(&pc)
        .header("MS-RequestId", "1ae38dfd-a2c5-4a14-ac06-12d30f0ec54e")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check("checkout", &done, fixture("pcCheckoutResult.json"));
    let orders = get(&pc, format!("{c}/orders")).await;
    // The collection as the orders page shows it, holding a new-commerce order.
    let mut documented = fixture("pcOrders.json");
    documented["items"] = serde_json::json!([fixture("pcOrderNce.json")]);
    check("orders", &orders, documented);
    // Last sign-ins, as the user-list page's example selects them. The last successful
    // sign-in is on the signInActivity resource type page (recorded since December 2023),
    // not in that older example: compared without it.
    let mut signed = get(
        &graph,
        "/v1.0/users?$select=displayName,userPrincipalName,signInActivity&$top=999".into(),
    )
    .await;
    for u in signed["value"].as_array_mut().unwrap() {
        let a = u["signInActivity"].as_object_mut().unwrap();
        assert!(a.remove("lastSuccessfulSignInDateTime").is_some(), "{a:?}");
        a.remove("lastSuccessfulSignInRequestId");
    }
    check(
        "users (signInActivity)",
        &signed,
        fixture("usersSignInActivity.json"),
    );
    // Graph groups: the default property set, the licences when selected, members, a group's
    // assignLicense answer (202 with the group).
    let groups = get(&graph, "/v1.0/groups".into()).await;
    check("groups", &groups, fixture("groupsPage.json"));
    let selected = get(
        &graph,
        "/v1.0/groups?$select=id,displayName,assignedLicenses".into(),
    )
    .await;
    let licensed = &selected["value"][0];
    assert!(licensed["assignedLicenses"].is_array(), "{selected}");
    check(
        "groups (assignedLicenses)",
        &serde_json::json!({"value": [{"assignedLicenses": licensed["assignedLicenses"]}]}),
        fixture("groupLicenses.json"),
    );
    let id = licensed["id"].as_str().unwrap();
    let members = get(&graph, format!("/v1.0/groups/{id}/members?$select=id")).await;
    // Each directory object names its type (the stored example predates the annotation).
    let member = &members["value"][0];
    assert_eq!(member["@odata.type"], "#microsoft.graph.user", "{members}");
    let mut untyped = members.clone();
    untyped["value"][0]
        .as_object_mut()
        .unwrap()
        .remove("@odata.type");
    check("group members", &untyped, fixture("groupMembers.json"));
    let assigned = http
        .post(format!("{}/v1.0/groups/{id}/assignLicense", served.root))
        .bearer_auth(&graph)
        .json(&serde_json::json!({"addLicenses": [], "removeLicenses": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(assigned.status(), 202);
    let assigned: serde_json::Value = assigned.json().await.unwrap();
    check(
        "group assignLicense",
        &assigned,
        fixture("groupAssignLicense.json"),
    );
    // Graph: a page with its next link, a $batch, an error body.
    let users = get(&graph, "/v1.0/users?$top=1".into()).await;
    check(
        "users (next link)",
        &serde_json::json!({"@odata.nextLink": users["@odata.nextLink"]}),
        fixture("usersPage.json"),
    );
    assert!(users["@odata.nextLink"].is_string(), "{users}");
    let spb_sku = skus["value"][0]["skuId"].clone();
    let batch: serde_json::Value = http
        .post(format!("{}/v1.0/$batch", served.root))
        .bearer_auth(&graph)
        .json(&serde_json::json!({"requests": [
            {"id": "1", "method": "POST", "url": "/users/a@contoso.com/assignLicense",
             "headers": {"Content-Type": "application/json"},
             "body": {"addLicenses": [{"skuId": spb_sku, "disabledPlans": []}], "removeLicenses": []}},
            {"id": "2", "method": "POST", "url": "users/nobody@contoso.com/assignLicense",
             "headers": {"Content-Type": "application/json"},
             "body": {"addLicenses": [{"skuId": spb_sku, "disabledPlans": []}], "removeLicenses": []}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The envelope: the page's example items answer other requests than assignLicense.
    let mut envelope = batch.clone();
    for r in envelope["responses"].as_array_mut().unwrap() {
        r["body"] = serde_json::Value::Null;
    }
    check("$batch", &envelope, fixture("batchResponse.json"));
    let refused = batch["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == 404)
        .cloned()
        .unwrap_or_else(|| panic!("the unknown user is a 404 item: {batch}"));
    check(
        "$batch item error",
        &refused["body"],
        fixture("graphError.json"),
    );
    let error: serde_json::Value = http
        .get(format!("{}/v1.0/users?$top=0", served.root))
        .bearer_auth(&graph)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check("Graph error", &error, fixture("graphError.json"));
    // The identity platform: a token, and a refusal.
    let token_request = |secret: &'static str| {
        http.post(format!("{}/contoso.com/oauth2/v2.0/token", served.root))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "app"),
                ("client_secret", secret),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
    };
    let reply: serde_json::Value = token_request("s3cret").await.unwrap().json().await.unwrap();
    check("token", &reply, fixture("tokenReply.json"));
    let refusal: serde_json::Value = token_request("wrong").await.unwrap().json().await.unwrap();
    check("token error", &refusal, fixture("tokenError.json"));
    // Partner Center: a trial's transition, from its eligibilities.
    let trial = seatkeeper::emulator::subscription_id("sub-t");
    let eligible = get(
        &pc,
        format!("{c}/subscriptions/{trial}/transitionEligibilities?eligibilityType=immediate"),
    )
    .await;
    check(
        "transitionEligibilities",
        &eligible,
        fixture("pcTransitionEligibilities.json"),
    );
    let transition: serde_json::Value = http
        .post(format!(
            "{}{c}/subscriptions/{trial}/transitions",
            served.root
        ))
        .bearer_auth(&pc)
        .header("MS-RequestId", "2be38dfd-a2c5-4a14-ac06-12d30f0ec54e")
        .json(
            &serde_json::json!({"toCatalogItemId": eligible["items"][0]["catalogItemId"],
            "quantity": 25, "transitionType": "transition_only"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check("transition", &transition, fixture("pcTransition.json"));
    assert!(problems.is_empty(), "{problems:#?}");
    let _ = served.stop.send(true);
}

/// SPB for every one of `users`, converged: the assignment's status and how long it took.
async fn assign_everyone(backend: &Microsoft, users: &[String]) -> (Desired, Duration) {
    let users_ref: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut desired = Desired {
        assignments: vec![assignment("all", &users_ref, "SPB", "Add")],
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let report = converge_now(backend, &mut desired).await.unwrap();
    assert!(report.converged);
    (desired, started.elapsed())
}

/// An HTTP client for talking to the emulator directly (rustls needs its provider first).
fn plain_http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Another admin, in the portal, takes the last free seat just before seatkeeper's first
/// licence call (after seatkeeper read the tenant).
struct SeatTakenMeanwhile {
    emulator: Arc<Emulator>,
    done: std::sync::atomic::AtomicBool,
}

impl seatkeeper::backend::hooked::Hook for SeatTakenMeanwhile {
    async fn before(&self, operation: &'static str) -> seatkeeper::backend::Result<()> {
        if operation == "assignLicenses"
            && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let change = seatkeeper::domain::UserChange {
                user: "x@contoso.com".into(),
                add: vec![seatkeeper::domain::Licence::new("SPB", &[])],
                remove: vec![],
                plans_only: vec![],
            };
            let results = self
                .emulator
                .backend()
                .assign_licences("contoso.com", &[change])
                .await?;
            assert!(results.iter().all(Result::is_ok), "{results:?}");
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_a_seat_taken_between_read_and_write_on_the_microsoft_backend_refuses_that_user_only() {
    let t = tenant(
        &[
            ("a@contoso.com", LOC),
            ("b@contoso.com", LOC),
            ("c@contoso.com", LOC),
            ("x@contoso.com", LOC),
        ],
        "  - {id: sub-1, product: SPB, seats: 3}\n",
    );
    let served = emulate(&t, Faults::default()).await;
    let backend = seatkeeper::backend::hooked::Hooked {
        inner: microsoft(&served.root, false, "s3cret"),
        hook: SeatTakenMeanwhile {
            emulator: served.emulator.clone(),
            done: Default::default(),
        },
    };
    let mut desired = Desired {
        assignments: vec![assignment(
            "team",
            &["a@contoso.com", "b@contoso.com", "c@contoso.com"],
            "SPB",
            "Add",
        )],
        ..Default::default()
    };
    // The planner saw three free seats; Graph refuses the one no longer there.
    let report = converge_now(&backend, &mut desired).await.unwrap();
    let holders = |org: &seatkeeper::domain::Organization| {
        org.users
            .iter()
            .filter(|u| u.licence("SPB").is_some())
            .map(|u| u.upn.clone())
            .collect::<Vec<_>>()
    };
    let tenant = served.emulator.tenant();
    let held = holders(&tenant.organizations[0]);
    assert_eq!(
        held.len(),
        3,
        "the seats are all used, none twice: {held:?}"
    );
    assert!(
        held.contains(&"x@contoso.com".to_string()),
        "the other admin's licence stays"
    );
    let status = &desired.assignments[0].status;
    assert_eq!(status.assigned, 2);
    let waiting: Vec<_> = status
        .users
        .iter()
        .filter(|u| u.reason.as_deref() == Some("InsufficientSeats"))
        .collect();
    assert_eq!(waiting.len(), 1, "{:?}", status.users);
    // The refusal was Graph's: the licence call answered it for that user.
    assert!(
        report.executed.iter().any(|e| e
            .refused
            .as_ref()
            .is_some_and(|b| b.reason.as_str() == "InsufficientSeats")),
        "refused by the service"
    );
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r06_a_new_commerce_trial_is_bought_through_a_transition_on_both_backends() {
    let t = tenant(
        &[("a@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 25, trial: true}\n",
    );
    fn scenario(id: &dyn Fn(&str) -> String) -> Desired {
        let mut s = subscription("spb", &id("sub-1"), "SPB", 25);
        s.spec.convert_trial = true;
        Desired {
            subscriptions: vec![s],
            ..Default::default()
        }
    }
    let s = same(&t, scenario).await;
    assert!(s.converged, "{s:?}");
    // On the emulator: through "Transition a new commerce subscription", never the legacy
    // conversions call, and the trial is paid afterwards.
    let served = emulate(&t, Faults::default()).await;
    let backend = microsoft(&served.root, true, "s3cret");
    let mut desired = scenario(&|id| seatkeeper::emulator::subscription_id(id));
    let report = converge_now(&backend, &mut desired).await.unwrap();
    assert!(report.converged);
    assert!(!served.emulator_tenant().organizations[0].subscriptions[0].trial);
    let calls: Vec<String> = served
        .emulator
        .partner_center_calls()
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    let id = seatkeeper::emulator::subscription_id("sub-1");
    let at = |tail: &str| format!("/v1/customers/contoso.com/subscriptions/{id}/{tail}");
    assert!(
        calls.contains(&format!("GET {}", at("transitionEligibilities"))),
        "{calls:#?}"
    );
    assert!(
        calls.contains(&format!("POST {}", at("transitions"))),
        "{calls:#?}"
    );
    assert!(
        !calls.iter().any(|c| c.contains("conversions")),
        "{calls:#?}"
    );
    let _ = served.stop.send(true);
}

/// Partner Center may accept a transition and report it failed. That is an answer, not an
/// outage: the Subscription says so (Blocked Trial), and the next attempt is a new call (a new
/// MS-RequestId), which converts the trial once the cause is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r06_a_failed_trial_transition_is_reported_and_asked_again_as_a_new_call() {
    let t = tenant(
        &[("a@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 25, trial: true}\n",
    );
    let served = emulate(
        &t,
        Faults {
            fail_transitions: true,
            ..Faults::default()
        },
    )
    .await;
    let backend = microsoft(&served.root, true, "s3cret");
    let mut s = subscription(
        "spb",
        &seatkeeper::emulator::subscription_id("sub-1"),
        "SPB",
        25,
    );
    s.spec.convert_trial = true;
    let mut desired = Desired {
        subscriptions: vec![s],
        ..Default::default()
    };
    converge_now(&backend, &mut desired).await.unwrap();
    let status = &desired.subscriptions[0].status;
    assert_eq!(
        status.blocked_reason.as_deref(),
        Some("Trial"),
        "{status:?}"
    );
    let said = format!("{:?}", status.conditions);
    assert!(said.contains("reports the conversion"), "{said}");
    assert!(served.emulator_tenant().organizations[0].subscriptions[0].trial);
    served.emulator.set_faults(Faults::default());
    let last = converge_now(&backend, &mut desired).await.unwrap();
    assert!(last.converged, "{:?}", desired.subscriptions[0].status);
    assert!(!served.emulator_tenant().organizations[0].subscriptions[0].trial);
    let posts: Vec<Option<String>> = served
        .emulator
        .partner_center_calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/transitions"))
        .map(|c| c.request_id)
        .collect();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_ne!(posts[0], posts[1], "the second attempt is a new call");
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_listed_late_is_waited_for_and_never_checked_out_again() {
    let t = tenant(&[("a@contoso.com", LOC)], "");
    // The checkout's reply is lost and its order is listed only a while later (Partner
    // Center: up to 15 minutes; a second here).
    let served = emulate(
        &t,
        Faults {
            lose_checkout_replies: true,
            orders_lag: Duration::from_secs(1),
            ..Faults::default()
        },
    )
    .await;
    let backend = microsoft(&served.root, true, "s3cret");
    let mut desired = Desired {
        subscriptions: vec![to_buy("new", json!({"product": "SPE_E3", "seats": 3}))],
        ..Default::default()
    };
    let first = converge_now(&backend, &mut desired).await;
    assert!(
        !first.as_ref().is_ok_and(|r| r.converged),
        "not done while the order is not listed"
    );
    let said = format!(
        "{:?} {:?}",
        first.as_ref().err(),
        desired.subscriptions[0].status.conditions
    );
    assert!(said.contains("15 minutes"), "the wait is explained: {said}");
    // Meanwhile every pass looks again, and none checks out a second time.
    let again = converge_now(&backend, &mut desired).await;
    assert!(!again.is_ok_and(|r| r.converged));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let last = converge_now(&backend, &mut desired).await.unwrap();
    assert!(last.converged, "{:?}", desired.subscriptions[0].status);
    let checkouts = served.checkouts();
    assert_eq!(checkouts, 1, "never checked out twice");
    assert_eq!(served.bought("SPE_E3"), 1, "bought once");
    let _ = served.stop.send(true);
}

/// Another admin clears a user's usage location just before seatkeeper's first licence call
/// (after seatkeeper read the tenant).
struct UsageLocationClearedMeanwhile {
    emulator: Arc<Emulator>,
    done: std::sync::atomic::AtomicBool,
}

impl seatkeeper::backend::hooked::Hook for UsageLocationClearedMeanwhile {
    async fn before(&self, operation: &'static str) -> seatkeeper::backend::Result<()> {
        if operation == "assignLicenses"
            && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let found = self
                .emulator
                .backend()
                .edit_user("contoso.com", "b@contoso.com", |u| u.usage_location = None)?;
            assert!(found);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_a_usage_location_cleared_between_read_and_write_on_the_microsoft_backend_refuses_that_user_only()
 {
    let t = tenant(
        &[
            ("a@contoso.com", LOC),
            ("b@contoso.com", LOC),
            ("c@contoso.com", LOC),
        ],
        "  - {id: sub-1, product: SPB, seats: 3}\n",
    );
    let served = emulate(&t, Faults::default()).await;
    let backend = seatkeeper::backend::hooked::Hooked {
        inner: microsoft(&served.root, false, "s3cret"),
        hook: UsageLocationClearedMeanwhile {
            emulator: served.emulator.clone(),
            done: Default::default(),
        },
    };
    let team = ["a@contoso.com", "b@contoso.com", "c@contoso.com"];
    let mut desired = Desired {
        assignments: vec![assignment("team", &team, "SPB", "Add")],
        ..Default::default()
    };
    // The planner saw b's usage location; Graph refuses b's licence without one.
    let report = converge_now(&backend, &mut desired).await.unwrap();
    assert!(
        report.executed.iter().any(|e| e
            .refused
            .as_ref()
            .is_some_and(|b| b.reason.as_str() == "UsageLocationMissing")),
        "refused by the service: {:?}",
        report.executed
    );
    let reason_of = |desired: &Desired, upn: &str| {
        desired.assignments[0]
            .status
            .users
            .iter()
            .find(|u| u.user == upn)
            .and_then(|u| u.reason.clone())
    };
    assert_eq!(
        reason_of(&desired, "b@contoso.com").as_deref(),
        Some("UsageLocationMissing")
    );
    let held: Vec<String> = served.emulator.tenant().organizations[0]
        .users
        .iter()
        .filter(|u| u.licence("SPB").is_some())
        .map(|u| u.upn.clone())
        .collect();
    assert_eq!(
        held,
        ["a@contoso.com", "c@contoso.com"],
        "nothing else changed"
    );
    assert_eq!(desired.assignments[0].status.assigned, 2);
    // The next pass reads the cleared location and says the same, now from the planner,
    // without asking Graph for b again.
    let next = converge_now(&backend, &mut desired).await.unwrap();
    assert!(
        next.executed.iter().all(|e| e.refused.is_none()),
        "{:?}",
        next.executed
    );
    assert_eq!(
        reason_of(&desired, "b@contoso.com").as_deref(),
        Some("UsageLocationMissing")
    );
    let _ = served.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r08_a_real_tenants_price_is_unknown_never_made_up() {
    let t = tenant(
        &[("a@contoso.com", LOC)],
        "  - {id: sub-1, product: SPB, seats: 2, purchasedAt: '2026-11-01T00:00:00Z'}\n",
    );
    fn scenario(id: &dyn Fn(&str) -> String) -> Desired {
        Desired {
            subscriptions: vec![subscription("spb", &id("sub-1"), "SPB", 3)],
            ..Default::default()
        }
    }
    let said = |report: &Report| -> String {
        report
            .executed
            .iter()
            .map(|e| seatkeeper::wording::describe(&e.action.op))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The simulator knows its list prices; the Microsoft backend does not read Partner
    // Center's, so it shows none.
    let mut embedded = scenario(&|id| id.to_string());
    let backend = Embedded::new(t.clone(), None, Arc::new(FixedClock::new(now())));
    let report = converge_now(&backend, &mut embedded).await.unwrap();
    assert!(said(&report).contains("EUR"), "{}", said(&report));
    let served = emulate(&t, Faults::default()).await;
    let ms = microsoft(&served.root, true, "s3cret");
    let mut desired = scenario(&|id| seatkeeper::emulator::subscription_id(id));
    let report = converge_now(&ms, &mut desired).await.unwrap();
    let words = said(&report);
    assert!(
        words.contains("seats 2 → 3") && words.contains("price unknown") && !words.contains("EUR"),
        "{words}"
    );
    let cost = desired.subscriptions[0]
        .status
        .last_seat_change
        .clone()
        .expect("the change is on record");
    assert_eq!((cost.charged_now, cost.new_monthly_amount), (None, None));
    let _ = served.stop.send(true);
}

/// The repository, where the README's commands run.
fn repo() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README's block that opens with `fence` (```sh or ```) and whose first line starts with
/// `first`, up to its closing fence.
fn readme_block(fence: &str, first: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let block = readme
        .split(&format!("{fence}\n"))
        .find(|b| b.starts_with(first))
        .unwrap_or_else(|| panic!("the README's block ({fence}, starting with {first:?})"));
    block[..block.find("```").unwrap_or(block.len())].to_string()
}

/// One command of a README block as a person runs it in the repository: `cargo run -q --`
/// is the built binary, anything else goes to `sh`; `/tmp/` becomes `tmp`. Returns the line
/// as run, and the command.
fn readme_command(line: &str, tmp: &std::path::Path) -> (String, std::process::Command) {
    let line = line.replace("/tmp/", &format!("{}/", tmp.display()));
    let mut command = match line.strip_prefix("cargo run -q -- ") {
        Some(args) => {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_seatkeeper"));
            c.args(args.split_whitespace());
            c
        }
        None => {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", &line]);
            c
        }
    };
    command.current_dir(repo());
    (line, command)
}

/// The commands of a README block: its lines that are neither comments nor empty.
fn commands(block: &str) -> impl Iterator<Item = &str> {
    block
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
}

/// The README's emulator sandbox, run as written (issue: the README's emulator path rewrote the
/// tracked example tenant, and its manifests were Blocked `SubscriptionNotFound` there).
#[test]
fn readme_sandbox_runs_as_written() {
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let block = readme_block("```sh", "# terminal 1");
    let tracked = std::fs::read(repo().join("examples/tenant.yaml")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut emulator = None;
    let mut ran = vec![];
    for line in commands(&block) {
        let (line, mut command) = readme_command(line, tmp.path());
        let verb = line
            .strip_prefix("cargo run -q -- ")
            .and_then(|a| a.split_whitespace().next())
            .unwrap_or("sh");
        if verb == "emulate" {
            let mut child = command.stderr(std::process::Stdio::null()).spawn().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect("127.0.0.1:8443").is_err() {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "the emulator stopped (is 127.0.0.1:8443 taken?)"
                );
                assert!(
                    std::time::Instant::now() < deadline,
                    "the emulator did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            emulator = Some(Killed(child));
            continue;
        }
        let out = command.output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let expected = match verb {
            "plan" | "apply" => 3,
            _ => 0,
        };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{line}\n{stdout}\n{stderr}"
        );
        assert!(!stdout.contains("SubscriptionNotFound"), "{line}\n{stdout}");
        if verb == "export" {
            assert!(stdout.contains("kind: Subscription"), "{stdout}");
            assert!(
                stdout.contains("5d2c6e1a-0b7f-4c3e-9a51-2f8e4b6d0101"),
                "{stdout}"
            );
        }
        ran.push(verb.to_string());
    }
    assert!(emulator.is_some(), "the sandbox starts the emulator");
    assert_eq!(ran, ["sh", "plan", "apply", "export"]);
    assert_eq!(
        std::fs::read(repo().join("examples/tenant.yaml")).unwrap(),
        tracked,
        "the tracked example tenant is left as it is"
    );
}

/// Run the README's `sh` block marked `marker` in a scratch directory, every command having to
/// succeed; the directory and how many `cargo run` lines it held.
fn run_readme_block(marker: &str) -> (tempfile::TempDir, usize) {
    let block = readme_block("```sh", marker);
    let tmp = tempfile::tempdir().unwrap();
    let mut applies = 0;
    for line in commands(&block) {
        let (line, mut command) = readme_command(line, tmp.path());
        applies += usize::from(line.starts_with("cargo run"));
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{line}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (tmp, applies)
}

/// The README's worked example of `userSelector`, run as written.
#[test]
fn readme_directory_example_runs_as_written() {
    let (tmp, applies) = run_readme_block("# directory example");
    assert_eq!(applies, 3);
    let tenant = TenantFile::load(&tmp.path().join("directory.yaml")).unwrap();
    let org = &tenant.organizations[0];
    let holders: Vec<&str> = org
        .users
        .iter()
        .filter(|u| u.licence("SPB").is_some())
        .map(|u| u.upn.as_str())
        .collect();
    assert_eq!(
        holders,
        ["cem@contoso.com"],
        "bob moved, ann disabled, cem back"
    );
    assert_eq!(
        org.subscriptions[0].seats, 1,
        "the seat freed inside the window went"
    );
}

#[test]
fn readme_groups_example_runs_as_written() {
    let (tmp, applies) = run_readme_block("# groups example");
    assert_eq!(applies, 2);
    let tenant = TenantFile::load(&tmp.path().join("groups.yaml")).unwrap();
    let org = &tenant.organizations[0];
    let inherited: Vec<&str> = org
        .users
        .iter()
        .filter(|u| {
            u.licence("SPE_E3")
                .is_some_and(|l| l.by_group && l.disabled_plans == ["SWAY"])
        })
        .map(|u| u.upn.as_str())
        .collect();
    assert_eq!(
        inherited,
        [
            "ann@contoso.com",
            "bob@contoso.com",
            "cem@contoso.com",
            "dee@contoso.com"
        ],
        "every member inherits E3 without Sway, dee once she joined"
    );
    assert_eq!(
        org.subscriptions[0].seats, 4,
        "a seat bought for each member"
    );
}

/// The README's shown `plan` of the autoscaling example is what `plan` prints today: each
/// line the README shows after a `$ ` command is printed by it, in that order.
#[test]
fn readme_autoscale_sample_output_is_current() {
    readme_sample_output_is_current("$ cp examples/autoscale/tenant.yaml");
}

#[test]
fn readme_report_sample_output_is_current() {
    readme_sample_output_is_current("$ cargo run -q -- report ");
}

/// The README's sample session starting with `first`: each `$ ` line is run as a person runs
/// it, and each line shown after it must be printed, in that order.
fn readme_sample_output_is_current(first: &str) {
    let block = readme_block("```", first);
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = block.lines().peekable();
    let mut compared = 0;
    while let Some(line) = lines.next() {
        let shown = line.strip_prefix("$ ").expect("a command line");
        let (command_line, mut command) = readme_command(shown, tmp.path());
        let out = command.output().unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        let mut at = 0;
        while let Some(expected) = lines.next_if(|l| !l.starts_with("$ ")) {
            let found = printed[at..]
                .find(&format!("{expected}\n"))
                .unwrap_or_else(|| {
                    panic!("the README shows {expected:?}; {command_line} printed:\n{printed}")
                });
            at += found + expected.len();
            compared += 1;
        }
    }
    assert!(compared >= 3, "the sample shows output");
}

/// a, b and c in group `sales`; c has no usage location; SPE_E3 with 2 seats.
fn grouped_tenant(product: &str) -> TenantFile {
    let mut t = tenant(
        &[
            ("a@contoso.com", LOC),
            ("b@contoso.com", LOC),
            ("c@contoso.com", ""),
        ],
        &format!("  - {{id: sub-1, product: {product}, seats: 2}}\n"),
    );
    t.organizations[0].groups.push(seatkeeper::domain::Group {
        id: None,
        name: "sales".into(),
        members: ["a", "b", "c"].map(|u| format!("{u}@contoso.com")).to_vec(),
        licenses: vec![],
        processing: false,
    });
    t
}

fn for_group(
    product: &str,
) -> Declared<AssignmentIntent, seatkeeper::api::LicenseAssignmentStatus> {
    Declared {
        meta: meta("sales"),
        spec: serde_json::from_value(json!({"organization": "contoso.com", "groups": ["sales"],
            "licenses": [{"product": product}]}))
        .unwrap(),
        status: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_licences_wait_for_seats_then_members_inherit_them_or_are_in_error_on_both_backends()
{
    let t = grouped_tenant("SPE_E3");
    // Two seats for three members: the group waits, nobody is left in CountViolation.
    fn waiting(_: &dyn Fn(&str) -> String) -> Desired {
        Desired {
            assignments: vec![for_group("SPE_E3")],
            ..Default::default()
        }
    }
    let s = same(&t, waiting).await;
    assert_eq!(s.resources[0].2.as_deref(), Some("InsufficientSeats"));
    assert_eq!(s.group_licences, vec![("sales".into(), vec![])]);
    assert_eq!(s.groups, vec![("sales".into(), 3, 0, 0, None)]);
    // A third seat: the group gets SPE_E3; a and b inherit it, c (no usage location) is in
    // error, mapped to UsageLocationMissing.
    fn seated(id: &dyn Fn(&str) -> String) -> Desired {
        Desired {
            subscriptions: vec![subscription("e3", &id("sub-1"), "SPE_E3", 3)],
            assignments: vec![for_group("SPE_E3")],
            ..Default::default()
        }
    }
    let s = same(&t, seated).await;
    assert_eq!(s.seats, vec![("SPE_E3".into(), 3)]);
    assert_eq!(
        s.group_licences,
        vec![("sales".into(), vec!["SPE_E3".into()])]
    );
    assert_eq!(
        s.licences,
        vec![
            ("a@contoso.com".into(), vec!["SPE_E3".into()]),
            ("b@contoso.com".into(), vec!["SPE_E3".into()]),
            ("c@contoso.com".into(), vec![]),
        ]
    );
    assert_eq!(
        s.groups,
        vec![("sales".into(), 3, 2, 1, Some("UsageLocationMissing".into()))]
    );
    assert_eq!(s.resources[1].0, "sales");
    assert_eq!(s.resources[1].2.as_deref(), Some("UsageLocationMissing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_licensing_needs_entra_p1_on_both_backends() {
    // Business Standard includes no Microsoft Entra ID P1.
    let t = grouped_tenant("O365_BUSINESS_PREMIUM");
    fn scenario(_: &dyn Fn(&str) -> String) -> Desired {
        Desired {
            assignments: vec![for_group("O365_BUSINESS_PREMIUM")],
            ..Default::default()
        }
    }
    let s = same(&t, scenario).await;
    assert_eq!(
        s.resources[0].2.as_deref(),
        Some("GroupLicensingUnavailable")
    );
    assert_eq!(s.group_licences, vec![("sales".into(), vec![])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_group_removes_its_licence_from_members_holding_it_through_the_group_alone_on_both_backends()
 {
    let mut t = grouped_tenant("SPE_E3");
    t.organizations[0].subscriptions[0].seats = 5;
    // b also holds SPE_E3 directly: it keeps it.
    t.organizations[0].users[1].licenses = vec![seatkeeper::domain::Licence::new("SPE_E3", &[])];
    t.organizations[0].users[2].usage_location = Some("NL".into());
    let mut results = vec![];
    for microsoft_backend in [false, true] {
        let mut desired = Desired {
            assignments: vec![for_group("SPE_E3")],
            ..Default::default()
        };
        let served = emulate(&t, Faults::default()).await;
        let embedded = Embedded::new(t.clone(), None, Arc::new(FixedClock::new(now())));
        let ms = microsoft(&served.root, true, "s3cret");
        let run = async |desired: &mut Desired| {
            if microsoft_backend {
                converge_now(&ms, desired).await.unwrap()
            } else {
                converge_now(&embedded, desired).await.unwrap()
            }
        };
        let first = run(&mut desired).await;
        assert!(first.converged);
        assert_eq!(desired.assignments[0].status.owned_groups.len(), 1);
        // The declaration drops the group (its removal is acknowledged: a and c lose their
        // only data-bearing licence, R28).
        desired.assignments[0].spec.groups.clear();
        desired.assignments[0].spec.users = vec!["b@contoso.com".into()];
        desired.assignments[0].meta.flags.acknowledge_downgrade = true;
        let report = run(&mut desired).await;
        let tenant = if microsoft_backend {
            served.emulator_tenant()
        } else {
            embedded.tenant()
        };
        let _ = served.stop.send(true);
        let mut s = seen(&report, &desired, &tenant);
        s.users.clear();
        let removed: Vec<String> = desired.assignments[0]
            .status
            .removals
            .iter()
            .map(|r| r.user.clone())
            .collect();
        results.push((
            s,
            removed,
            desired.assignments[0].status.owned_groups.clone(),
        ));
    }
    assert_eq!(results[0], results[1], "the two backends disagree");
    let (s, removed, owned) = &results[0];
    assert_eq!(s.group_licences, vec![("sales".into(), vec![])]);
    assert_eq!(
        s.licences,
        vec![
            ("a@contoso.com".into(), vec![]),
            ("b@contoso.com".into(), vec!["SPE_E3".into()]),
            ("c@contoso.com".into(), vec![]),
        ]
    );
    assert_eq!(
        removed,
        &["a@contoso.com", "c@contoso.com"],
        "R19: each recorded"
    );
    assert!(owned.is_empty());
}

/// Two customer tenants of one app: the emulator refuses writes past the app-wide budget with
/// `x-ms-throttle-scope: Application/…`, whatever each tenant's own budget says. Clients that
/// share the app's budget stay under it; clients that do not are throttled app-wide, adapt,
/// and still converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_the_app_wide_write_budget_spans_tenants_and_clients_sharing_it_stay_under_it() {
    use seatkeeper::backend::microsoft::fleet::AppBudget;
    let mut y = String::from("organizations:\n");
    for d in ["contoso.com", "fabrikam.com"] {
        y += &format!("- domain: {d}\n  paymentMethodOnFile: true\n  users:\n");
        for i in 0..30 {
            y += &format!("  - {{upn: u{i}@{d}{LOC}}}\n");
        }
        y += "  subscriptions:\n  - {id: sub-D, product: SPB, seats: 30}\n"
            .replace("sub-D", &format!("sub-{d}"))
            .as_str();
    }
    let t = TenantFile::parse(&y, "fleet.yaml").unwrap();
    // Wide enough that a loaded machine's slow answer never spans a window.
    let window = Duration::from_secs(2);
    for shared in [true, false] {
        let served = emulate(
            &t,
            Faults {
                // Each tenant alone may write more than the app across both.
                write_budget: Some(100),
                window,
                app_write_budget: Some(24),
                app_window: window,
                ..Faults::default()
            },
        )
        .await;
        let app = Arc::new(AppBudget::new((24, window)));
        let client = |d: &str| {
            let mut c = config(&served.root, false, "s3cret");
            c.organization = d.into();
            c.tenant_id = d.into();
            c.write_budget = Some((100, window));
            c.app_budget = shared.then(|| app.clone());
            Microsoft::new(c).unwrap()
        };
        let (a, b) = (client("contoso.com"), client("fabrikam.com"));
        let desired = |d: &str| {
            let users: Vec<String> = (0..30).map(|i| format!("u{i}@{d}")).collect();
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            let mut la = assignment("all", &users, "SPB", "Add");
            la.spec.organization = d.into();
            Desired {
                assignments: vec![la],
                ..Default::default()
            }
        };
        let (mut da, mut db) = (desired("contoso.com"), desired("fabrikam.com"));
        let (ra, rb) = tokio::join!(converge_now(&a, &mut da), converge_now(&b, &mut db));
        assert!(
            ra.unwrap().converged && rb.unwrap().converged,
            "shared: {shared}"
        );
        for d in ["contoso.com", "fabrikam.com"] {
            let tenant = served.emulator.tenant();
            let o = tenant.organizations.iter().find(|o| o.domain == d).unwrap();
            assert_eq!(o.consumed("SPB"), 30, "{d}, shared: {shared}");
        }
        if shared {
            assert_eq!(
                served.emulator.app_throttled(),
                0,
                "paced under the app's budget"
            );
        } else {
            assert!(
                served.emulator.app_throttled() > 0,
                "60 writes against 24 per window, unpaced: the app-wide limit answers"
            );
        }
        let _ = served.stop.send(true);
    }
}
