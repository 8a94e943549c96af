//! End to end: `seatkeeper run` (its run function, on the real runtime) against the in-process
//! API server, driven like a user with kube's client; the embedded backend keeps its tenant in a
//! file, as `--state` does in a cluster.

mod support;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use seatkeeper::api::{AddOn, LicenseAssignment, Subscription};
use seatkeeper::controller::{self, RunConfig, leader::Election};
use seatkeeper::planner::Options;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::apiserver::{ApiServer, Outage};
use tokio::sync::watch;

const ORG: &str = "contoso.com";
const NS: &str = "team-a";

struct Replica {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    metrics: std::net::SocketAddr,
}

impl Replica {
    /// A clean stop (SIGTERM).
    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
    /// A crash: no goodbye, the Lease stays until it expires. (The stop channel stays open:
    /// a crashed process never sees its closing either.)
    fn kill(self) {
        self.task.abort();
        std::mem::forget(self.stop);
    }
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn start(server: &ApiServer, state: &Path, identity: &str, resync: Duration) -> Replica {
    start_reading_secrets_in(server, state, identity, resync, None)
}

/// A replica of a sharded deployment (`run --sharding`).
fn start_sharded(server: &ApiServer, state: &Path, identity: &str) -> Replica {
    launch(server, state, identity, Duration::from_secs(30), None, true)
}

/// `start`, reading Secrets only in `secret_namespaces` (`run --secret-namespaces`).
fn start_reading_secrets_in(
    server: &ApiServer,
    state: &Path,
    identity: &str,
    resync: Duration,
    secret_namespaces: Option<&[&str]>,
) -> Replica {
    launch(server, state, identity, resync, secret_namespaces, false)
}

fn launch(
    server: &ApiServer,
    state: &Path,
    identity: &str,
    resync: Duration,
    secret_namespaces: Option<&[&str]>,
    sharding: bool,
) -> Replica {
    if std::env::var("E2E_LOG").is_ok() {
        use tracing_subscriber::layer::SubscriberExt;
        let filter: tracing_subscriber::filter::Targets = std::env::var("E2E_LOG")
            .unwrap()
            .parse()
            .unwrap_or_default();
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::registry()
                .with(tracing_subscriber::fmt::layer())
                .with(filter),
        );
    }
    let (stop, rx) = watch::channel(false);
    let metrics = free_port();
    let cfg = RunConfig {
        sharding,
        graph_budgets: Default::default(),
        state: state.to_path_buf(),
        resync,
        options: Options {
            require_namespace_binding: true,
            ..Options::default()
        },
        metrics_addr: metrics,
        lock_timeout: Some(Duration::from_secs(5)),
        shutdown_timeout: Duration::from_secs(5),
        secret_namespaces: seatkeeper::controller::watches::SecretNamespaces(
            secret_namespaces.map(|l| l.iter().map(|n| n.to_string()).collect()),
        ),
        election: Some(Election {
            namespace: "seatkeeper".into(),
            name: "seatkeeper".into(),
            identity: identity.into(),
            duration: Duration::from_secs(2),
            renew: Duration::from_millis(300),
        }),
    };
    let client = server.client();
    let task = tokio::spawn(async move {
        controller::run(client, cfg, rx).await.unwrap();
    });
    Replica {
        stop,
        task,
        metrics,
    }
}

struct World {
    server: ApiServer,
    _dir: tempfile::TempDir,
    state: PathBuf,
}

const USERS: usize = 10;

fn tenant_yaml(extra_subs: &str) -> String {
    let mut y = format!("organizations:\n- domain: {ORG}\n  paymentMethodOnFile: true\n  users:\n");
    for i in 0..USERS {
        y += &format!("  - {{upn: u{i}@{ORG}, usageLocation: NL}}\n");
    }
    y += "  - {upn: nolocation@contoso.com}\n";
    y += "  subscriptions:\n  - {id: sub-e3, product: ENTERPRISEPACK, seats: 5}\n";
    y += extra_subs;
    y
}

async fn world(extra_subs: &str) -> World {
    let server = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tenant.yaml");
    std::fs::write(&state, tenant_yaml(extra_subs)).unwrap();
    let client = server.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    for (name, labels) in [
        // Events of cluster-scoped objects (Organizations) go to "default", as in a cluster.
        ("default", json!({})),
        ("seatkeeper", json!({})),
        (NS, json!({"seatkeeper.dev/organization": ORG})),
        ("unbound", json!({})),
    ] {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
    }
    World {
        server,
        _dir: dir,
        state,
    }
}

