//! A fleet, measured: three `seatkeeper run --sharding` replicas (the release binary, each its
//! own process) against the project's in-process test API server and one emulator serving
//! every customer tenant of one partner app, with Graph's write budgets switched on in the
//! emulator: per tenant and per app across all tenants, in the documented proportion (3,000
//! per 150 s and 70,000 per 5 minutes) with their counts divided by `FLEET_SCALE` (default
//! 20) and their windows by `FLEET_COMPRESSION` (default 20): 150 per 7.5 s per tenant, 3,500
//! per 15 s for the app. The replicas pace to the same scaled budgets (`run
//! --graph-budget-scale/--graph-budget-compression`; the documented figures are public, not
//! the emulator's secret): what is measured is how well three replicas share the app's budget,
//! fairly, through a failure. Scaling the counts keeps a fleet that fits one machine spanning
//! several windows of the app's budget (a sliding window lets its first budget through at
//! once).
//!
//! The workload: `FLEET_SMALL` (default 150) tenants of `FLEET_SMALL_USERS` (100) users and
//! `FLEET_BIG` (10) tenants of `FLEET_BIG_USERS` (500), every user to be given a licence (one
//! licence change each), in LicenseAssignments of 100 users: 20,000 changes. The 1,000
//! tenants × 1,000 users do not fit one 2-core machine running the API server, the emulator and
//! three replicas at once; the sizes are scaled down and printed.
//!
//! Figures:
//! - `fleet_converge_ratio`: wall time (from the replicas' start until every LicenseAssignment
//!   is Ready) against the app-wide budget's floor (`changes / app budget × window`,
//!   `fleet_floor_s`; the biggest tenant's own floor, `fleet_biggest_tenant_floor_s`, is below
//!   it);
//! - `fleet_throttled_pct`: licence writes the emulator answered 429, against the changes;
//! - `fleet_rss_mib_per_replica`: the largest peak RSS of a replica;
//! - `fleet_failover_s`: one replica is killed (SIGKILL) at 40 % of the floor; the time until
//!   every organization it held is held by a live replica (the Lease lasts 6 s);
//! - `fleet_repeated_changes`: licence changes the emulator made beyond one per user
//!   (nothing done twice: 0);
//! - `fleet_idle_writes`: licence changes and LicenseAssignment writes during an idle resync
//!   after convergence (0); `fleet_idle_organization_refreshes` apart: each Organization's
//!   `lastReadAt`, refreshed once per resync by design;
//! - `fleet_fairness`: the slowest small tenant's time to Ready against its fair floor, the
//!   time the app's budget takes to give every tenant as many changes as a small one has
//!   (`(small + big tenants) × small users / app rate`).

#[path = "../tests/support/apiserver.rs"]
mod apiserver;
mod common;

use apiserver::ApiServer;
use common::{figure, peak_rss_mib};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use seatkeeper::api::{LicenseAssignment, Organization};
use seatkeeper::backend::embedded::{Embedded, TenantFile};
use seatkeeper::emulator::{Emulator, Faults, Options as EmulatorOptions};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REPLICAS: usize = 3;
const LEASE_S: u64 = 6;
const RESYNC_S: u64 = 10;
const PER_OBJECT: usize = 100;
const LAS: &str = "seatkeeper.dev/v1alpha1/licenseassignments";
const LEASES: &str = "coordination.k8s.io/v1/leases";

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Tenant {
    domain: String,
    users: usize,
    small: bool,
}

fn fleet() -> Vec<Tenant> {
    let mut out = vec![];
    for i in 0..knob("FLEET_SMALL", 150) {
        out.push(Tenant {
            domain: format!("s{i}.fleet.example"),
            users: knob("FLEET_SMALL_USERS", 100),
            small: true,
        });
    }
    for i in 0..knob("FLEET_BIG", 10) {
        out.push(Tenant {
            domain: format!("b{i}.fleet.example"),
            users: knob("FLEET_BIG_USERS", 500),
            small: false,
        });
    }
    out
}

fn tenant_file(fleet: &[Tenant]) -> TenantFile {
    let mut y = String::from("organizations:\n");
    for t in fleet {
        y += &format!(
            "- domain: {}\n  paymentMethodOnFile: true\n  users:\n",
            t.domain
        );
        for u in 0..t.users {
            y += &format!("  - {{upn: u{u}@{}, usageLocation: NL}}\n", t.domain);
        }
        y += &format!(
            "  subscriptions:\n  - {{id: sub-{}, product: ENTERPRISEPACK, seats: {}}}\n",
            t.domain, t.users
        );
    }
    TenantFile::parse(&y, "fleet.yaml").unwrap()
}

