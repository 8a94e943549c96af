//! How fast seatkeeper converges, how few backend calls it makes, how little memory it holds.
//!
//! `cargo bench` runs each size (1k, 10k, 100k users; `BENCH_SIZES=1k,10k` to choose) in its
//! own process, so peak RSS is that size's alone, and prints one figure per line:
//! `SIZE FIGURE VALUE UNIT`. The workload: one organization, several products and
//! subscriptions, a LicenseAssignment per 100 users (so tens to thousands of them), a seat
//! increase, 10% of users already licensed (half of every Business Standard group, at every
//! size; `users_already_licensed` prints it), and 2% more demand for Microsoft 365 E3 than
//! seats (contention).

mod common;

use common::{figure, peak_rss_mib, sizes, users_of};
use seatkeeper::api::{
    AssignmentIntent, LicenseAssignmentStatus, SubscriptionIntent, SubscriptionStatus,
};
use seatkeeper::backend::embedded::{Embedded, TenantFile};
use seatkeeper::backend::hooked::{Hooked, Latency};
use seatkeeper::backend::{Backend, MAX_BATCH};
use seatkeeper::clock::FixedClock;
use seatkeeper::domain::Instant;
use seatkeeper::executor::{DEFAULT_MAX_PASSES, NoLedger, converge, observe};
use seatkeeper::planner::{self, Declared, Desired, Meta, Op, Options};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant as Wall};

const ORG: &str = "bench.example";
const GROUP: usize = 100;
const LATENCY_MS: u64 = 20;
const CONCURRENCY: usize = 10;
const BASELINE_SAMPLE: u64 = 1_000;

fn now() -> Instant {
    "2026-11-21T09:00:00Z".parse().unwrap()
}

/// Product of the users of group `g`: 50% E3, 30% Microsoft 365 E3, 20% Business Standard.
fn product_of(g: usize) -> &'static str {
    match g % 10 {
        0..=4 => "ENTERPRISEPACK",
        5..=7 => "SPE_E3",
        _ => "O365_BUSINESS_PREMIUM",
    }
}

fn demand(n: usize, product: &str) -> usize {
    (0..n.div_ceil(GROUP))
        .filter(|g| product_of(*g) == product)
        .map(|g| GROUP.min(n - g * GROUP))
        .sum()
}

fn tenant(n: usize) -> TenantFile {
    let mut y = format!("organizations:\n- domain: {ORG}\n  paymentMethodOnFile: true\n  users:\n");
    for i in 0..n {
        let g = i / GROUP;
        // Half of every Business Standard group holds its licence already: 10% of users.
        let held = product_of(g) == "O365_BUSINESS_PREMIUM" && i % 2 == 0;
        let _ = write!(y, "  - upn: u{i}@{ORG}\n    usageLocation: NL\n");
        if held {
            y += "    licenses: [{product: O365_BUSINESS_PREMIUM}]\n";
        }
    }
    let e3 = demand(n, "ENTERPRISEPACK");
    let _ = write!(
        y,
        "  subscriptions:\n  - {{id: sub-e3, product: ENTERPRISEPACK, seats: {}}}\n  - {{id: sub-m365, product: SPE_E3, seats: {}}}\n  - {{id: sub-bs, product: O365_BUSINESS_PREMIUM, seats: {}}}\n  - {{id: sub-exo, product: EXCHANGESTANDARD, seats: 10}}\n",
        e3 * 80 / 100,
        demand(n, "SPE_E3") * 98 / 100,
        demand(n, "O365_BUSINESS_PREMIUM"),
    );
    TenantFile::parse(&y, "bench-tenant.yaml").unwrap()
}

fn meta(name: String, age: i64) -> Meta {
    Meta {
        namespace: "bench".into(),
        uid: format!("uid-{name}"),
        name,
        created_at: now() - jiff::SignedDuration::from_secs(age),
        generation: Some(1),
        ..Default::default()
    }
}

fn desired(n: usize) -> Desired {
    let mut d = Desired::default();
    let spec: SubscriptionIntent = serde_json::from_value(serde_json::json!({
        "organization": ORG, "product": "ENTERPRISEPACK", "subscriptionId": "sub-e3",
        "seats": demand(n, "ENTERPRISEPACK"),
    }))
    .unwrap();
    let mut e3 = meta("e3".into(), 1_000_000);
    // The raise is far over the purchase guard: consented to, as a platform team would.
    e3.flags.allow_large_purchase = true;
    d.subscriptions.push(Declared::<_, SubscriptionStatus> {
        meta: e3,
        spec,
        status: Default::default(),
    });
    for g in 0..n.div_ceil(GROUP) {
        let users: Vec<String> = (g * GROUP..n.min((g + 1) * GROUP))
            .map(|i| format!("u{i}@{ORG}"))
            .collect();
        let spec: AssignmentIntent = serde_json::from_value(serde_json::json!({
            "organization": ORG, "users": users, "licenses": [{"product": product_of(g)}],
        }))
        .unwrap();
        d.assignments.push(Declared::<_, LicenseAssignmentStatus> {
            meta: meta(format!("team-{g:05}"), 100_000 - g as i64),
            spec,
            status: Default::default(),
        });
    }
    d
}