impl World {
    fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.server.client(), ns)
    }

    async fn create(&self, ns: &str, doc: Value) {
        let kind = doc["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "Subscription" => {
                let o: Subscription = serde_json::from_value(doc).unwrap();
                self.api::<Subscription>(ns)
                    .create(&PostParams::default(), &o)
                    .await
                    .unwrap();
            }
            "LicenseAssignment" => {
                let o: LicenseAssignment = serde_json::from_value(doc).unwrap();
                self.api::<LicenseAssignment>(ns)
                    .create(&PostParams::default(), &o)
                    .await
                    .unwrap();
            }
            _ => {
                let o: AddOn = serde_json::from_value(doc).unwrap();
                self.api::<AddOn>(ns)
                    .create(&PostParams::default(), &o)
                    .await
                    .unwrap();
            }
        }
    }

    fn object(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.server
            .get(&format!("seatkeeper.dev/v1alpha1/{plural}"), ns, name)
    }

    fn tenant(&self) -> Value {
        let text = std::fs::read_to_string(&self.state).unwrap();
        serde_saphyr::from_str(&text).unwrap()
    }

    fn holders(&self, product: &str) -> usize {
        self.tenant()["organizations"][0]["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| {
                u["licenses"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|l| l["product"] == product))
            })
            .count()
    }

    fn subscription(&self, id: &str) -> Value {
        self.tenant()["organizations"][0]["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// The object reaches Blocked=True with `reason`, and a Warning event says so.
    async fn blocked_with_event(&self, plural: &str, ns: &str, name: &str, reason: &str) {
        eventually(&format!("{name} blocked by {reason}"), || {
            self.object(plural, ns, name)
                .is_some_and(|o| condition(&o, "Blocked") == ("True".into(), reason.into()))
        })
        .await;
        eventually(&format!("a {reason} event for {name}"), || {
            self.event_reasons(name).contains(&reason.to_string())
        })
        .await;
    }

    fn event_reasons(&self, name: &str) -> Vec<String> {
        self.server
            .objects("events.k8s.io/v1/events")
            .iter()
            .filter(|e| e["regarding"]["name"] == name)
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

fn condition(obj: &Value, type_: &str) -> (String, String) {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .unwrap_or_default()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sub(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "Subscription",
        "metadata": {"name": name}, "spec": spec})
}

fn lasg(name: &str, users: std::ops::Range<usize>, product: &str, extra: Value) -> Value {
    let users: Vec<String> = users.map(|i| format!("u{i}@{ORG}")).collect();
    let mut spec = json!({"organization": ORG, "users": users, "licenses": [{"product": product}]});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "LicenseAssignment",
        "metadata": {"name": name}, "spec": spec})
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (code, body)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_buys_assigns_reports_and_stays_idle_after_convergence() {
    let w = world("").await;
    let r = start(&w.server, &w.state, "a", Duration::from_secs(1));
    eventually("ready", || {
        futures::executor::block_on(http_get(r.metrics, "/readyz")).0 == 200
    })
    .await;
    w.create(NS, sub("e3", json!({"organization": ORG, "product": "ENTERPRISEPACK", "subscriptionId": "sub-e3", "seats": 8}))).await;
    w.create(NS, lasg("staff", 0..7, "ENTERPRISEPACK", json!({})))
        .await;
    eventually("both Ready", || {
        let s = w.object("subscriptions", NS, "e3");
        let l = w.object("licenseassignments", NS, "staff");
        s.is_some_and(|s| condition(&s, "Ready").0 == "True")
            && l.is_some_and(|l| condition(&l, "Ready").0 == "True")
    })
    .await;
    assert_eq!(w.subscription("sub-e3")["seats"], 8);
    assert_eq!(w.holders("ENTERPRISEPACK"), 7);
    let s = w.object("subscriptions", NS, "e3").unwrap();
    assert_eq!(s["metadata"]["finalizers"][0], "seatkeeper.dev/cleanup");
    assert_eq!(s["status"]["observedGeneration"], 1);
    assert_eq!(s["status"]["seats"]["assigned"], 7);
    assert!(
        s["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["manager"] == "seatkeeper" && f["subresource"] == "status")
    );
    assert!(w.event_reasons("e3").contains(&"SeatsChanged".to_string()));
    assert!(
        w.event_reasons("staff")
            .contains(&"LicensesChanged".to_string())
    );

    // Idle: over several resyncs (1 s each) nothing is written, to Kubernetes or the backend.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status_writes = w.server.status_writes();
    let tenant = std::fs::read_to_string(&w.state).unwrap();
    let (_, before) = http_get(r.metrics, "/metrics").await;
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let (_, after) = http_get(r.metrics, "/metrics").await;
    assert_eq!(
        w.server.status_writes(),
        status_writes,
        "status writes at idle"
    );
    assert_eq!(
        std::fs::read_to_string(&w.state).unwrap(),
        tenant,
        "backend writes at idle"
    );
    let writes = |t: &str| {
        metric(t, "seatkeeper_backend_calls_total")
            - metric(t, "seatkeeper_backend_calls_total{operation=\"snapshot\"}")
    };
    assert_eq!(writes(&before), writes(&after));
    assert!(
        metric(&after, "seatkeeper_reconciles_total")
            > metric(&before, "seatkeeper_reconciles_total"),
        "resyncs still look at the backend"
    );
    assert!(
        after.contains(
            "seatkeeper_seats_assigned{organization=\"contoso.com\",product=\"ENTERPRISEPACK\"} 7"
        ),
        "{after}"
    );
    // Showback and the cost of free seats, by namespace and product (never per object).
    assert!(
        after.contains(&format!(
            "seatkeeper_namespace_seats{{organization=\"contoso.com\",namespace=\"{NS}\"}} 7"
        )),
        "{after}"
    );
    assert!(
        after.contains(
            "seatkeeper_free_seats_monthly_cost{organization=\"contoso.com\",product=\"ENTERPRISEPACK\",currency=\"EUR\"} 23.0"
        ),
        "{after}"
    );
    assert!(
        !after.contains("seatkeeper_blocked_resources{"),
        "nothing Blocked: {after}"
    );
    assert_eq!(http_get(r.metrics, "/healthz").await.0, 200);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_blocked_reasons_surface_in_conditions_and_events() {
    let w = world(concat!(
        "  - {id: sub-reseller, product: SPE_E3, seats: 2, channel: Reseller}\n",
        "  - {id: sub-trial, product: O365_BUSINESS_PREMIUM, seats: 5, trial: true}\n",
        "  - {id: sub-credit, product: EXCHANGESTANDARD, seats: 5, creditCheck: Pending}\n",
        "  - {id: sub-prepaid, product: SPB, seats: 5, channel: Prepaid}\n",
        "  - {id: sub-self, product: O365_BUSINESS_ESSENTIALS, seats: 1, channel: SelfService}\n",
    ))
    .await;
    let r = start(&w.server, &w.state, "a", Duration::from_secs(60));
    w.create(NS, sub("reseller", json!({"organization": ORG, "product": "SPE_E3", "subscriptionId": "sub-reseller", "seats": 4}))).await;
    w.create(NS, sub("trial", json!({"organization": ORG, "product": "O365_BUSINESS_PREMIUM", "subscriptionId": "sub-trial", "seats": 8}))).await;
    w.create(NS, sub("credit", json!({"organization": ORG, "product": "EXCHANGESTANDARD", "subscriptionId": "sub-credit", "seats": 8}))).await;
    w.create("unbound", sub("stray", json!({"organization": ORG, "product": "ENTERPRISEPACK", "subscriptionId": "sub-e3", "seats": 9}))).await;
    w.create(NS, lasg("too-many", 0..USERS, "ENTERPRISEPACK", json!({})))
        .await;
    w.create(NS, sub("prepaid", json!({"organization": ORG, "product": "SPB", "subscriptionId": "sub-prepaid", "seats": 3}))).await;
    w.create(NS, sub("self", json!({"organization": ORG, "product": "O365_BUSINESS_ESSENTIALS", "subscriptionId": "sub-self", "seats": 3}))).await;
    let mut nolocation = lasg("nolocation", 0..0, "SPB", json!({}));
    nolocation["spec"]["users"] = json!(["nolocation@contoso.com"]);
    w.create(NS, nolocation).await;
    let expect = [
        ("subscriptions", NS, "reseller", "ResellerManaged"),
        ("subscriptions", NS, "trial", "Trial"),
        ("subscriptions", NS, "credit", "CreditCheckPending"),
        (
            "subscriptions",
            "unbound",
            "stray",
            "OrganizationNotPermitted",
        ),
        ("licenseassignments", NS, "too-many", "InsufficientSeats"),
        ("subscriptions", NS, "prepaid", "Prepaid"),
        ("subscriptions", NS, "self", "SelfServicePurchase"),
        (
            "licenseassignments",
            NS,
            "nolocation",
            "UsageLocationMissing",
        ),
    ];
    for (plural, ns, name, reason) in expect {
        w.blocked_with_event(plural, ns, name, reason).await;
    }
    // Nothing was changed in the blocked subscriptions.
    assert_eq!(w.subscription("sub-reseller")["seats"], 2);
    assert_eq!(w.subscription("sub-e3")["seats"], 5);
    assert_eq!(w.subscription("sub-prepaid")["seats"], 5);

    // Binding the namespace is watched: the stray resource is acted on without a resync.
    let nss: Api<Namespace> = Api::all(w.server.client());
    nss.patch(
        "unbound",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"seatkeeper.dev/organization": ORG}}})),
    )
    .await
    .unwrap();
    eventually("stray acted on once bound", || {
        w.subscription("sub-e3")["seats"] == 9
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_r26_plan_change_waits_for_seats_then_moves_everyone_make_before_break() {
    let w = world("  - {id: sub-m365, product: SPE_E3, seats: 3}\n").await;
    let r = start(&w.server, &w.state, "a", Duration::from_secs(60));
    // Five users on Office 365 E3; the resource that gave it to them goes, the licences stay.
    w.create(
        NS,
        lasg(
            "e3",
            0..5,
            "ENTERPRISEPACK",
            json!({"deletionPolicy": "Retain"}),
        ),
    )
    .await;
    eventually("5 on E3", || w.holders("ENTERPRISEPACK") == 5).await;
    let las: Api<LicenseAssignment> = w.api(NS);
    las.delete("e3", &DeleteParams::default()).await.unwrap();
    eventually("e3 assignment gone", || {
        w.object("licenseassignments", NS, "e3").is_none()
    })
    .await;
    assert_eq!(w.holders("ENTERPRISEPACK"), 5);
    // Move them to Microsoft 365 E3: only 3 seats for 5 users, so nobody moves.
    w.create(NS, sub("m365", json!({"organization": ORG, "product": "SPE_E3", "subscriptionId": "sub-m365", "seats": 3}))).await;
    w.create(NS, lasg("move", 0..5, "SPE_E3", json!({"mode": "Replace"})))
        .await;
    eventually("blocked on seats", || {
        w.object("licenseassignments", NS, "move").is_some_and(|o| {
            condition(&o, "Blocked") == ("True".into(), "InsufficientSeats".into())
        })
    })
    .await;
    assert_eq!(w.holders("SPE_E3"), 0, "nobody moves until everyone can");
    let subs: Api<Subscription> = w.api(NS);
    subs.patch(
        "m365",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"seats": 5}})),
    )
    .await
    .unwrap();
    eventually("all moved", || {
        w.holders("SPE_E3") == 5 && w.holders("ENTERPRISEPACK") == 0
    })
    .await;
    eventually("move Ready", || {
        w.object("licenseassignments", NS, "move")
            .is_some_and(|o| condition(&o, "Ready").0 == "True")
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_deletion_policies_unassign_retain_cancel_orphan_and_refused() {
    let w = world(concat!(
        "  - id: sub-base\n    product: O365_BUSINESS_PREMIUM\n    seats: 5\n",
        "    addOns: [{id: addon-1, product: EXCHANGEARCHIVE_ADDON, quantity: 2}]\n",
    ))
    .await;
    let r = start(&w.server, &w.state, "a", Duration::from_secs(60));
    // Its users hold nothing else: losing their mailboxes is acknowledged (R28).
    let mut unassign = lasg("unassign", 0..2, "ENTERPRISEPACK", json!({}));
    unassign["metadata"]["annotations"] = json!({"seatkeeper.dev/acknowledge-downgrade": "true"});
    w.create(NS, unassign).await;
    w.create(
        NS,
        lasg(
            "retain",
            2..4,
            "ENTERPRISEPACK",
            json!({"deletionPolicy": "Retain"}),
        ),
    )
    .await;
    w.create(NS, sub("bought", json!({"organization": ORG, "product": "SPE_E3", "seats": 2, "deletionPolicy": "Cancel"}))).await;
    w.create(NS, sub("orphan", json!({"organization": ORG, "product": "EXCHANGESTANDARD", "seats": 1, "deletionPolicy": "Orphan"}))).await;
    w.create(NS, json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "AddOn", "metadata": {"name": "archive"},
        "spec": {"organization": ORG, "product": "EXCHANGEARCHIVE_ADDON", "type": "Traditional",
            "subscriptionRef": {"name": "base"}, "addOnId": "addon-1", "quantity": 2, "deletionPolicy": "Cancel"}})).await;
    w.create(NS, sub("base", json!({"organization": ORG, "product": "O365_BUSINESS_PREMIUM", "subscriptionId": "sub-base", "seats": 5}))).await;
    eventually("assigned and bought", || {
        w.holders("ENTERPRISEPACK") == 4
            && w.object("subscriptions", NS, "bought")
                .is_some_and(|o| o["status"]["subscriptionId"].is_string())
            && w.object("subscriptions", NS, "orphan")
                .is_some_and(|o| o["status"]["subscriptionId"].is_string())
            && w.object("addons", NS, "archive")
                .is_some_and(|o| condition(&o, "Ready").0 == "True")
    })
    .await;
    let bought = w.object("subscriptions", NS, "bought").unwrap()["status"]["subscriptionId"]
        .as_str()
        .unwrap()
        .to_string();
    let orphan = w.object("subscriptions", NS, "orphan").unwrap()["status"]["subscriptionId"]
        .as_str()
        .unwrap()
        .to_string();

    let las: Api<LicenseAssignment> = w.api(NS);
    let subs: Api<Subscription> = w.api(NS);
    let add_ons: Api<AddOn> = w.api(NS);
    las.delete("unassign", &DeleteParams::default())
        .await
        .unwrap();
    las.delete("retain", &DeleteParams::default())
        .await
        .unwrap();
    subs.delete("bought", &DeleteParams::default())
        .await
        .unwrap();
    subs.delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    add_ons
        .delete("archive", &DeleteParams::default())
        .await
        .unwrap();
    eventually("deleted", || {
        ["unassign", "retain"]
            .iter()
            .all(|n| w.object("licenseassignments", NS, n).is_none())
            && ["bought", "orphan"]
                .iter()
                .all(|n| w.object("subscriptions", NS, n).is_none())
    })
    .await;
    assert_eq!(
        w.holders("ENTERPRISEPACK"),
        2,
        "Unassign removed 2, Retain kept 2"
    );
    assert_eq!(w.subscription(&bought)["status"], "Canceled");
    assert_eq!(w.subscription(&orphan)["status"], "Active");

    // A traditional add-on cannot be cancelled by an admin (R23): the status says so and the
    // object waits with its reason; switching to Orphan lets it go.
    eventually("add-on deletion explained", || {
        w.object("addons", NS, "archive").is_some_and(|o| {
            condition(&o, "Blocked") == ("True".into(), "RemovalRequiresSupport".into())
        })
    })
    .await;
    add_ons
        .patch(
            "archive",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"deletionPolicy": "Orphan"}})),
        )
        .await
        .unwrap();
    eventually("add-on released", || {
        w.object("addons", NS, "archive").is_none()
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_drift_made_outside_seatkeeper_is_corrected_at_resync() {
    let w = world("").await;
    let r = start(&w.server, &w.state, "a", Duration::from_secs(1));
    w.create(NS, sub("e3", json!({"organization": ORG, "product": "ENTERPRISEPACK", "subscriptionId": "sub-e3", "seats": 6}))).await;
    w.create(NS, lasg("staff", 0..3, "ENTERPRISEPACK", json!({})))
        .await;
    eventually("converged", || {
        w.holders("ENTERPRISEPACK") == 3 && w.subscription("sub-e3")["seats"] == 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // In the "vendor portal": seats lowered and a licence removed by hand.
    let text = std::fs::read_to_string(&w.state).unwrap();
    let mut tenant: Value = serde_saphyr::from_str(&text).unwrap();
    for s in tenant["organizations"][0]["subscriptions"]
        .as_array_mut()
        .unwrap()
    {
        if s["id"] == "sub-e3" {
            s["seats"] = json!(4);
        }
    }
    tenant["organizations"][0]["users"][0]["licenses"] = json!([]);
    std::fs::write(&w.state, serde_saphyr::to_string(&tenant).unwrap()).unwrap();
    eventually("drift corrected", || {
        w.holders("ENTERPRISEPACK") == 3 && w.subscription("sub-e3")["seats"] == 6
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_new_hire_matching_a_user_selector_is_licensed_at_the_next_resync_with_a_seat_bought()
{
    let w = world("").await;
    // Everyone in Sales (u0, u1) by their department; seats follow demand plus one spare.
    let mut tenant = w.tenant();
    for i in 0..2 {
        tenant["organizations"][0]["users"][i]["department"] = json!("Sales");
    }
    std::fs::write(&w.state, serde_saphyr::to_string(&tenant).unwrap()).unwrap();
    let r = start(&w.server, &w.state, "a", Duration::from_secs(1));
    w.create(NS, sub("e3", json!({"organization": ORG, "product": "ENTERPRISEPACK", "subscriptionId": "sub-e3", "seats": 1, "autoscale": {"maxSeats": 20, "headroom": 1}}))).await;
    let mut sales = lasg(
        "sales",
        0..0,
        "ENTERPRISEPACK",
        json!({"userSelector": {"matchAttributes": {"department": "Sales"}}}),
    );
    sales["spec"].as_object_mut().unwrap().remove("users");
    w.create(NS, sales).await;
    eventually("Sales licensed", || {
        w.holders("ENTERPRISEPACK") == 2 && w.subscription("sub-e3")["seats"] == 3
    })
    .await;
    // A new hire joins Sales in the directory; nothing in the cluster changes.
    let mut tenant = w.tenant();
    tenant["organizations"][0]["users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"upn": "newhire@contoso.com", "usageLocation": "NL", "department": "Sales"}));
    std::fs::write(&w.state, serde_saphyr::to_string(&tenant).unwrap()).unwrap();
    eventually("the new hire licensed, a seat bought", || {
        w.holders("ENTERPRISEPACK") == 3 && w.subscription("sub-e3")["seats"] == 4
    })
    .await;
    // The status follows the tenant's changes (written once the pass is done).
    eventually("status counts the new hire", || {
        w.object("licenseassignments", NS, "sales")
            .is_some_and(|la| la["status"]["matched"] == 3)
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_two_replicas_one_killed_the_other_takes_over_and_nothing_is_done_twice() {
    let w = world("").await;
    let a = start(&w.server, &w.state, "a", Duration::from_secs(60));
    eventually("a leads", || {
        w.server
            .get("coordination.k8s.io/v1/leases", "seatkeeper", "seatkeeper")
            .is_some_and(|l| l["spec"]["holderIdentity"] == "a")
    })
    .await;
    let b = start(&w.server, &w.state, "b", Duration::from_secs(60));
    w.create(
        NS,
        sub(
            "m365",
            json!({"organization": ORG, "product": "SPE_E3", "seats": 3}),
        ),
    )
    .await;
    eventually("bought by a", || {
        w.object("subscriptions", NS, "m365")
            .is_some_and(|o| condition(&o, "Ready").0 == "True")
    })
    .await;
    a.kill();
    w.create(NS, lasg("staff", 0..3, "SPE_E3", json!({}))).await;
    eventually("b leads", || {
        w.server
            .get("coordination.k8s.io/v1/leases", "seatkeeper", "seatkeeper")
            .is_some_and(|l| l["spec"]["holderIdentity"] == "b")
    })
    .await;
    eventually("assigned by b", || w.holders("SPE_E3") == 3).await;
    let bought: Vec<Value> = w.tenant()["organizations"][0]["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["product"] == "SPE_E3")
        .cloned()
        .collect();
    assert_eq!(bought.len(), 1, "bought once: {bought:?}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_crash_between_purchase_and_status_write_buys_once() {
    let w = world("").await;
    // The write that would record the bought subscription's id fails once.
    w.server.fail_status_writes("subscriptionId", 1);
    let r = start(&w.server, &w.state, "a", Duration::from_secs(60));
    w.create(
        NS,
        sub(
            "m365",
            json!({"organization": ORG, "product": "SPE_E3", "seats": 3}),
        ),
    )
    .await;
    eventually("recorded after the retry", || {
        w.object("subscriptions", NS, "m365").is_some_and(|o| {
            o["status"]["subscriptionId"].is_string() && condition(&o, "Ready").0 == "True"
        })
    })
    .await;
    let bought = w.tenant()["organizations"][0]["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["product"] == "SPE_E3")
        .count();
    assert_eq!(bought, 1);
    let (_, m) = http_get(r.metrics, "/metrics").await;
    assert!(
        metric(&m, "seatkeeper_reconcile_failures_total") >= 1.0,
        "{m}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_pass_that_fails_after_its_changes_has_published_their_events() {
    let w = world("").await;
    // Every status write of the pass fails: the pass errors after the licences were assigned,
    // and the next pass finds nothing to do. Their Events must already be out.
    w.server.fail_status_writes("\"assigned\"", 3);
    let r = start(&w.server, &w.state, "a", Duration::from_secs(60));
    for g in 0..3 {
        w.create(
            NS,
            lasg(&format!("team-{g}"), g..g + 1, "ENTERPRISEPACK", json!({})),
        )
        .await;
    }
    eventually("Ready after the retry", || {
        (0..3).all(|g| {
            w.object("licenseassignments", NS, &format!("team-{g}"))
                .is_some_and(|o| condition(&o, "Ready").0 == "True")
        })
    })
    .await;
    assert_eq!(w.holders("ENTERPRISEPACK"), 3);
    for g in 0..3 {
        let reasons = w.event_reasons(&format!("team-{g}"));
        assert_eq!(
            reasons.iter().filter(|r| *r == "LicensesChanged").count(),
            1,
            "team-{g}: {reasons:?}"
        );
    }
    let (_, m) = http_get(r.metrics, "/metrics").await;
    assert!(
        metric(&m, "seatkeeper_reconcile_failures_total") >= 1.0,
        "the pass did fail: {m}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_r03_credit_check_is_looked_at_again_when_it_clears_not_at_resync() {
    let clears = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3))
        .round(jiff::Unit::Second)
        .unwrap();
    let w = world(&format!(
        "  - {{id: sub-credit, product: EXCHANGESTANDARD, seats: 5, creditCheck: Pending, creditCheckClearsAt: \"{clears}\"}}\n"
    ))
    .await;
    let r = start(&w.server, &w.state, "a", Duration::from_secs(600));
    w.create(NS, sub("credit", json!({"organization": ORG, "product": "EXCHANGESTANDARD", "subscriptionId": "sub-credit", "seats": 8}))).await;
    eventually("pending credit check reported", || {
        w.object("subscriptions", NS, "credit").is_some_and(|o| {
            condition(&o, "Blocked") == ("True".into(), "CreditCheckPending".into())
        })
    })
    .await;
    eventually("seats bought once the check cleared", || {
        w.subscription("sub-credit")["seats"] == 8
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_r04_a_product_key_secret_is_watched_and_unblocks_a_prepaid_subscription() {
    let w = world("  - {id: sub-prepaid, product: SPB, seats: 5, channel: Prepaid}\n").await;
    // No payment method on file: adding prepaid seats needs a product key (R04).
    let text = std::fs::read_to_string(&w.state)
        .unwrap()
        .replace("paymentMethodOnFile: true", "paymentMethodOnFile: false");
    std::fs::write(&w.state, text).unwrap();
    let r = start(&w.server, &w.state, "a", Duration::from_secs(600));
    w.create(NS, sub("prepaid", json!({"organization": ORG, "product": "SPB", "subscriptionId": "sub-prepaid", "seats": 7,
        "productKey": {"secretRef": {"name": "spb-key", "key": "key"}}}))).await;
    eventually("blocked without the key", || {
        w.object("subscriptions", NS, "prepaid")
            .is_some_and(|o| condition(&o, "Blocked") == ("True".into(), "Prepaid".into()))
    })
    .await;
    // The Blocked resource is counted by kind and reason, with since when (for alerts).
    eventually("the Blocked resource in the metrics", || {
        let (_, m) = futures::executor::block_on(http_get(r.metrics, "/metrics"));
        m.contains(
            "seatkeeper_blocked_resources{organization=\"contoso.com\",kind=\"Subscription\",reason=\"Prepaid\"} 1",
        ) && metric(&m, "seatkeeper_oldest_blocked_since_timestamp_seconds") > 1.7e9
    })
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = w.api(NS);
    let secret = serde_json::from_value(json!({"metadata": {"name": "spb-key"},
        "stringData": {"key": "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    eventually("seats added with the key", || {
        w.subscription("sub-prepaid")["seats"] == 7
    })
    .await;
    assert_eq!(
        w.server.secret_data_streamed(),
        0,
        "Secrets are watched as metadata only; the key is read with a GET"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_least_privilege_secrets_are_read_only_where_allowed_and_elsewhere_a_status_says_so() {
    let w = world(
        "  - {id: sub-prepaid, product: SPB, seats: 5, channel: Prepaid}\n  - {id: sub-team-b, product: O365_BUSINESS_PREMIUM, seats: 5, channel: Prepaid}\n",
    )
    .await;
    let text = std::fs::read_to_string(&w.state)
        .unwrap()
        .replace("paymentMethodOnFile: true", "paymentMethodOnFile: false");
    std::fs::write(&w.state, text).unwrap();
    // RBAC as the chart renders it by default: Secrets in the release namespace and NS only.
    w.server.allow_secrets_only_in(&["seatkeeper", NS]);
    let nss: Api<Namespace> = Api::all(w.server.client());
    let team_b: Namespace = serde_json::from_value(
        json!({"metadata": {"name": "team-b", "labels": {"seatkeeper.dev/organization": ORG}}}),
    )
    .unwrap();
    nss.create(&PostParams::default(), &team_b).await.unwrap();
    let key = json!({"metadata": {"name": "spb-key"},
        "stringData": {"key": "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"}});
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = w.api(NS);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(key).unwrap(),
        )
        .await
        .unwrap();
    // A credentials Secret outside the namespaces allowed.
    let orgs: Api<seatkeeper::api::Organization> = Api::all(w.server.client());
    let org = serde_json::from_value(json!({
        "apiVersion": "seatkeeper.dev/v1alpha1", "kind": "Organization",
        "metadata": {"name": "fabrikam"},
        "spec": {"domain": "fabrikam.com", "backend": {"microsoft": {
            "tenantId": "fabrikam.com",
            "credentials": {"clientId": "app",
                "clientSecretRef": {"namespace": "kube-system", "name": "app", "key": "secret"}}}}}
    }))
    .unwrap();
    orgs.create(&PostParams::default(), &org).await.unwrap();
    let r = start_reading_secrets_in(
        &w.server,
        &w.state,
        "a",
        Duration::from_secs(600),
        Some(&["seatkeeper", NS]),
    );
    let with_key = |id: &str| {
        json!({"organization": ORG, "product": "SPB", "subscriptionId": id, "seats": 7,
        "productKey": {"secretRef": {"name": "spb-key", "key": "key"}}})
    };
    w.create(NS, sub("prepaid", with_key("sub-prepaid"))).await;
    let mut other = with_key("sub-team-b");
    other["product"] = json!("O365_BUSINESS_PREMIUM");
    w.create("team-b", sub("other", other)).await;
    eventually("seats added with the key the controller may read", || {
        w.subscription("sub-prepaid")["seats"] == 7
    })
    .await;
    eventually("the key it may not read is named in status", || {
        w.object("subscriptions", "team-b", "other")
            .is_some_and(|o| {
                let (status, reason) = condition(&o, "Blocked");
                let message = o["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Blocked"))
                    .map(|c| c["message"].to_string())
                    .unwrap_or_default();
                status == "True"
                    && reason == "Prepaid"
                    && message.contains("team-b/spb-key")
                    && message.contains("secrets.namespaces")
            })
    })
    .await;
    eventually("the Organization names its credentials field", || {
        w.object("organizations", "", "fabrikam").is_some_and(|o| {
            condition(&o, "Blocked") == ("True".into(), "CredentialsInvalid".into())
                && o.to_string().contains("clientSecretRef")
                && o.to_string().contains("kube-system/app")
        })
    })
    .await;
    assert_eq!(
        w.subscription("sub-team-b")["seats"],
        5,
        "nothing bought without the key"
    );
    assert_eq!(
        w.server.secret_requests_forbidden(),
        0,
        "no Secret request outside the namespaces allowed"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_more_blocked_reasons_surface_in_conditions_and_events() {
    let w = world(concat!(
        "  - {id: sub-bs, product: O365_BUSINESS_PREMIUM, seats: 5}\n",
        "  - {id: sub-exo, product: EXCHANGESTANDARD, seats: 5}\n",
    ))
    .await;
    // u9 already holds Office 365 E3, given outside seatkeeper.
    let text = std::fs::read_to_string(&w.state).unwrap().replace(
        "{upn: u9@contoso.com, usageLocation: NL}",
        "{upn: u9@contoso.com, usageLocation: NL, licenses: [{product: ENTERPRISEPACK}]}",
    );
    std::fs::write(&w.state, text).unwrap();
    let r = start(&w.server, &w.state, "a", Duration::from_secs(600));
    w.create(NS, lasg("e3", 0..3, "ENTERPRISEPACK", json!({})))
        .await;
    eventually("3 assigned", || w.holders("ENTERPRISEPACK") == 4).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // younger by a second
    w.create(NS, sub("shrink", json!({"organization": ORG, "product": "ENTERPRISEPACK", "subscriptionId": "sub-e3", "seats": 2}))).await;
    let mut dup = lasg("dup", 0..1, "ENTERPRISEPACK", json!({}));
    dup["spec"]["licenses"][0]["disabledPlans"] = json!(["SWAY"]);
    w.create(NS, dup).await;
    w.create(
        NS,
        lasg("conflict", 1..2, "O365_BUSINESS_PREMIUM", json!({})),
    )
    .await;
    w.create(
        NS,
        lasg(
            "downgrade",
            9..10,
            "EXCHANGESTANDARD",
            json!({"mode": "Replace"}),
        ),
    )
    .await;
    w.create(NS, lasg("unknown", 5..6, "NO_SUCH_PRODUCT", json!({})))
        .await;
    let expect = [
        ("subscriptions", "shrink", "SeatsInUse"),
        ("licenseassignments", "dup", "DuplicateAssignment"),
        ("licenseassignments", "conflict", "ConflictingServices"),
        (
            "licenseassignments",
            "downgrade",
            "DowngradeNotAcknowledged",
        ),
        ("licenseassignments", "unknown", "ProductUnknown"),
    ];
    for (plural, name, reason) in expect {
        w.blocked_with_event(plural, NS, name, reason).await;
    }
    assert_eq!(w.subscription("sub-e3")["seats"], 5);
    assert_eq!(w.holders("ENTERPRISEPACK"), 4, "nothing removed");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_money_safety_duplicate_subscription_and_purchase_limit_reach_conditions_and_events() {
    let w = world("").await;
    let r = start(&w.server, &w.state, "a", Duration::from_secs(600));
    w.create(NS, sub("first", json!({"organization": ORG, "product": "ENTERPRISEPACK", "subscriptionId": "sub-e3", "seats": 6}))).await;
    eventually("first owns sub-e3", || {
        w.subscription("sub-e3")["seats"] == 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // younger by a second
    w.create(NS, sub("second", json!({"organization": ORG, "product": "ENTERPRISEPACK", "subscriptionId": "sub-e3", "seats": 9}))).await;
    w.create(
        NS,
        sub(
            "huge",
            json!({"organization": ORG, "product": "SPE_E3", "seats": 500}),
        ),
    )
    .await;
    w.blocked_with_event("subscriptions", NS, "second", "DuplicateSubscription")
        .await;
    w.blocked_with_event("subscriptions", NS, "huge", "PurchaseLimitExceeded")
        .await;
    let huge = w.object("subscriptions", NS, "huge").unwrap();
    let message = huge["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Blocked")
        .unwrap()["message"]
        .to_string();
    assert!(
        message.contains("500") && message.contains("limit of 100"),
        "{message}"
    );
    let first = w.object("subscriptions", NS, "first").unwrap();
    assert_eq!(condition(&first, "Ready").0, "True");
    assert_eq!(w.subscription("sub-e3")["seats"], 6, "never moved to 9");
    let bought = w.tenant()["organizations"][0]["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["product"] == "SPE_E3")
        .count();
    assert_eq!(bought, 0, "nothing bought");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_status_is_written_at_most_once_per_object_for_500_assignments() {
    let w = world("  - {id: sub-big, product: SPE_E3, seats: 500}\n").await;
    let mut text = std::fs::read_to_string(&w.state).unwrap();
    let users: String = (0..500)
        .map(|i| format!("  - {{upn: bulk{i}@{ORG}, usageLocation: NL}}\n"))
        .collect();
    text = text.replace("  users:\n", &format!("  users:\n{users}"));
    std::fs::write(&w.state, text).unwrap();
    let las: Api<LicenseAssignment> = w.api(NS);
    for i in 0..500 {
        let mut la = lasg(&format!("bulk-{i}"), 0..0, "SPE_E3", json!({}));
        la["spec"]["users"] = json!([format!("bulk{i}@{ORG}")]);
        let o: LicenseAssignment = serde_json::from_value(la).unwrap();
        las.create(&PostParams::default(), &o).await.unwrap();
    }
    let r = start(&w.server, &w.state, "a", Duration::from_secs(600));
    eventually("500 assigned and Ready", || {
        w.holders("SPE_E3") == 500
            && w.server
                .objects("seatkeeper.dev/v1alpha1/licenseassignments")
                .iter()
                .all(|o| condition(o, "Ready").0 == "True")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = w.server.status_writes();
    assert!(writes <= 500, "{writes} status writes for 500 objects");
    r.stop().await;
}

/// Counts licence calls: with it, the controller runs on a backend only this test has.
struct CountingAssigns(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl seatkeeper::backend::hooked::Hook for CountingAssigns {
    async fn before(&self, operation: &'static str) -> seatkeeper::backend::Result<()> {
        if operation == "assignLicenses" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_the_controller_runs_with_any_backend() {
    let w = world("").await;
    let clock: std::sync::Arc<dyn seatkeeper::clock::Clock> =
        std::sync::Arc::new(seatkeeper::clock::SystemClock);
    let assigns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let backend = seatkeeper::backend::hooked::Hooked {
        inner: seatkeeper::backend::embedded::Embedded::open(&w.state, clock.clone()).unwrap(),
        hook: CountingAssigns(assigns.clone()),
    };
    let (stop, rx) = watch::channel(false);
    let cfg = RunConfig {
        sharding: false,
        graph_budgets: Default::default(),
        state: PathBuf::from("/nonexistent: run_with takes the backend"),
        resync: Duration::from_secs(600),
        options: Options::default(),
        metrics_addr: free_port(),
        lock_timeout: None,
        shutdown_timeout: Duration::from_secs(5),
        secret_namespaces: Default::default(),
        election: None,
    };
    let client = w.server.client();
    let task = tokio::spawn(async move {
        controller::run_with(client, cfg, backend, clock, rx)
            .await
            .unwrap();
    });
    w.create(NS, lasg("e3", 0..2, "ENTERPRISEPACK", json!({})))
        .await;
    eventually("assigned through the test backend", || {
        w.holders("ENTERPRISEPACK") == 2
    })
    .await;
    assert!(assigns.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_status_fields_that_no_longer_apply_are_removed() {
    let w = world("").await;
    let r = start(&w.server, &w.state, "a", Duration::from_secs(600));
    w.create(
        NS,
        sub(
            "big",
            json!({"organization": ORG, "product": "SPE_E3", "seats": 150}),
        ),
    )
    .await;
    w.blocked_with_event("subscriptions", NS, "big", "PurchaseLimitExceeded")
        .await;
    let subs: Api<Subscription> = w.api(NS);
    subs.patch(
        "big",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"seatkeeper.dev/allow-large-purchase": "true"}}}),
        ),
    )
    .await
    .unwrap();
    eventually("bought and Ready", || {
        w.object("subscriptions", NS, "big")
            .is_some_and(|o| condition(&o, "Ready").0 == "True")
    })
    .await;
    let status = &w.object("subscriptions", NS, "big").unwrap()["status"];
    assert!(status["subscriptionId"].is_string());
    assert!(
        status.get("blockedReason").is_none(),
        "a cleared Blocked reason does not linger: {status}"
    );
    assert!(
        status.get("purchase").is_none(),
        "a finished purchase is no longer in flight: {status}"
    );
    r.stop().await;
}

/// The emulator serving `tenant` on loopback (client `app`, secret `s3cret`): it, its root
/// URL, and the sender that stops it.
async fn emulate(
    tenant: &std::path::Path,
    faults: seatkeeper::emulator::Faults,
) -> (
    std::sync::Arc<seatkeeper::emulator::Emulator>,
    String,
    watch::Sender<bool>,
) {
    let clock: std::sync::Arc<dyn seatkeeper::clock::Clock> =
        std::sync::Arc::new(seatkeeper::clock::SystemClock);
    let emulator = std::sync::Arc::new(seatkeeper::emulator::Emulator::new(
        seatkeeper::backend::embedded::Embedded::open(tenant, clock).unwrap(),
        seatkeeper::emulator::Options {
            client_id: Some("app".into()),
            client_secret: Some("s3cret".into()),
            token_lifetime: 3600,
            faults,
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = watch::channel(false);
    let e = emulator.clone();
    tokio::spawn(async move {
        seatkeeper::emulator::serve(listener, e, rx).await.unwrap();
    });
    (emulator, root, stop)
}

/// The app's client secret (`s3cret`, as the emulator expects) in the Secret
/// `seatkeeper/<secret>`, which Organizations made by [`microsoft_organization`] reference.
async fn app_secret(w: &World, secret: &str) {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = w.api("seatkeeper");
    let s = serde_json::from_value(
        json!({"metadata": {"name": secret}, "stringData": {"secret": "s3cret"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
}

/// An Organization `name` for `domain`, reached through the emulator at `root` with the app
/// whose client secret is in `seatkeeper/<secret>`; Partner Center enabled when asked.
async fn microsoft_organization(
    w: &World,
    name: &str,
    domain: &str,
    (root, secret): (&str, &str),
    partner_center: bool,
) {
    let mut microsoft = json!({
        "tenantId": domain,
        "endpoints": {"login": root, "graph": root, "partnerCenter": root},
        "credentials": {"clientId": "app",
            "clientSecretRef": {"namespace": "seatkeeper", "name": secret, "key": "secret"}}});
    if partner_center {
        microsoft["partnerCenter"] = json!({"enabled": true});
    }
    let org = serde_json::from_value(json!({
        "apiVersion": "seatkeeper.dev/v1alpha1", "kind": "Organization",
        "metadata": {"name": name},
        "spec": {"domain": domain, "backend": {"microsoft": microsoft}}
    }))
    .unwrap();
    Api::<seatkeeper::api::Organization>::all(w.server.client())
        .create(&PostParams::default(), &org)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_an_organization_with_the_microsoft_backend_runs_against_the_emulator() {
    let w = world("").await;
    // The emulated tenant is a copy: the controller's own tenant file must stay untouched.
    let emulated = w.state.with_file_name("emulated.yaml");
    std::fs::copy(&w.state, &emulated).unwrap();
    let (emulator, root, stop_emulator) = emulate(&emulated, Default::default()).await;
    app_secret(&w, "app").await;
    microsoft_organization(&w, "contoso", ORG, (&root, "app"), true).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = w.api("seatkeeper");
    let r = start(&w.server, &w.state, "a", Duration::from_secs(600));
    w.create(NS, lasg("e3", 0..3, "ENTERPRISEPACK", json!({})))
        .await;
    let held = |tenant: &seatkeeper::backend::embedded::TenantFile| {
        tenant.organizations[0]
            .users
            .iter()
            .filter(|u| u.licence("ENTERPRISEPACK").is_some())
            .count()
    };
    eventually("assigned in the emulated tenant", || {
        held(&emulator.tenant()) == 3
    })
    .await;
    assert_eq!(
        w.holders("ENTERPRISEPACK"),
        0,
        "the embedded tenant is not used"
    );
    eventually("the Organization reports the tenant", || {
        w.server
            .get("seatkeeper.dev/v1alpha1/organizations", "", "contoso")
            .is_some_and(|o| {
                let s = &o["status"];
                s["backend"] == "microsoft"
                    && s["users"] == USERS as i64 + 1
                    && s["products"].as_array().is_some_and(|p| {
                        p.iter()
                            .any(|p| p["product"] == "ENTERPRISEPACK" && p["assigned"] == 3)
                    })
                    && condition(&o, "Ready").0 == "True"
            })
    })
    .await;
    // Its subscriptions, with the ids the emulated Partner Center serves: what a
    // Subscription's spec.subscriptionId adopts.
    let o = w
        .server
        .get("seatkeeper.dev/v1alpha1/organizations", "", "contoso")
        .unwrap();
    let listed: Vec<(String, String)> = o["status"]["subscriptions"]
        .as_array()
        .expect("subscriptions listed")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["product"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let served: Vec<(String, String)> = emulator.tenant().organizations[0]
        .subscriptions
        .iter()
        .map(|s| {
            (
                seatkeeper::emulator::subscription_id(&s.id),
                s.product.clone(),
            )
        })
        .collect();
    assert!(!served.is_empty());
    for s in &served {
        assert!(listed.contains(s), "{s:?} not in {listed:?}");
    }
    // Rotating the Secret to a wrong value acts at once: a condition, not a crash loop.
    secrets
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"secret": "wrong"}})),
        )
        .await
        .unwrap();
    eventually("credentials refused", || {
        w.server
            .get("seatkeeper.dev/v1alpha1/organizations", "", "contoso")
            .is_some_and(|o| {
                condition(&o, "Blocked") == ("True".into(), "CredentialsInvalid".into())
            })
    })
    .await;
    eventually(
        "a CredentialsInvalid Warning Event for the Organization",
        || {
            w.event_reasons("contoso")
                .contains(&"CredentialsInvalid".to_string())
        },
    )
    .await;
    let message = w
        .server
        .get("seatkeeper.dev/v1alpha1/organizations", "", "contoso")
        .unwrap()["status"]
        .to_string();
    assert!(
        !message.contains("wrong") && !message.contains("s3cret"),
        "no secret in status: {message}"
    );
    r.stop().await;
    let _ = stop_emulator.send(true);
}

/// Two customer tenants of one partner app: one Secret, one emulator serving both. A tenant
/// that stops accepting the app (consent revoked, then a GDAP relationship expired) is
/// Blocked alone; the other converges all along; once it accepts the app again, it converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_one_partner_app_many_tenants_a_tenant_refusing_the_app_is_blocked_alone() {
    let w = world("").await;
    let emulated = w.state.with_file_name("emulated.yaml");
    let fabrikam = "- domain: fabrikam.com\n  paymentMethodOnFile: true\n  users:\n  - {upn: f0@fabrikam.com, usageLocation: NL}\n  - {upn: f1@fabrikam.com, usageLocation: NL}\n  subscriptions:\n  - {id: sub-f, product: ENTERPRISEPACK, seats: 5}\n";
    std::fs::write(&emulated, tenant_yaml("") + fabrikam).unwrap();
    let revoked = seatkeeper::emulator::Faults {
        revoked_consent: vec!["fabrikam.com".into()],
        ..Default::default()
    };
    let (emulator, root, stop_emulator) = emulate(&emulated, revoked).await;
    // One Secret for the partner's app, referenced by both Organizations.
    app_secret(&w, "partner-app").await;
    for (name, domain) in [("contoso", ORG), ("fabrikam", "fabrikam.com")] {
        microsoft_organization(&w, name, domain, (&root, "partner-app"), false).await;
    }
    let nss: Api<Namespace> = Api::all(w.server.client());
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": "team-f", "labels": {"seatkeeper.dev/organization": "fabrikam.com"}}}),
    )
    .unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let r = start(&w.server, &w.state, "a", Duration::from_secs(2));
    w.create(NS, lasg("e3", 0..3, "ENTERPRISEPACK", json!({})))
        .await;
    w.create(
        "team-f",
        json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "LicenseAssignment",
            "metadata": {"name": "e3"},
            "spec": {"organization": "fabrikam.com", "users": ["f0@fabrikam.com", "f1@fabrikam.com"],
                "licenses": [{"product": "ENTERPRISEPACK"}]}}),
    )
    .await;
    let held = |domain: &str| {
        emulator
            .tenant()
            .organizations
            .iter()
            .find(|o| o.domain == domain)
            .unwrap()
            .users
            .iter()
            .filter(|u| u.licence("ENTERPRISEPACK").is_some())
            .count()
    };
    let org_blocked = |name: &str, reason: &str| {
        w.server
            .get("seatkeeper.dev/v1alpha1/organizations", "", name)
            .is_some_and(|o| condition(&o, "Blocked") == ("True".into(), reason.into()))
    };
    eventually("contoso converges while fabrikam refuses the app", || {
        held(ORG) == 3 && org_blocked("fabrikam", "CredentialsInvalid")
    })
    .await;
    assert_eq!(held("fabrikam.com"), 0);
    let message = w
        .server
        .get("seatkeeper.dev/v1alpha1/organizations", "", "fabrikam")
        .unwrap()["status"]["conditions"]
        .to_string();
    assert!(message.contains("AADSTS65001"), "{message}");
    assert!(
        !message.contains("s3cret"),
        "no secret in status: {message}"
    );
    // Consent granted again: at the next resync fabrikam converges too.
    emulator.set_faults(Default::default());
    eventually("fabrikam converges once it accepts the app", || {
        held("fabrikam.com") == 2
            && w.server
                .get("seatkeeper.dev/v1alpha1/organizations", "", "fabrikam")
                .is_some_and(|o| condition(&o, "Ready").0 == "True")
    })
    .await;
    // The GDAP relationship expires: tokens still come, every call is refused 403.
    emulator.set_faults(seatkeeper::emulator::Faults {
        denied_tenants: vec!["fabrikam.com".into()],
        ..Default::default()
    });
    eventually("fabrikam Blocked PermissionDenied, contoso Ready", || {
        org_blocked("fabrikam", "PermissionDenied")
            && w.server
                .get("seatkeeper.dev/v1alpha1/organizations", "", "contoso")
                .is_some_and(|o| condition(&o, "Ready").0 == "True")
    })
    .await;
    r.stop().await;
    let _ = stop_emulator.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_autoscaling_buys_seats_for_a_new_license_assignment() {
    let w = world("  - {id: sub-spb, product: SPB, seats: 2}\n").await;
    let r = start(&w.server, &w.state, "a", Duration::from_secs(600));
    let seats = |w: &World| {
        w.tenant()["organizations"][0]["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "sub-spb")
            .unwrap()["seats"]
            .as_u64()
            .unwrap()
    };
    w.create(
        NS,
        sub(
            "spb",
            json!({"organization": ORG, "product": "SPB", "subscriptionId": "sub-spb", "seats": 2,
                "autoscale": {"maxSeats": 10, "headroom": 1}}),
        ),
    )
    .await;
    eventually("spb Ready", || {
        w.object("subscriptions", NS, "spb")
            .is_some_and(|o| condition(&o, "Ready").0 == "True")
    })
    .await;
    assert_eq!(seats(&w), 2, "no demand: the floor");
    // Onboarding: four new hires land; nobody touches the Subscription.
    w.create(NS, lasg("hires", 0..4, "SPB", json!({}))).await;
    eventually("4 assigned on 5 seats", || {
        w.holders("SPB") == 4 && seats(&w) == 5
    })
    .await;
    eventually("status explains the target", || {
        w.object("subscriptions", NS, "spb").is_some_and(|o| {
            o["status"]["autoscale"]["target"] == 5
                && o["status"]["autoscale"]["demand"] == 4
                && o["status"]["seats"]["desired"] == 5
        })
    })
    .await;
    r.stop().await;
}

#[tokio::test]
async fn e2e_the_startup_race_a_finalizer_added_to_a_stale_read_is_retried_quietly() {
    let w = world("").await;
    let spec = json!({"organization": ORG, "product": "SPB", "seats": 1});
    w.create(NS, sub("a", spec.clone())).await;
    w.create(NS, sub("b", spec)).await;
    let api = w.api::<Subscription>(NS);
    // What the cache holds: both as created.
    let stale = [
        std::sync::Arc::new(api.get("a").await.unwrap()),
        std::sync::Arc::new(api.get("b").await.unwrap()),
    ];
    // Meanwhile another controller adds its finalizer to a, and b is deleted.
    let other = json!({"metadata": {"finalizers": ["example.com/other"]}});
    api.patch("a", &PatchParams::default(), &Patch::Merge(&other))
        .await
        .unwrap();
    let now = "2026-11-21T09:00:00Z".parse().unwrap();
    let mut rvs = std::collections::HashMap::new();
    let client = w.server.client();
    let fresh = controller::finalizers::add(&client, &stale[..1], now, &mut rvs)
        .await
        .expect("the guarded patch's 422 is retried, not an error");
    assert!(fresh);
    let a = w.object("subscriptions", NS, "a").unwrap();
    assert_eq!(
        a["metadata"]["finalizers"],
        json!(["example.com/other", "seatkeeper.dev/cleanup"]),
        "the other finalizer is kept"
    );
    api.delete("b", &DeleteParams::default()).await.unwrap();
    let fresh = controller::finalizers::add(&client, &stale[1..], now, &mut rvs)
        .await
        .unwrap();
    assert!(!fresh, "deleted since read: the pass stops and plans again");
}

/// `seatkeeper apply` on `state` from the command line, refused quickly if the file is held.
fn cli_apply(state: &Path) -> std::process::Output {
    let dir = state.parent().unwrap();
    let m = dir.join("cli.yaml");
    std::fs::write(
        &m,
        format!("apiVersion: seatkeeper.dev/v1alpha1\nkind: LicenseAssignment\nmetadata: {{name: cli}}\nspec: {{organization: {ORG}, users: [u0@{ORG}], licenses: [{{product: ENTERPRISEPACK}}]}}\n"),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
        .args(["apply", "-f"])
        .arg(&m)
        .arg("--state")
        .arg(state)
        .args(["--lock-timeout", "200ms"])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_cli_apply_on_the_leaders_tenant_file_is_refused_and_a_held_file_keeps_a_replica_from_leading()
 {
    let w = world("").await;
    // A CLI run holds the file: the replica does not lead until it is free.
    let held = seatkeeper::backend::lock::acquire(
        &w.state,
        seatkeeper::backend::lock::Access::Write,
        Duration::ZERO,
        "seatkeeper apply",
    )
    .unwrap();
    let r = start(&w.server, &w.state, "a", Duration::from_secs(60));
    w.create(NS, lasg("staff", 0..2, "ENTERPRISEPACK", json!({})))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.holders("ENTERPRISEPACK"),
        0,
        "nothing done while the file is held"
    );
    drop(held);
    eventually("assigned once the file is free", || {
        w.holders("ENTERPRISEPACK") == 2
    })
    .await;
    eventually("a holds the file", || {
        seatkeeper::backend::lock::held_by(&w.state).is_some()
    })
    .await;
    let out = tokio::task::spawn_blocking({
        let state = w.state.clone();
        move || cli_apply(&state)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by seatkeeper run (pid"),
        "{stderr}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_blocked_resource_of_every_kind_can_be_deleted() {
    let w = world("").await;
    let r = start(&w.server, &w.state, "a", Duration::from_secs(600));
    w.create(
        NS,
        sub(
            "nope",
            json!({"organization": ORG, "product": "NOPE", "seats": 1}),
        ),
    )
    .await;
    w.create(
        NS,
        lasg("nope", 0..1, "NOPE", json!({"deletionPolicy": "Unassign"})),
    )
    .await;
    w.create(NS, json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "AddOn", "metadata": {"name": "nope"},
        "spec": {"organization": ORG, "product": "NOPE", "type": "Standalone", "quantity": 1, "deletionPolicy": "Cancel"}}))
        .await;
    // In a namespace bound to another organization.
    w.create(
        "unbound",
        sub(
            "elsewhere",
            json!({"organization": ORG, "product": "SPE_E3", "seats": 1, "deletionPolicy": "Cancel"}),
        ),
    )
    .await;
    for (plural, ns) in [
        ("subscriptions", NS),
        ("licenseassignments", NS),
        ("addons", NS),
        ("subscriptions", "unbound"),
    ] {
        let name = if ns == NS { "nope" } else { "elsewhere" };
        eventually("blocked", || {
            w.object(plural, ns, name)
                .is_some_and(|o| condition(&o, "Blocked").0 == "True")
        })
        .await;
    }
    let subs: Api<Subscription> = w.api(NS);
    let las: Api<LicenseAssignment> = w.api(NS);
    let add_ons: Api<AddOn> = w.api(NS);
    let unbound: Api<Subscription> = w.api("unbound");
    subs.delete("nope", &DeleteParams::default()).await.unwrap();
    las.delete("nope", &DeleteParams::default()).await.unwrap();
    add_ons
        .delete("nope", &DeleteParams::default())
        .await
        .unwrap();
    unbound
        .delete("elsewhere", &DeleteParams::default())
        .await
        .unwrap();
    eventually("all gone: nothing was bought or assigned for them", || {
        w.object("subscriptions", NS, "nope").is_none()
            && w.object("licenseassignments", NS, "nope").is_none()
            && w.object("addons", NS, "nope").is_none()
            && w.object("subscriptions", "unbound", "elsewhere").is_none()
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sigterm_while_converging_exits_within_the_bound_releases_the_lease_and_loses_no_record()
 {
    const N: usize = 6_000;
    let w = world("").await;
    // A tenant large enough that its changes are journaled: the signal comes mid-run.
    let mut t = format!("organizations:\n- domain: {ORG}\n  paymentMethodOnFile: true\n  users:\n");
    for i in 0..N {
        t += &format!("  - {{upn: u{i}@{ORG}, usageLocation: NL}}\n");
    }
    t += &format!("  subscriptions:\n  - {{id: sub-big, product: SPB, seats: {N}}}\n");
    std::fs::write(&w.state, t).unwrap();
    for g in 0..N / 100 {
        let mut la = lasg(
            &format!("team-{g}"),
            g * 100..(g + 1) * 100,
            "SPB",
            json!({}),
        );
        la["metadata"]["namespace"] = json!(NS);
        w.create(NS, la).await;
    }
    let (mut child, log_path) = run_binary(&w);
    let journal = seatkeeper::backend::journal::path_of(&w.state);
    eventually("licences being assigned", || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.matches('\n').count() >= 2)
            || w.holders("SPB") > 0
    })
    .await;
    let sent = std::time::Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            sent.elapsed() < Duration::from_secs(15),
            "still running {:?} after SIGTERM: {}",
            sent.elapsed(),
            std::fs::read_to_string(&log_path).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(code, Some(0), "{log}");
    let lease = w
        .server
        .get("coordination.k8s.io/v1/leases", "seatkeeper", "seatkeeper")
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_none_or(str::is_empty),
        "the Lease is released: {lease}"
    );
    // Every licence the controller assigned is recorded as owned in some status.
    let tenant = seatkeeper::backend::embedded::TenantFile::load(&w.state).unwrap();
    let mut owned = std::collections::BTreeSet::new();
    for g in 0..N / 100 {
        let o = w
            .object("licenseassignments", NS, &format!("team-{g}"))
            .unwrap();
        for x in o["status"]["owned"].as_array().into_iter().flatten() {
            owned.insert(x["user"].as_str().unwrap().to_lowercase());
        }
    }
    let held: Vec<&str> = tenant.organizations[0]
        .users
        .iter()
        .filter(|u| !u.licenses.is_empty())
        .map(|u| u.upn.as_str())
        .collect();
    eprintln!("licensed at exit: {} of {N}", held.len());
    let missing: Vec<_> = held
        .iter()
        .filter(|u| !owned.contains(&u.to_lowercase()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} licences not recorded, e.g. {:?}",
        missing.len(),
        held.len(),
        missing.first()
    );
}

/// SIGTERM to a `seatkeeper run` process, and wait for it to exit.
fn terminate(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// `seatkeeper run` as a process against the test API server; its log goes to the file named.
fn run_binary(w: &World) -> (std::process::Child, PathBuf) {
    run_binary_at(w, &w.server.url)
}

/// `run_binary`, reaching the API server at `url`.
fn run_binary_at(w: &World, url: &str) -> (std::process::Child, PathBuf) {
    let dir = w.state.parent().unwrap().to_path_buf();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: t, cluster: {{server: \"{}\"}}}}]\nusers: [{{name: t, user: {{}}}}]\ncontexts: [{{name: t, context: {{cluster: t, user: t}}}}]\ncurrent-context: t\n",
            url
        ),
    )
    .unwrap();
    let metrics = free_port().to_string();
    let log = dir.join("controller.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
        .arg("run")
        .arg("--state")
        .arg(&w.state)
        .args([
            "--metrics-addr",
            &metrics,
            "--lease-namespace",
            "seatkeeper",
        ])
        .args([
            "--identity",
            "bin",
            "--lease-duration",
            "2s",
            "--lease-renew",
            "300ms",
        ])
        .args(["--shutdown-timeout", "10s"])
        .env("KUBECONFIG", &kubeconfig)
        .env("NO_COLOR", "1")
        .envs(std::env::var("E2E_BIN_LOG").map(|l| ("SEATKEEPER_LOG", l)))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_an_api_server_outage_is_one_warn_and_one_info_not_a_storm() {
    let w = world("  - {id: sub-spb, product: SPB, seats: 5}\n").await;
    for g in 0..5 {
        w.create(
            NS,
            lasg(&format!("team-{g}"), g..g + 1, "ENTERPRISEPACK", json!({})),
        )
        .await;
    }
    // The controller starts, then the API server is gone for 4 s: watches break, requests
    // fail to connect.
    let outage = Outage::start(&w.server).await;
    let (mut child, log_path) = run_binary_at(&w, &outage.url);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    outage.set(true);
    for g in 5..8 {
        // Work arrives meanwhile (straight to the API server): it waits for the outage to end.
        w.create(NS, lasg(&format!("team-{g}"), g..g + 1, "SPB", json!({})))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    outage.set(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(0..8).all(|g| {
        w.object("licenseassignments", NS, &format!("team-{g}"))
            .is_some_and(|o| condition(&o, "Ready").0 == "True")
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "not Ready a minute after the outage: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate(&mut child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        lines("the Kubernetes API server cannot be reached"),
        1,
        "{log}"
    );
    assert_eq!(
        lines("the Kubernetes API server is reachable again"),
        1,
        "{log}"
    );
    // Nothing else at WARN or ERROR: not the Lease, not each object, not each request.
    assert_eq!(lines(" WARN "), 1, "{log}");
    assert_eq!(lines(" ERROR "), 0, "{log}");
    for dump in ["Status {", "Custom {", "hyper::Error", "kube_client"] {
        assert_eq!(
            lines(dump),
            0,
            "no Rust debug structure or kube internals: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_deleting_a_namespace_with_blocked_and_licensed_resources_finishes_quietly() {
    let w = world("").await;
    let nss: Api<Namespace> = Api::all(w.server.client());
    let doomed: Namespace = serde_json::from_value(
        json!({"metadata": {"name": "doomed", "labels": {"seatkeeper.dev/organization": ORG}}}),
    )
    .unwrap();
    nss.create(&PostParams::default(), &doomed).await.unwrap();
    let (mut child, log_path) = run_binary(&w);
    // Blocked resources of every kind, and licences assigned (their removal acknowledged, R28).
    w.create(
        "doomed",
        sub(
            "nope",
            json!({"organization": ORG, "product": "NOPE", "seats": 1}),
        ),
    )
    .await;
    w.create("doomed", lasg("nope", 0..1, "NOPE", json!({})))
        .await;
    w.create("doomed", json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "AddOn", "metadata": {"name": "nope"},
        "spec": {"organization": ORG, "product": "NOPE", "type": "Standalone", "quantity": 1}}))
        .await;
    let mut staff = lasg("staff", 0..2, "ENTERPRISEPACK", json!({}));
    staff["metadata"]["annotations"] = json!({"seatkeeper.dev/acknowledge-downgrade": "true"});
    w.create("doomed", staff).await;
    eventually("licences assigned and the rest Blocked", || {
        w.holders("ENTERPRISEPACK") == 2
            && ["subscriptions", "licenseassignments", "addons"]
                .iter()
                .all(|p| {
                    w.object(p, "doomed", "nope")
                        .is_some_and(|o| condition(&o, "Blocked").0 == "True")
                })
    })
    .await;
    // Each new Blocked reason was told in one WARN line (beside its Event), once per object.
    let blocked = || {
        let told = std::fs::read_to_string(&log_path).unwrap();
        let n = told
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains("reason=ProductUnknown"))
            .count();
        (n, told)
    };
    eventually("one WARN line per new Blocked reason", || blocked().0 >= 3).await;
    let (n, told) = blocked();
    assert_eq!(n, 3, "{told}");
    // What the log says from here on.
    let before = told.len();
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(w.server.get("v1/namespaces", "", "doomed").is_none()
        && w.holders("ENTERPRISEPACK") == 0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the namespace is still there: {:?}\n{}",
            ["subscriptions", "licenseassignments", "addons"]
                .iter()
                .flat_map(|p| w.server.objects(&format!("seatkeeper.dev/v1alpha1/{p}")))
                .map(|o| (
                    o["metadata"]["name"].clone(),
                    o["metadata"]["finalizers"].clone(),
                    o["status"]["conditions"].clone()
                ))
                .collect::<Vec<_>>(),
            std::fs::read_to_string(&log_path).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate(&mut child);
    let log = std::fs::read_to_string(&log_path).unwrap()[before..].to_string();
    // Events and statuses that race the namespace's end are expected: debug, not WARN; and
    // the stop finishes with the work in flight, not at --shutdown-timeout.
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert!(warnings.is_empty(), "{log}");
    assert!(!log.contains("Status {"), "{log}");
}

/// A fleet: several customer tenants behind one partner app, three replicas sharding them.
/// While they converge, the replica owning an unfinished organization is killed (its Leases
/// left to expire) and a fourth joins. Every organization converges, each purchase is made
/// once, every organization names a live shard, and no two replicas ever ran one
/// organization's pass at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_fleet_replicas_shard_the_tenants_one_killed_while_converging_nothing_twice() {
    const FLEET: usize = 6;
    // More than one round of licence batches (4 batches of 20 at once).
    const STAFF: usize = 200;
    let w = world("").await;
    let emulated = w.state.with_file_name("emulated.yaml");
    let domain = |i: usize| format!("c{i}.example.com");
    let mut y = String::from("organizations:\n");
    for i in 0..FLEET {
        y += &format!(
            "- domain: {}\n  paymentMethodOnFile: true\n  users:\n",
            domain(i)
        );
        for u in 0..STAFF {
            y += &format!("  - {{upn: u{u}@{}, usageLocation: NL}}\n", domain(i));
        }
        y += &format!(
            "  subscriptions:\n  - {{id: sub-{i}, product: ENTERPRISEPACK, seats: {STAFF}}}\n"
        );
    }
    std::fs::write(&emulated, y).unwrap();
    // Slow enough that a pass is still running when its replica dies.
    let slow = seatkeeper::emulator::Faults {
        latency: Duration::from_millis(50),
        ..Default::default()
    };
    let (emulator, root, stop_emulator) = emulate(&emulated, slow).await;
    app_secret(&w, "partner-app").await;
    let nss: Api<Namespace> = Api::all(w.server.client());
    for i in 0..FLEET {
        let name = format!("c{i}");
        microsoft_organization(&w, &name, &domain(i), (&root, "partner-app"), true).await;
        let ns: Namespace = serde_json::from_value(json!({"metadata": {
            "name": format!("team-c{i}"),
            "labels": {"seatkeeper.dev/organization": domain(i)}}}))
        .unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
    }
    let mut replicas: Vec<(String, Option<Replica>)> = (0..3)
        .map(|r| {
            let id = format!("r{r}");
            let replica = start_sharded(&w.server, &w.state, &id);
            (id, Some(replica))
        })
        .collect();
    for i in 0..FLEET {
        let users: Vec<String> = (0..STAFF).map(|u| format!("u{u}@{}", domain(i))).collect();
        let ns = format!("team-c{i}");
        w.create(
            &ns,
            json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "LicenseAssignment",
                "metadata": {"name": "staff"},
                "spec": {"organization": domain(i), "users": users,
                    "licenses": [{"product": "ENTERPRISEPACK"}]}}),
        )
        .await;
        w.create(
            &ns,
            sub(
                "extra",
                json!({"organization": domain(i), "product": "SPE_E3", "seats": 2}),
            ),
        )
        .await;
    }
    let licensed = |i: usize| {
        emulator
            .tenant()
            .organizations
            .iter()
            .find(|o| o.domain == domain(i))
            .unwrap()
            .users
            .iter()
            .filter(|u| u.licence("ENTERPRISEPACK").is_some())
            .count()
    };
    let holder = |i: usize| {
        w.server
            .get(
                "coordination.k8s.io/v1/leases",
                "seatkeeper",
                &format!("seatkeeper-org-{}", domain(i)),
            )
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    // Kill the owner of an organization still converging.
    let mut victim = None;
    eventually("the fleet converging", || {
        let started = (0..FLEET).any(|i| licensed(i) > 0);
        victim = (0..FLEET)
            .find(|i| started && licensed(*i) < STAFF && holder(*i).is_some())
            .and_then(holder);
        victim.is_some()
    })
    .await;
    let victim = victim.unwrap();
    let killed = replicas.iter_mut().find(|(id, _)| *id == victim).unwrap();
    killed.1.take().unwrap().kill();
    // A replica joins while the others converge and take the dead one's organizations.
    replicas.push(("r3".into(), Some(start_sharded(&w.server, &w.state, "r3"))));
    let live: Vec<String> = replicas
        .iter()
        .filter(|(_, r)| r.is_some())
        .map(|(id, _)| id.clone())
        .collect();
    eventually("every organization converged on a live shard", || {
        (0..FLEET).all(|i| {
            licensed(i) == STAFF
                && w.server
                    .get(
                        "seatkeeper.dev/v1alpha1/organizations",
                        "",
                        &format!("c{i}"),
                    )
                    .is_some_and(|o| {
                        o["status"]["shard"]
                            .as_str()
                            .is_some_and(|s| live.iter().any(|l| l == s))
                    })
                && w.object("subscriptions", &format!("team-c{i}"), "extra")
                    .is_some_and(|o| condition(&o, "Ready").0 == "True")
        })
    })
    .await;
    for i in 0..FLEET {
        let tenant = emulator.tenant();
        let o = tenant
            .organizations
            .iter()
            .find(|o| o.domain == domain(i))
            .unwrap();
        let bought: Vec<_> = o
            .subscriptions
            .iter()
            .filter(|s| s.product == "SPE_E3")
            .collect();
        assert_eq!(bought.len(), 1, "{}: bought once: {bought:?}", domain(i));
        assert_eq!(bought[0].seats, 2);
        let h = holder(i).unwrap();
        assert!(live.contains(&h), "{} held by {h}", domain(i));
    }
    assert_eq!(
        seatkeeper::controller::shards::overlaps(),
        0,
        "two replicas reconciled one organization at once"
    );
    // The new replica took a share.
    assert!((0..FLEET).any(|i| holder(i).as_deref() == Some("r3")));
    for (_, r) in replicas {
        if let Some(r) = r {
            r.stop().await;
        }
    }
    let _ = stop_emulator.send(true);
}