async fn declare(server: &ApiServer, fleet: &[Tenant], root: &str) {
    let client = server.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = |name: &str, labels: serde_json::Value| -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    };
    for name in ["default", "seatkeeper"] {
        nss.create(&PostParams::default(), &ns(name, json!({})))
            .await
            .unwrap();
    }
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "partner-app"}, "stringData": {"secret": "s3cret"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "seatkeeper")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let orgs: Api<Organization> = Api::all(client.clone());
    for (i, t) in fleet.iter().enumerate() {
        let org: Organization = serde_json::from_value(json!({
            "apiVersion": "seatkeeper.dev/v1alpha1", "kind": "Organization",
            "metadata": {"name": format!("t{i}")},
            "spec": {"domain": t.domain, "backend": {"microsoft": {
                "tenantId": t.domain,
                "endpoints": {"login": root, "graph": root, "partnerCenter": root},
                "credentials": {"clientId": "app",
                    "clientSecretRef": {"namespace": "seatkeeper", "name": "partner-app", "key": "secret"}}}}}
        }))
        .unwrap();
        orgs.create(&PostParams::default(), &org).await.unwrap();
        nss.create(
            &PostParams::default(),
            &ns(
                &format!("t{i}"),
                json!({"seatkeeper.dev/organization": t.domain}),
            ),
        )
        .await
        .unwrap();
    }
    let objects: Vec<(String, LicenseAssignment)> = fleet
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            (0..t.users.div_ceil(PER_OBJECT)).map(move |g| {
                let users: Vec<String> = (g * PER_OBJECT..t.users.min((g + 1) * PER_OBJECT))
                    .map(|u| format!("u{u}@{}", t.domain))
                    .collect();
                let la = serde_json::from_value(json!({
                    "apiVersion": "seatkeeper.dev/v1alpha1", "kind": "LicenseAssignment",
                    "metadata": {"name": format!("team-{g:03}")},
                    "spec": {"organization": t.domain, "users": users,
                        "licenses": [{"product": "ENTERPRISEPACK"}]},
                }))
                .unwrap();
                (format!("t{i}"), la)
            })
        })
        .collect();
    futures::stream::iter(objects)
        .map(|(ns, la)| {
            let api: Api<LicenseAssignment> = Api::namespaced(client.clone(), &ns);
            async move {
                api.create(&PostParams::default(), &la).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

fn replica(
    dir: &std::path::Path,
    server: &ApiServer,
    id: &str,
    (compression, scale): (u32, u32),
) -> Child {
    let kubeconfig = common::kubeconfig(dir, &server.url);
    let state = dir.join(format!("{id}.yaml"));
    std::fs::write(&state, "organizations: []\n").unwrap();
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
        .arg("run")
        .arg("--state")
        .arg(&state)
        .args([
            "--sharding",
            "--identity",
            id,
            "--lease-namespace",
            "seatkeeper",
        ])
        .args([
            "--lease-duration",
            &format!("{LEASE_S}s"),
            "--lease-renew",
            "1s",
        ])
        .args([
            "--resync",
            &format!("{RESYNC_S}s"),
            "--metrics-addr",
            &metrics,
        ])
        .args([
            "--graph-budget-compression",
            &compression.to_string(),
            "--graph-budget-scale",
            &scale.to_string(),
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{id}.log"))).unwrap())
        .spawn()
        .unwrap()
}

enum Kept {
    Temp(tempfile::TempDir),
    Path(std::path::PathBuf),
}

impl Kept {
    fn path(&self) -> &std::path::Path {
        match self {
            Kept::Temp(t) => t.path(),
            Kept::Path(p) => p,
        }
    }
}

/// The replica processes go when the benchmark does, even when it panics.
struct Replicas(Vec<(String, Option<Child>)>);

impl Drop for Replicas {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            if let Some(c) = c {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The organizations whose every LicenseAssignment says Ready.
fn ready_orgs(server: &ApiServer, expected: &BTreeMap<String, usize>) -> BTreeSet<String> {
    let mut ready: BTreeMap<String, usize> = BTreeMap::new();
    for o in server.objects(LAS) {
        let ok = o["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ok && let Some(org) = o["spec"]["organization"].as_str() {
            *ready.entry(org.to_string()).or_default() += 1;
        }
    }
    ready
        .into_iter()
        .filter(|(org, n)| expected.get(org) == Some(n))
        .map(|(org, _)| org)
        .collect()
}

/// Organization Lease holders: domain → replica.
fn holders(server: &ApiServer) -> BTreeMap<String, String> {
    server
        .objects(LEASES)
        .into_iter()
        .filter_map(|l| {
            let org = l["metadata"]["annotations"]["seatkeeper.dev/organization"].as_str()?;
            let holder = l["spec"]["holderIdentity"].as_str()?;
            Some((org.to_string(), holder.to_string()))
        })
        .collect()
}

async fn run() {
    let compression = knob("FLEET_COMPRESSION", 20) as u32;
    let fleet = fleet();
    let changes: usize = fleet.iter().map(|t| t.users).sum();
    let (small, big) = fleet.iter().partition::<Vec<&Tenant>, _>(|t| t.small);
    let size = format!(
        "{}x{}+{}x{}",
        small.len(),
        small.first().map_or(0, |t| t.users),
        big.len(),
        big.first().map_or(0, |t| t.users)
    );
    let scale = knob("FLEET_SCALE", 20) as u32;
    let budgets =
        seatkeeper::controller::tenants::GraphBudgets::compressed(compression).scaled(scale);
    let ((tenant_budget, tenant_window), (app_budget, app_window)) = (budgets.tenant, budgets.app);
    let rate = app_budget as f64 / app_window.as_secs_f64();
    // The app's floor; a tenant with more changes than its own budget carries in that time
    // would set a higher one (its own floor), and the workload is chosen so that it does not.
    let app_floor = changes as f64 / rate;
    let tenant_rate = tenant_budget as f64 / tenant_window.as_secs_f64();
    let own_floor = fleet.iter().map(|t| t.users).max().unwrap_or(0) as f64 / tenant_rate;
    let floor = app_floor.max(own_floor);

    let clock: Arc<dyn seatkeeper::clock::Clock> = Arc::new(seatkeeper::clock::SystemClock);
    let emulator = Arc::new(Emulator::new(
        Embedded::new(tenant_file(&fleet), None, clock),
        EmulatorOptions {
            client_id: Some("app".into()),
            client_secret: Some("s3cret".into()),
            token_lifetime: 3600,
            faults: Faults {
                write_budget: Some(tenant_budget),
                window: tenant_window,
                app_write_budget: Some(app_budget),
                app_window,
                ..Faults::default()
            },
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let served = emulator.clone();
    tokio::spawn(async move {
        seatkeeper::emulator::serve(listener, served, rx)
            .await
            .unwrap()
    });
    let server = ApiServer::start().await;
    declare(&server, &fleet, &root).await;
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for t in &fleet {
        expected.insert(t.domain.clone(), t.users.div_ceil(PER_OBJECT));
    }

    let dir = tempfile::tempdir().unwrap();
    // FLEET_KEEP: the replicas' logs stay (their directory is printed).
    let dir = match std::env::var_os("FLEET_KEEP") {
        Some(_) => {
            let kept = dir.keep();
            eprintln!("replica logs in {}", kept.display());
            Kept::Path(kept)
        }
        None => Kept::Temp(dir),
    };
    let started = Instant::now();
    let mut replicas = Replicas(
        (0..REPLICAS)
            .map(|r| {
                let id = format!("r{r}");
                let child = replica(dir.path(), &server, &id, (compression, scale));
                (id, Some(child))
            })
            .collect(),
    );
    let log = |id: &str| std::fs::read_to_string(dir.path().join(format!("{id}.log"))).unwrap();
    let mut ready_at: BTreeMap<String, f64> = BTreeMap::new();
    let mut killed: Option<(Instant, BTreeSet<String>)> = None;
    let mut failover: Option<f64> = None;
    let mut rss: f64 = 0.0;
    let mut progress = Instant::now();
    loop {
        let now = started.elapsed().as_secs_f64();
        if progress.elapsed() >= Duration::from_secs(10) {
            progress = Instant::now();
            eprintln!(
                "{now:.0}s: {} of {} tenants ready, {} of {changes} changes made, {} throttled ({} app-wide)",
                ready_at.len(),
                fleet.len(),
                emulator.licence_changes(),
                emulator.throttled(),
                emulator.app_throttled()
            );
        }
        for org in ready_orgs(&server, &expected) {
            ready_at.entry(org).or_insert(now);
        }
        if ready_at.len() == fleet.len() {
            break;
        }
        for (id, child) in &mut replicas.0 {
            if let Some(c) = child {
                assert!(
                    c.try_wait().unwrap().is_none(),
                    "replica {id} exited: {}",
                    log(id)
                );
                rss = rss.max(peak_rss_mib(&c.id().to_string()));
            }
        }
        if killed.is_none() && now >= 0.4 * floor {
            let (_, child) = &mut replicas.0[1];
            let mut c = child.take().unwrap();
            rss = rss.max(peak_rss_mib(&c.id().to_string()));
            c.kill().unwrap();
            c.wait().unwrap();
            let held: BTreeSet<String> = holders(&server)
                .into_iter()
                .filter(|(org, h)| h == "r1" && !ready_at.contains_key(org))
                .map(|(org, _)| org)
                .collect();
            killed = Some((Instant::now(), held));
        }
        if let Some((at, held)) = &killed
            && failover.is_none()
        {
            let now_held = holders(&server);
            if held
                .iter()
                .all(|o| now_held.get(o).is_some_and(|h| h != "r1"))
            {
                failover = Some(at.elapsed().as_secs_f64());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "no convergence in 15 minutes: {} of {} ready\n{}",
            ready_at.len(),
            fleet.len(),
            log("r0")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let made = emulator.licence_changes() as usize;
    let throttled = emulator.throttled();
    // Idle: once the LicenseAssignments' writes have settled, a resync and a half with
    // nothing declared new. (Organizations refresh their lastReadAt once per resync each: with
    // many of them some write is always near, so they are not waited for.)
    let quiet = Duration::from_secs(3);
    let las_written = || server.writes_to("/licenseassignments/");
    let mut last = las_written();
    let mut since = Instant::now();
    while since.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if las_written() != last {
            (last, since) = (las_written(), Instant::now());
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "LicenseAssignment writes never stopped"
        );
    }
    let before = (
        emulator.licence_changes(),
        server.writes_to("/licenseassignments/"),
        server.status_writes(),
    );
    tokio::time::sleep(Duration::from_secs(RESYNC_S * 3 / 2)).await;
    let idle = (emulator.licence_changes() - before.0) as usize
        + server.writes_to("/licenseassignments/")
        - before.1;
    // Each Organization's status refreshes its lastReadAt once per resync (by design: it
    // says how fresh the figures are); counted apart.
    let idle_statuses = server.status_writes() - before.2;
    for (_, c) in &mut replicas.0 {
        if let Some(c) = c {
            rss = rss.max(peak_rss_mib(&c.id().to_string()));
        }
    }
    let fair_floor = fleet.len() as f64 * small.first().map_or(0, |t| t.users) as f64 / rate;
    let slowest_small = small
        .iter()
        .filter_map(|t| ready_at.get(&t.domain))
        .fold(0.0f64, |a, b| a.max(*b));

    figure(&size, "fleet_tenants", fleet.len(), "tenants");
    figure(&size, "fleet_licence_changes", changes, "changes");
    figure(&size, "fleet_compression", compression, "x");
    figure(&size, "fleet_budget_scale", scale, "x");
    figure(&size, "fleet_app_budget", app_budget, "writes");
    figure(
        &size,
        "fleet_app_window_s",
        format!("{:.1}", app_window.as_secs_f64()),
        "s",
    );
    figure(&size, "fleet_floor_s", format!("{app_floor:.1}"), "s");
    figure(
        &size,
        "fleet_biggest_tenant_floor_s",
        format!("{own_floor:.1}"),
        "s",
    );
    figure(&size, "fleet_wall_s", format!("{wall:.1}"), "s");
    figure(
        &size,
        "fleet_converge_ratio",
        format!("{:.2}", wall / floor),
        "x",
    );
    figure(
        &size,
        "fleet_throttled_pct",
        format!("{:.2}", throttled as f64 * 100.0 / changes as f64),
        "%",
    );
    figure(
        &size,
        "fleet_rss_mib_per_replica",
        format!("{rss:.0}"),
        "MiB",
    );
    figure(
        &size,
        "fleet_failover_s",
        failover.map_or("n/a".into(), |f| format!("{f:.1}")),
        "s",
    );
    figure(
        &size,
        "fleet_repeated_changes",
        made.saturating_sub(changes),
        "changes",
    );
    figure(&size, "fleet_idle_writes", idle, "writes");
    figure(
        &size,
        "fleet_idle_organization_refreshes",
        idle_statuses,
        "writes",
    );
    figure(
        &size,
        "fleet_fairness",
        format!("{:.2}", slowest_small / fair_floor),
        "x",
    );
    assert_eq!(made, changes, "every change made exactly once");
    let _ = stop.send(true);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