/// The users whose licences a run changed (refused changes left out).
fn users_changed(report: &seatkeeper::executor::Report) -> usize {
    report
        .executed
        .iter()
        .filter(|e| e.refused.is_none())
        .map(|e| match &e.action.op {
            Op::AssignLicenses { users } => users.len(),
            _ => 0,
        })
        .sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The naive way: every user change is its own call, one after another. Stops after `limit`
/// calls; returns the calls made.
async fn naive<B: Backend>(backend: &B, desired: &Desired, options: &Options, limit: u64) -> u64 {
    let mut calls = 0;
    for _ in 0..DEFAULT_MAX_PASSES {
        let observed = observe(backend, &[ORG.to_string()]).await.unwrap();
        calls += 1;
        let plan = planner::plan(desired, &observed, now(), options);
        if plan.actions.is_empty() {
            break;
        }
        for a in &plan.actions {
            if calls >= limit {
                return calls;
            }
            match &a.op {
                Op::AssignLicenses { users } => {
                    for u in users {
                        if calls >= limit {
                            return calls;
                        }
                        calls += 1;
                        let _ = backend.assign_licences(ORG, std::slice::from_ref(u)).await;
                    }
                }
                Op::SetSeats {
                    subscription_id,
                    cost,
                    ..
                } => {
                    calls += 1;
                    let _ = backend.set_seats(ORG, subscription_id, cost.to, None).await;
                }
                _ => {}
            }
        }
    }
    calls
}

fn run<B: Backend>(
    rt: &tokio::runtime::Runtime,
    backend: &B,
    desired: &mut Desired,
    clock: &FixedClock,
    options: &Options,
) -> seatkeeper::executor::Report {
    rt.block_on(converge(
        backend,
        &mut NoLedger,
        desired,
        clock,
        options,
        DEFAULT_MAX_PASSES,
    ))
    .unwrap()
}

fn run_size(size: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = Options {
        concurrency: CONCURRENCY,
        ..Options::default()
    };
    let clock = Arc::new(FixedClock::new(now()));

    // 1. What seatkeeper itself holds and does: one tenant, the manifests, plan and converge
    //    in memory. Peak RSS is read right after, before the benchmark's own extra copies.
    let memory = Embedded::new(tenant(n), None, clock.clone());
    let mut d = desired(n);
    let observed = rt.block_on(observe(&memory, &[ORG.to_string()])).unwrap();
    let t = Wall::now();
    let first = planner::plan(&d, &observed, now(), &options);
    figure(
        size,
        "plan_pass_ms",
        format!("{:.1}", ms(t.elapsed())),
        "ms",
    );
    drop(first);
    drop(observed);
    let t = Wall::now();
    let report = run(&rt, &memory, &mut d, &clock, &options);
    let converge_ms = ms(t.elapsed());
    figure(size, "converge_ms", format!("{converge_ms:.1}"), "ms");
    assert!(
        report.converged,
        "{size}: not converged in {} passes",
        report.passes
    );
    figure(size, "passes", report.passes, "passes");
    figure(size, "backend_reads", report.backend_reads, "calls");
    figure(size, "backend_writes", report.backend_writes, "calls");
    let user_changes = users_changed(&report);
    let other_changes = report
        .executed
        .iter()
        .filter(|e| !matches!(e.action.op, Op::AssignLicenses { .. }))
        .count();
    let bound = user_changes.div_ceil(MAX_BATCH) + other_changes;
    figure(size, "user_changes", user_changes, "users");
    let licensed = tenant(n).organizations[0]
        .users
        .iter()
        .filter(|u| !u.licenses.is_empty())
        .count();
    figure(
        size,
        "users_already_licensed",
        format!("{:.1}", 100.0 * licensed as f64 / n as f64),
        "%",
    );
    figure(
        size,
        "writes_vs_lower_bound",
        format!("{:.2}", report.backend_writes as f64 / bound.max(1) as f64),
        "x",
    );
    figure(
        size,
        "writes_per_user",
        format!("{:.3}", report.backend_writes as f64 / n as f64),
        "calls",
    );
    let pending: i64 = d.assignments.iter().map(|a| a.status.pending).sum();
    figure(size, "users_pending_for_seats", pending, "users");
    drop(report);

    // Idle: a pass after convergence plans nothing and writes nothing.
    let observed = rt.block_on(observe(&memory, &[ORG.to_string()])).unwrap();
    let idle = planner::plan(&d, &observed, now(), &options);
    figure(size, "idle_actions", idle.actions.len(), "actions");
    drop((observed, idle));
    let writes_before = memory.writes();
    let again = run(&rt, &memory, &mut d, &clock, &options);
    figure(
        size,
        "idle_writes",
        again.backend_writes + (memory.writes() - writes_before),
        "calls",
    );
    figure(
        size,
        "peak_rss_mib",
        format!("{:.1}", peak_rss_mib("self")),
        "MiB",
    );
    drop((again, memory, d));

    // 2. With a simulated per-call latency and bounded concurrency.
    let slow = Hooked {
        inner: Embedded::new(tenant(n), None, clock.clone()),
        hook: Latency(Duration::from_millis(LATENCY_MS)),
    };
    let mut d = desired(n);
    let t = Wall::now();
    let slow_report = run(&rt, &slow, &mut d, &clock, &options);
    let latency_ms = ms(t.elapsed());
    // The ideal: the users that change, in full batches, CONCURRENCY at a time. (Before
    // 2026-12-02 it counted all N users, changed or not, and flattered the ratio.)
    let changed = users_changed(&slow_report);
    let ideal = changed.div_ceil(MAX_BATCH) as f64 * LATENCY_MS as f64 / CONCURRENCY as f64;
    figure(
        size,
        "converge_latency_ms",
        format!("{latency_ms:.0}"),
        "ms",
    );
    figure(
        size,
        "latency_ratio",
        format!("{:.2}", latency_ms / ideal),
        "x",
    );
    drop((slow, d));

    // 3. The naive executor (one call per user, one at a time) on the same workload and the same
    //    latency. It is run for at most BASELINE_SAMPLE calls; its time per call is measured
    //    and scaled to its full call count, counted exactly by a run without latency.
    let d = desired(n);
    let counting = Embedded::new(tenant(n), None, clock.clone());
    let naive_calls = rt.block_on(naive(&counting, &d, &options, u64::MAX));
    drop(counting);
    let slow = Hooked {
        inner: Embedded::new(tenant(n), None, clock.clone()),
        hook: Latency(Duration::from_millis(LATENCY_MS)),
    };
    let t = Wall::now();
    let sampled = rt.block_on(naive(&slow, &d, &options, BASELINE_SAMPLE));
    let naive_ms = ms(t.elapsed()) / sampled as f64 * naive_calls as f64;
    drop((slow, d));
    figure(size, "baseline_calls", naive_calls, "calls");
    figure(size, "baseline_latency_ms", format!("{naive_ms:.0}"), "ms");
    figure(
        size,
        "baseline_speedup",
        format!("{:.1}", naive_ms / latency_ms),
        "x",
    );

    // 4. With the tenant file rewritten (atomically) after every change. Slow at 100k (see
    //    BENCHMARKS.md); BENCH_PERSISTED=0 leaves it out.
    if std::env::var("BENCH_PERSISTED").is_ok_and(|v| v == "0") {
        return;
    }
    let base = tenant(n);
    let t = Wall::now();
    let yaml = base.to_yaml();
    figure(
        size,
        "tenant_yaml_ms",
        format!("{:.1}", ms(t.elapsed())),
        "ms",
    );
    figure(
        size,
        "tenant_file_mib",
        format!("{:.1}", yaml.len() as f64 / 1048576.0),
        "MiB",
    );
    let dir = std::env::temp_dir().join(format!("seatkeeper-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tenant.yaml");
    std::fs::write(&path, yaml).unwrap();
    drop(base);
    let persisted = Embedded::open(&path, clock.clone()).unwrap();
    let mut d = desired(n);
    let t = Wall::now();
    run(&rt, &persisted, &mut d, &clock, &options);
    figure(
        size,
        "converge_persisted_ms",
        format!("{:.1}", ms(t.elapsed())),
        "ms",
    );
    let on_disk = TenantFile::load(&path).unwrap();
    assert!(
        on_disk.organizations == persisted.tenant().organizations,
        "the tenant file does not hold what the run did"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    if let Ok(size) = std::env::var("SEATKEEPER_BENCH_SIZE") {
        run_size(&size, users_of(&size));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for (size, _) in sizes("1k,10k,100k") {
        let status = std::process::Command::new(&exe)
            .env("SEATKEEPER_BENCH_SIZE", &size)
            .status()
            .unwrap();
        assert!(status.success(), "{size} failed");
    }
}
