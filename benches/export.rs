//! Adoption, measured: `seatkeeper export` (the release binary, its own process) of a tenant of
//! 1k/10k/100k users, then `seatkeeper plan` on what it wrote, against the same tenant.
//!
//! The tenant: three subscriptions (Office 365 E3 with an audio-conferencing add-on, Microsoft
//! 365 Business Premium, Microsoft 365 E3), 20 departments and 10 % of users without one; of the
//! users, 50 % hold E3, 15 % E3 with Teams turned off, 20 % Business Premium, 5 % Microsoft 365
//! E3, 10 % nothing. The export is split by department into a kustomize folder.
//!
//! Figures, per backend (`embedded`, and `microsoft`: the Microsoft backend reading the same
//! tenant through the emulator, a process of its own, over loopback): `export_ms`, the wall
//! time of the export; `export_rss_mib`, its peak resident memory; `export_objects`, the
//! resources it wrote; `export_plan_ms`, the plan on the export, and `export_plan_changes`, the
//! actions that plan shows (0 when the export is a fixed point; the benchmark fails otherwise).

mod common;

use common::{figure, sizes};
use std::process::{Command, Stdio};
use std::time::Instant;

const ORG: &str = "contoso.com";
const NOW: &str = "2026-11-21T09:00:00Z";
const SUBS: [&str; 3] = [
    "0b9c1f2e-3a4d-4e5f-8a6b-7c8d9e0f1a01",
    "0b9c1f2e-3a4d-4e5f-8a6b-7c8d9e0f1a02",
    "0b9c1f2e-3a4d-4e5f-8a6b-7c8d9e0f1a03",
];

fn tenant_yaml(n: usize) -> String {
    let mut y = format!("organizations:\n- domain: {ORG}\n  paymentMethodOnFile: true\n  users:\n");
    let (mut e3, mut spb, mut spe) = (0, 0, 0);
    for i in 0..n {
        // Departments by blocks of 20 users, so that each holds every kind of licence.
        let department = match (i / 20) % 10 {
            0 => String::new(),
            _ => format!(", department: Department {:02}", (i / 20) % 20),
        };
        let licence = match i % 20 {
            0..=9 => {
                e3 += 1;
                ", licenses: [{product: ENTERPRISEPACK}]"
            }
            10..=12 => {
                e3 += 1;
                ", licenses: [{product: ENTERPRISEPACK, disabledPlans: [TEAMS1]}]"
            }
            13..=16 => {
                spb += 1;
                ", licenses: [{product: SPB}]"
            }
            17 => {
                spe += 1;
                ", licenses: [{product: SPE_E3}]"
            }
            _ => "",
        };
        y += &format!("  - {{upn: u{i}@{ORG}, usageLocation: NL{department}{licence}}}\n");
    }
    y += &format!(
        "  subscriptions:\n  - {{id: {}, product: ENTERPRISEPACK, seats: {}, addOns: [{{id: 0b9c1f2e-3a4d-4e5f-8a6b-7c8d9e0f1a11, product: MCOMEETADV, quantity: 10}}]}}\n  - {{id: {}, product: SPB, seats: {}}}\n  - {{id: {}, product: SPE_E3, seats: {}}}\n",
        SUBS[0],
        e3 + 50,
        SUBS[1],
        spb + 10,
        SUBS[2],
        spe
    );
    y
}

/// `seatkeeper ARGS` in `dir`: exit code, standard output, standard error, and its peak
/// resident memory in MiB. The benchmark runs itself as a small go-between that starts
/// seatkeeper and waits for it with `wait4`: a child's peak memory as the kernel counts it
/// includes its parent's at the time it was started (the process is copied, then replaced),
/// and the benchmark's own process has held large plans by then.
fn run_measured(dir: &std::path::Path, args: &[&str]) -> (i32, String, String, f64) {
    let rss = dir.join("run.rss");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .env(MEASURE, &rss)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
        std::fs::read_to_string(rss)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    )
}

