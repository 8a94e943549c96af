//! Local runs never buy twice and never lose the tenant file or its records (CONTRACT §5.2),
//! through the binary: two runs on one file, the lock's message, the purchase key of one
//! declaration, SIGINT/SIGTERM half-way through a long apply, and the tenant's clock.

mod backend {
    pub const MICROSOFT: bool = false;
}

#[path = "support/cli.rs"]
mod cli;

use cli::*;
use seatkeeper::backend::embedded::TenantFile;
use seatkeeper::backend::{journal, lock};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ACK: &str = "annotations: {seatkeeper.dev/acknowledge-downgrade: \"true\", seatkeeper.dev/allow-bulk-removal: \"true\"}";

/// `n` users; an Exchange subscription with seats for all; large enough (n ≥ 3,000) that its
/// changes are journaled.
fn big_tenant(n: usize) -> String {
    tenant(
        &users(n, ""),
        &s("sub-ex", "EXCHANGESTANDARD", n as u32, ""),
    )
}

/// A new 10-seat Business Essentials subscription, and every user given Exchange by
/// LicenseAssignments of 100 users each (deleted with Unassign, acknowledged).
fn big_manifests(n: usize) -> String {
    let mut m = String::from(
        "apiVersion: seatkeeper.dev/v1alpha1\nkind: Subscription\nmetadata: {name: essentials}\nspec: {organization: contoso.com, product: O365_BUSINESS_ESSENTIALS, seats: 10}\n",
    );
    for g in 0..n.div_ceil(100) {
        let members: Vec<String> = (g * 100..((g + 1) * 100).min(n))
            .map(|i| format!("u{i}@contoso.com"))
            .collect();
        m += &format!(
            "---\napiVersion: seatkeeper.dev/v1alpha1\nkind: LicenseAssignment\nmetadata: {{name: team-{g}, {ACK}}}\nspec: {{organization: contoso.com, users: [{}], licenses: [{{product: EXCHANGESTANDARD}}], deletionPolicy: Unassign}}\n",
            members.join(", ")
        );
    }
    m
}

