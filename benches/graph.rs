//! Graph's write budget, measured: the Microsoft backend against the emulator with the budget
//! switched on (3,000 licence writes per window), time compressed: the window is 150 s divided
//! by the compression factor, so a run that would take hours takes seconds.
//!
//! Figures: `graph_budget_ratio`, wall time against the floor (`writes / 3,000 × window`), and
//! `graph_throttled_pct`, the share of licence writes the emulator answered 429.
//!
//! Then the same with a hidden budget: the emulator grants only 25 % or 50 % of the documented
//! budget and the client is not told (it is configured with the documented 3,000): a second
//! deployment on the same app registration, as it were. `graph_budget_ratio_hidden` is wall
//! time against the floor of the budget actually granted (`writes / granted × window`), and
//! `graph_throttled_pct_hidden` the share of writes answered 429; rows are labelled
//! `{size}@25%` and `{size}@50%`.

mod common;

use common::{figure, sizes, tenant_yaml};
use seatkeeper::api::{AssignmentIntent, LicenseAssignmentStatus};
use seatkeeper::backend::embedded::{Embedded, TenantFile};
use seatkeeper::backend::microsoft::credential::Credential;
use seatkeeper::backend::microsoft::{Config, Endpoints, GRAPH_WRITE_BUDGET, Microsoft};
use seatkeeper::clock::FixedClock;
use seatkeeper::emulator::{Emulator, Faults, Options as EmulatorOptions};
use seatkeeper::executor::{DEFAULT_MAX_PASSES, NoLedger, converge};
use seatkeeper::planner::{Declared, Desired, Meta, Options};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ORG: &str = "contoso.com";
/// 150 s become 1 s, unless `BENCH_COMPRESSION` says otherwise (a smaller factor shrinks what
/// compression magnifies: fixed costs such as reading the tenant).
fn compression() -> u32 {
    std::env::var("BENCH_COMPRESSION")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|c| *c > 0)
        .unwrap_or(150)
}

fn now() -> seatkeeper::domain::Instant {
    "2026-11-21T09:00:00Z".parse().unwrap()
}

fn tenant(n: usize) -> TenantFile {
    TenantFile::parse(&tenant_yaml(ORG, n), "bench-tenant.yaml").unwrap()
}

fn desired(n: usize) -> Desired {
    let mut d = Desired::default();
    for g in 0..n.div_ceil(100) {
        let users: Vec<String> = (g * 100..n.min((g + 1) * 100))
            .map(|i| format!("u{i}@{ORG}"))
            .collect();
        let spec: AssignmentIntent = serde_json::from_value(serde_json::json!({
            "organization": ORG, "users": users, "licenses": [{"product": "ENTERPRISEPACK"}],
        }))
        .unwrap();
        d.assignments.push(Declared::<_, LicenseAssignmentStatus> {
            meta: Meta {
                namespace: "bench".into(),
                name: format!("team-{g:05}"),
                uid: format!("uid-{g}"),
                created_at: now(),
                generation: Some(1),
                ..Default::default()
            },
            spec,
            status: Default::default(),
        });
    }
    d
}

async fn run_size(size: &str, n: usize, granted_pct: u32) {
    let (budget, window) = GRAPH_WRITE_BUDGET;
    let window = window / compression();
    // What the service grants: the documented budget, or a share of it nobody tells the client.
    let granted = budget * granted_pct / 100;
    let hidden = granted_pct < 100;
    let clock = Arc::new(FixedClock::new(now()));
    let emulator = Arc::new(Emulator::new(
        Embedded::new(tenant(n), None, clock.clone()),
        EmulatorOptions {
            client_id: Some("app".into()),
            client_secret: Some("s3cret".into()),
            token_lifetime: 3600,
            faults: Faults {
                write_budget: Some(granted),
                window,
                ..Faults::default()
            },
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let served = emulator.clone();
    let server = tokio::spawn(async move {
        seatkeeper::emulator::serve(listener, served, rx)
            .await
            .unwrap()
    });
    let backend = Microsoft::new(Config {
        organization: ORG.into(),
        tenant_id: ORG.into(),
        endpoints: Endpoints::at(&root),
        client_id: "app".into(),
        credential: Credential::Secret("s3cret".into()),
        partner_center_customer: None,
        timeout: Duration::from_secs(30),
        write_budget: Some((budget, window)),
        app_budget: None,
        partner_pause: None,
    })
    .unwrap();
    let mut d = desired(n);
    let started = Instant::now();
    let report = converge(
        &backend,
        &mut NoLedger,
        &mut d,
        &*clock,
        &Options::default(),
        DEFAULT_MAX_PASSES,
    )
    .await
    .unwrap();
    let wall = started.elapsed();
    assert!(report.converged, "did not converge");
    let licensed = emulator.tenant().organizations[0].consumed("ENTERPRISEPACK");
    assert_eq!(licensed as usize, n, "not every user was licensed");
    let (requests, _, _, throttled) = emulator.fault_counts();
    let writes = n as f64;
    let floor = writes / granted as f64 * window.as_secs_f64();
    let (size, suffix) = if hidden {
        (format!("{size}@{granted_pct}%"), "_hidden")
    } else {
        (size.to_string(), "")
    };
    let size = size.as_str();
    figure(size, "graph_writes", format!("{writes}"), "writes");
    figure(size, "graph_requests", requests.to_string(), "requests");
    figure(
        size,
        "graph_wall_ms",
        format!("{:.0}", wall.as_secs_f64() * 1000.0),
        "ms",
    );
    figure(
        size,
        "graph_floor_ms",
        format!("{:.0}", floor * 1000.0),
        "ms",
    );
    figure(
        size,
        &format!("graph_budget_ratio{suffix}"),
        format!("{:.3}", wall.as_secs_f64() / floor),
        "x",
    );
    figure(
        size,
        &format!("graph_throttled_pct{suffix}"),
        format!(
            "{:.2}",
            throttled as f64 / (writes + throttled as f64) * 100.0
        ),
        "%",
    );
    let _ = stop.send(true);
    let _ = server.await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for (size, users) in sizes("10k,30k") {
        rt.block_on(run_size(&size, users, 100));
    }
    // Its own list: `BENCH_SIZES` names the runs above only.
    let hidden_sizes = std::env::var("BENCH_HIDDEN_SIZES").unwrap_or_else(|_| "10k".into());
    for size in hidden_sizes.split(',') {
        let (size, users) = (size.to_string(), common::users_of(size));
        for pct in [25, 50] {
            rt.block_on(run_size(&size, users, pct));
        }
    }
}