/// Set for the go-between: where it writes the peak memory of the seatkeeper it ran.
const MEASURE: &str = "BENCH_EXPORT_MEASURE_TO";

/// The go-between: runs seatkeeper with its own arguments, writes its peak memory, exits
/// with its exit code.
fn measure(to: &str) -> ! {
    let child = Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
        .args(std::env::args().skip(1))
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: both are plain values we own; the child is waited for here and nowhere else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    std::fs::write(to, format!("{:.1}", usage.ru_maxrss as f64 / 1024.0)).unwrap();
    std::process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    })
}

/// The emulator as its own process on a free loopback port; killed when dropped.
struct Emulator(std::process::Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn emulator(tenant: &std::path::Path) -> (Emulator, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
        .args([
            "emulate",
            "--state",
            tenant.to_str().unwrap(),
            "--listen",
            &listen,
        ])
        .args([
            "--now",
            NOW,
            "--client-id",
            "app",
            "--client-secret",
            "s3cret",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let emulator = Emulator(child);
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(Instant::now() < deadline, "the emulator did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (emulator, format!("http://{listen}"))
}

fn organization(root: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: app, namespace: seatkeeper}}\nstringData: {{secret: s3cret}}\n---\napiVersion: seatkeeper.dev/v1alpha1\nkind: Organization\nmetadata: {{name: contoso}}\nspec:\n  domain: {ORG}\n  backend:\n    microsoft:\n      tenantId: {ORG}\n      endpoints: {{login: '{root}', graph: '{root}', partnerCenter: '{root}'}}\n      partnerCenter: {{enabled: true}}\n      credentials: {{clientId: app, clientSecretRef: {{namespace: seatkeeper, name: app, key: secret}}}}\n"
    )
}

fn run_size(size: &str, users: usize, backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let tenant = dir.path().join("tenant.yaml");
    std::fs::write(&tenant, tenant_yaml(users)).unwrap();
    let label = format!("{size}/{backend}");
    let (_emulator, mut with, state) = if backend == "microsoft" {
        let (emulator, root) = emulator(&tenant);
        std::fs::write(dir.path().join("org.yaml"), organization(&root)).unwrap();
        (Some(emulator), vec!["-f", "org.yaml"], "records.yaml")
    } else {
        (None, vec![], "tenant.yaml")
    };
    let mut export = vec!["export", "--organization", ORG, "--state", state];
    export.extend(&with);
    export.extend(["--now", NOW, "--split-by", "department", "--output", "out/"]);
    let started = Instant::now();
    let (code, _, stderr, rss) = run_measured(dir.path(), &export);
    let export_ms = started.elapsed().as_millis();
    assert_eq!(code, 0, "export failed: {stderr}");
    let objects = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .map(|text| text.matches("\nkind: ").count() + usize::from(text.starts_with("kind: ")))
        .sum::<usize>();
    figure(&label, "export_ms", export_ms, "ms");
    figure(&label, "export_rss_mib", format!("{rss:.1}"), "MiB");
    figure(&label, "export_objects", objects, "objects");

    let mut plan = vec!["plan", "-f", "out", "--state", state, "--now", NOW];
    plan.append(&mut with);
    plan.extend(["-o", "json", "--detailed-exitcode"]);
    let started = Instant::now();
    let (code, stdout, stderr, _) = run_measured(dir.path(), &plan);
    let plan_ms = started.elapsed().as_millis();
    let json: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("plan printed no JSON ({e}): {stderr}"));
    let changes = json["actions"].as_array().map_or(0, Vec::len);
    figure(&label, "export_plan_ms", plan_ms, "ms");
    figure(&label, "export_plan_changes", changes, "actions");
    assert!(
        changes == 0 && (code == 0 || code == 3),
        "the plan on the export is not empty (exit {code}): {}",
        json["actions"]
    );
}

fn main() {
    if let Ok(to) = std::env::var(MEASURE) {
        measure(&to);
    }
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "embedded,microsoft".into());
    for (size, users) in sizes("1k,10k,100k") {
        for backend in backends.split(',') {
            run_size(&size, users, backend);
        }
    }
}