fn spawn(dir: &Path, verb: &str, manifests: &str, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
        .args([
            verb,
            "-f",
            manifests,
            "--state",
            "tenant.yaml",
            "--now",
            NOW,
        ])
        .args(["-o", "json"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

struct Done {
    code: i32,
    out: serde_json::Value,
    stderr: String,
}

fn finish(child: std::process::Child) -> Done {
    let out = child.wait_with_output().unwrap();
    Done {
        code: out.status.code().unwrap_or(-1),
        out: serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn buys(d: &Done) -> usize {
    d.out["actions"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|x| x["action"] == "buy").count())
}

fn essentials(t: &TenantFile) -> usize {
    t.organizations[0]
        .subscriptions
        .iter()
        .filter(|s| s.product == "O365_BUSINESS_ESSENTIALS")
        .count()
}

/// Every licence a user holds is one some LicenseAssignment's record owns (nothing else
/// assigns licences in these tenants).
fn assert_every_licence_is_recorded(t: &TenantFile, after: &str) {
    let mut owned = BTreeSet::new();
    for r in &t.resources {
        for o in r.status["owned"].as_array().into_iter().flatten() {
            owned.insert((
                o["user"].as_str().unwrap().to_lowercase(),
                o["product"].as_str().unwrap().to_string(),
            ));
        }
    }
    let mut missing = vec![];
    for u in &t.organizations[0].users {
        for l in &u.licenses {
            if !owned.contains(&(u.upn.to_lowercase(), l.product.clone())) {
                missing.push(format!("{} {}", u.upn, l.product));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "after {after}: {} licences not on record, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
}

fn held(t: &TenantFile) -> usize {
    t.organizations[0]
        .users
        .iter()
        .map(|u| u.licenses.len())
        .sum()
}

fn setup(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tenant.yaml"), big_tenant(n)).unwrap();
    std::fs::write(dir.path().join("m.yaml"), big_manifests(n)).unwrap();
    dir
}

#[test]
fn two_applies_at_once_buy_once_and_never_tear_or_lose_the_file() {
    // 3,000 users journal their changes like larger tenants, and a run lasts long enough for
    // the second to start while the first holds the lock. LOCAL_SAFETY_FULL=1 runs the first
    // two rounds at the size of the first report (20,000 users), about 40 s more.
    let full = std::env::var_os("LOCAL_SAFETY_FULL").is_some();
    for round in 0..6 {
        let dir = setup(if full && round < 2 { 20_000 } else { 3_000 });
        // Apply then apply, or delete (of nothing yet) racing an apply: either order.
        let (first, second) = if round % 2 == 0 {
            ("apply", "apply")
        } else {
            ("delete", "apply")
        };
        // Each waits for the other as long as it takes (a loaded machine is slow).
        let wait = ["--lock-timeout", "600s"];
        let a = spawn(dir.path(), first, "m.yaml", &wait);
        std::thread::sleep(Duration::from_millis(30 * (round as u64 % 3)));
        let b = spawn(dir.path(), second, "m.yaml", &wait);
        // Both outputs are read at once: a run blocked on a full pipe would hold the lock.
        let a = std::thread::spawn(move || finish(a));
        let (b, a) = (finish(b), a.join().unwrap());
        let t = TenantFile::load(&dir.path().join("tenant.yaml"))
            .unwrap_or_else(|e| panic!("round {round}: the tenant file is lost or torn: {e}"));
        assert_eq!(essentials(&t), 1, "round {round}: bought once");
        assert!(
            buys(&a) + buys(&b) <= 1,
            "round {round}: one run bought, the other found it"
        );
        for d in [&a, &b] {
            assert!([0, 3].contains(&d.code), "round {round}: {}", d.stderr);
        }
        let stray: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "round {round}: {stray:?}");
    }
}

#[test]
fn a_run_that_cannot_get_the_lock_fails_naming_the_file_and_the_holder_and_changes_nothing() {
    let t = Tenant::new(&tenant(&users(2, ""), &s("sub-1", "SPB", 2, "")));
    let path = t.dir.path().join("tenant.yaml");
    let before = std::fs::read(&path).unwrap();
    let held = lock::acquire(
        &path,
        lock::Access::Write,
        Duration::ZERO,
        "seatkeeper apply",
    )
    .unwrap();
    let m = lasg("a", &["u0@contoso.com"], "[{product: SPB}]", "");
    let started = Instant::now();
    for verb in ["apply", "plan", "delete"] {
        let r = t.run_with(verb, &m, NOW, &["--lock-timeout", "300ms"]);
        assert_eq!(r.code, 1, "{verb}: {}", r.stderr);
        let line = r.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{verb}: one line: {line}");
        let me = format!("seatkeeper apply (pid {})", std::process::id());
        assert!(line.contains("tenant.yaml is in use by"), "{verb}: {line}");
        assert!(line.contains(&me), "{verb}: names the holder: {line}");
        assert!(line.contains("waited 300ms"), "{verb}: {line}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "each waited"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing changed");
    drop(held);
    assert_eq!(t.apply(&m).code, 0, "free again");
}

#[test]
fn plans_share_the_lock_with_each_other() {
    let t = Tenant::new(&tenant(&users(2, ""), &s("sub-1", "SPB", 2, "")));
    let path = t.dir.path().join("tenant.yaml");
    let _reader = lock::acquire(&path, lock::Access::Read, Duration::ZERO, "plan").unwrap();
    let m = lasg("a", &["u0@contoso.com"], "[{product: SPB}]", "");
    let r = t.run_with("plan", &m, NOW, &["--lock-timeout", "0"]);
    assert_eq!(r.code, 0, "plans share: {}", r.stderr);
    let r = t.run_with("apply", &m, NOW, &["--lock-timeout", "0"]);
    assert_eq!(r.code, 1, "a writer waits for readers: {}", r.stderr);
    assert!(r.stderr.contains("in use by"), "{}", r.stderr);
}

#[test]
fn the_purchase_key_is_a_function_of_the_declaration_not_of_the_run() {
    // Two runs of one declaration, a second apart, each on its own copy of the tenant: before,
    // the key ended in each run's start time (…767 and …768), so neither could have found the
    // other's purchase.
    let m = "apiVersion: seatkeeper.dev/v1alpha1\nkind: Subscription\nmetadata: {name: essentials}\nspec: {organization: contoso.com, product: O365_BUSINESS_ESSENTIALS, seats: 10}\n";
    let key = |now: &str| {
        let t = Tenant::new(&tenant(&users(1, ""), &s("sub-1", "SPB", 1, "")));
        assert_eq!(t.run("apply", m, now).code, 0);
        let file = TenantFile::load(&t.dir.path().join("tenant.yaml")).unwrap();
        file.organizations[0]
            .subscriptions
            .iter()
            .find(|s| s.product == "O365_BUSINESS_ESSENTIALS")
            .and_then(|s| s.purchase_key.clone())
            .unwrap()
    };
    let a = key("2026-11-21T09:00:00Z");
    let b = key("2026-11-21T09:00:01Z");
    assert_eq!(a, b);
    assert_eq!(
        a,
        "seatkeeper:contoso.com:Subscription:default/essentials:cli-1"
    );
}

#[test]
fn a_resource_deleted_and_applied_again_is_a_new_purchase() {
    let t = Tenant::new(&tenant(&users(1, ""), &s("sub-1", "SPB", 1, "")));
    let m = "apiVersion: seatkeeper.dev/v1alpha1\nkind: Subscription\nmetadata: {name: essentials}\nspec: {organization: contoso.com, product: O365_BUSINESS_ESSENTIALS, seats: 10, deletionPolicy: Cancel}\n";
    assert_eq!(t.apply(m).code, 0);
    assert_eq!(t.run("delete", m, NOW).code, 0);
    let r = t.apply(m);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.actions(),
        ["buy"],
        "a new subscription, not the cancelled one"
    );
    let file = TenantFile::load(&t.dir.path().join("tenant.yaml")).unwrap();
    let keys: Vec<_> = file.organizations[0]
        .subscriptions
        .iter()
        .filter_map(|s| s.purchase_key.clone())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[1].ends_with(":cli-2"), "{keys:?}");
}

/// Waits until the journal beside `dir`'s tenant file has `lines` acknowledged changes.
fn wait_for_journal(dir: &Path, lines: usize, child: &mut std::process::Child) {
    let journal = journal::path_of(&dir.join("tenant.yaml"));
    let start = Instant::now();
    loop {
        let n = std::fs::read_to_string(&journal)
            .map(|t| t.matches('\n').count())
            .unwrap_or(0);
        if n >= lines {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the apply ended before {lines} journaled changes"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

#[test]
fn sigint_and_sigterm_finish_the_batch_save_every_record_and_exit_130() {
    // Journaled (at least 3,000 users), and 150 licence batches: room to stop half-way.
    const N: usize = 3_000;
    for (case_no, (sig, point)) in [("INT", 3), ("TERM", 3), ("INT", 60), ("TERM", 60)]
        .into_iter()
        .enumerate()
    {
        let dir = setup(N);
        let mut child = spawn(dir.path(), "apply", "m.yaml", &[]);
        wait_for_journal(dir.path(), point, &mut child);
        signal(&child, sig);
        let done = finish(child);
        let case = format!("SIG{sig} after {point} changes");
        assert_eq!(done.code, 130, "{case}: {}", done.stderr);
        assert!(
            done.stderr.contains("interrupted: stopped after"),
            "{case}: {}",
            done.stderr
        );
        assert!(
            done.out["actions"].is_array(),
            "{case}: what was done is printed"
        );
        let t = TenantFile::load(&dir.path().join("tenant.yaml")).unwrap();
        assert!(held(&t) < N, "{case}: stopped before the end");
        assert_every_licence_is_recorded(&t, &case);
        // The next apply finishes the job, buying nothing twice; a delete then finds every
        // licence seatkeeper wrote.
        let again = finish(spawn(dir.path(), "apply", "m.yaml", &[]));
        assert_eq!(again.code, 0, "{case}: {}", again.stderr);
        let t = TenantFile::load(&dir.path().join("tenant.yaml")).unwrap();
        assert_eq!(essentials(&t), 1, "{case}");
        assert_eq!(held(&t), N, "{case}");
        assert_every_licence_is_recorded(&t, &case);
        // Each case's records were checked above; that a delete acts on them is shown once.
        if case_no > 0 {
            continue;
        }
        let gone = finish(spawn(dir.path(), "delete", "m.yaml", &[]));
        assert_eq!(gone.code, 0, "{case}: {}", gone.stderr);
        let t = TenantFile::load(&dir.path().join("tenant.yaml")).unwrap();
        assert_eq!(
            held(&t),
            0,
            "{case}: delete removed every licence seatkeeper assigned"
        );
    }
}

#[test]
fn a_second_signal_stops_at_once_and_leaves_a_valid_file() {
    const N: usize = 3_000;
    let dir = setup(N);
    let mut child = spawn(dir.path(), "apply", "m.yaml", &[]);
    wait_for_journal(dir.path(), 3, &mut child);
    signal(&child, "INT");
    signal(&child, "INT");
    let done = finish(child);
    assert_eq!(done.code, 130, "{}", done.stderr);
    let t = TenantFile::load(&dir.path().join("tenant.yaml")).unwrap();
    assert_eq!(essentials(&t), 1);
    assert_every_licence_is_recorded(&t, "a second signal");
    let again = finish(spawn(dir.path(), "apply", "m.yaml", &[]));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(buys(&again), 0, "bought once");
}

#[test]
fn now_may_not_run_back_past_a_recorded_seat_change() {
    let t = Tenant::new(&tenant(&users(1, ""), &s("sub-1", "SPB", 7, "")));
    let seats = |n: i32| sub("spb", "sub-1", "SPB", n, "");
    assert_eq!(t.run("apply", &seats(7), "2026-11-21T09:00:00Z").code, 0);
    let r = t.run("apply", &seats(9), "2026-11-30T09:00:00Z");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = r.tenant.clone();
    // Back to 7 seats "on 11-22" would credit nine days that were never charged.
    for verb in ["plan", "apply"] {
        let r = t.run(verb, &seats(7), "2026-11-22T00:00:00Z");
        assert_eq!(r.code, 1, "{verb}: {}", r.stderr);
        assert!(
            r.stderr.contains(
                "--now 2026-11-22T00:00:00Z is before a change of subscription sub-1 in contoso.com (2026-11-30T09:00:00Z)"
            ),
            "{verb}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.trim().lines().count(), 1);
        assert_eq!(r.tenant, before, "{verb}: nothing changed");
    }
}

#[test]
fn now_may_not_run_back_past_a_recorded_licence_change() {
    let t = Tenant::new(&tenant(&users(2, ""), &s("sub-1", "SPB", 2, "")));
    let m = sub("spb", "sub-1", "SPB", 2, "");
    assert_eq!(t.run("apply", &m, "2026-11-21T09:00:00Z").code, 0);
    let la = |users: &[&str]| format!("{m}{}", lasg("a", users, "[{product: SPB}]", ""));
    let one = la(&["u0@contoso.com"]);
    assert_eq!(t.run("apply", &one, "2026-11-21T09:00:00Z").code, 0);
    let two = la(&["u0@contoso.com", "u1@contoso.com"]);
    assert_eq!(t.run("apply", &two, "2026-11-30T09:00:00Z").code, 0);
    let r = t.run("plan", &two, "2026-11-25T00:00:00Z");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("is before a licence change of u1@contoso.com in contoso.com"),
        "{}",
        r.stderr
    );
}
