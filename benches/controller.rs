//! The controller path, measured: `seatkeeper run` (the release binary, its own process) against
//! the project's in-process test API server, with the embedded backend's tenant file.
//!
//! Per size: N users in N/20 LicenseAssignments (one organization, one namespace, seats for
//! everyone), all created before the controller starts. Figures: time from the controller's
//! start until every LicenseAssignment's status says Ready; until the system settled (the
//! last status write before 3 s without any); every status write from the start until settled,
//! per object; the controller's peak RSS; then an idle resync (nothing changed): its duration
//! (from the controller's own reconcile histogram) and the writes it made.
//!
//! The controller's log is shown if it exits or does not converge; `BENCH_WRAP=heaptrack`
//! runs it under a profiler.

#[path = "../tests/support/apiserver.rs"]
mod apiserver;
mod common;

use apiserver::ApiServer;
use common::{figure, peak_rss_mib, sizes, tenant_yaml};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use seatkeeper::api::LicenseAssignment;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ORG: &str = "bench.example";
const NS: &str = "bench";
const PER_OBJECT: usize = 20;
const LAS: &str = "seatkeeper.dev/v1alpha1/licenseassignments";
const RESYNC_SECS: u64 = 5;
/// How long no status write must come for the system to count as settled.
const QUIET: Duration = Duration::from_secs(3);

async fn create_objects(server: &ApiServer, n: usize) {
    let client = server.client();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS,
        "labels": {"seatkeeper.dev/organization": ORG}}}))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let api: Api<LicenseAssignment> = Api::namespaced(client, NS);
    futures::stream::iter(0..n / PER_OBJECT)
        .map(|g| {
            let api = api.clone();
            async move {
                let users: Vec<String> = (g * PER_OBJECT..(g + 1) * PER_OBJECT)
                    .map(|i| format!("u{i}@{ORG}"))
                    .collect();
                let la: LicenseAssignment = serde_json::from_value(json!({
                    "apiVersion": "seatkeeper.dev/v1alpha1", "kind": "LicenseAssignment",
                    "metadata": {"name": format!("team-{g:05}"), "namespace": NS},
                    "spec": {"organization": ORG, "users": users,
                        "licenses": [{"product": "ENTERPRISEPACK"}]},
                }))
                .unwrap();
                api.create(&PostParams::default(), &la).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

fn controller(dir: &std::path::Path, server: &ApiServer, metrics: &str) -> Child {
    let kubeconfig = common::kubeconfig(dir, &server.url);
    // BENCH_WRAP=heaptrack (or another profiler) runs the controller under it.
    let mut command = match std::env::var("BENCH_WRAP") {
        Ok(wrap) => {
            let mut c = Command::new(wrap);
            c.arg(env!("CARGO_BIN_EXE_seatkeeper"));
            c
        }
        Err(_) => Command::new(env!("CARGO_BIN_EXE_seatkeeper")),
    };
    command
        .arg("run")
        .arg("--state")
        .arg(dir.join("tenant.yaml"))
        .args(["--metrics-addr", metrics, "--leader-election", "false"])
        .args([
            "--resync",
            &format!("{RESYNC_SECS}s"),
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("controller.log")).unwrap())
        .spawn()
        .unwrap()
}

/// The controller process goes when the benchmark does, even when it panics.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every LicenseAssignment says Ready (whatever the number of status writes so far).
fn ready(server: &ApiServer, objects: usize) -> bool {
    let all = server.objects(LAS);
    all.len() == objects
        && all.iter().all(|o| {
            o["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
}

/// (reconciles run, seconds they took in all) from the controller's /metrics.
/// (reconciles ended, their total duration in seconds, reconciles started).
async fn reconciles(metrics: &str) -> (f64, f64, f64) {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // The histogram's own count: a reconcile is counted in it when it ends, with its duration
    // (the reconciles counter goes up when one starts, before its duration is in the sum).
    (
        value("seatkeeper_reconcile_duration_seconds_count "),
        value("seatkeeper_reconcile_duration_seconds_sum "),
        value("seatkeeper_reconciles_total "),
    )
}

async fn run_size(size: &str, users: usize) {
    let objects = users / PER_OBJECT;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tenant.yaml"), tenant_yaml(ORG, users)).unwrap();
    let server = ApiServer::start().await;
    create_objects(&server, users).await;
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };

    let started = Instant::now();
    let mut child = Killed(controller(dir.path(), &server, &metrics));
    let child = &mut child.0;
    while !ready(&server, objects) {
        let log = || std::fs::read_to_string(dir.path().join("controller.log")).unwrap();
        assert!(
            child.try_wait().unwrap().is_none(),
            "the controller exited: {}",
            log()
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no convergence in 10 minutes: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let converged = started.elapsed();
    figure(
        size,
        "controller_converge_ms",
        format!("{:.0}", converged.as_secs_f64() * 1000.0),
        "ms",
    );
    // Settled: no status write for a quiet period. Every status write from the start until
    // then is counted, the ones after Ready included.
    let mut last = server.status_writes();
    let mut since = Instant::now();
    while since.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = server.status_writes();
        if now != last {
            (last, since) = (now, Instant::now());
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "status writes never stopped"
        );
    }
    figure(
        size,
        "controller_settled_ms",
        format!("{:.0}", (since - started).as_secs_f64() * 1000.0),
        "ms",
    );
    let writes = server.status_writes();
    figure(
        size,
        "controller_status_writes_per_object",
        format!("{:.2}", writes as f64 / objects as f64),
        "writes",
    );

    // Idle: after the next reconcile has finished (the convergence's Events are out by then),
    // the one after it is a resync with nothing to do: its duration and writes.
    let next = |after: (f64, f64, f64)| {
        let metrics = metrics.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(RESYNC_SECS * 4);
            loop {
                let now = reconciles(&metrics).await;
                if now.0 > after.0 {
                    return now;
                }
                assert!(Instant::now() < deadline, "no resync came");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let converging = reconciles(&metrics).await;
    figure(
        size,
        "controller_reconciles",
        format!("{:.0}", converging.2),
        "reconciles",
    );
    let settled = next(converging).await;
    let tenant_before = std::fs::read(dir.path().join("tenant.yaml")).unwrap();
    let all_writes = server.writes_to("/");
    let idle = next(settled).await;
    figure(
        size,
        "controller_idle_resync_ms",
        format!(
            "{:.0}",
            (idle.1 - settled.1) / (idle.0 - settled.0) * 1000.0
        ),
        "ms",
    );
    let idle_writes = server.writes_to("/") - all_writes
        + usize::from(std::fs::read(dir.path().join("tenant.yaml")).unwrap() != tenant_before);
    figure(
        size,
        "controller_idle_writes",
        idle_writes.to_string(),
        "writes",
    );
    figure(
        size,
        "controller_rss_mib",
        format!("{:.1}", peak_rss_mib(&child.id().to_string())),
        "MiB",
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for (size, users) in sizes("10k,100k") {
        rt.block_on(run_size(&size, users));
    }
}
