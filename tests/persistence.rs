//! Crash safety of the tenant file (embedded backend): `seatkeeper apply` killed at several
//! points of a large run leaves a tenant the service could have had, and the next apply
//! finishes the job without buying anything twice.

use seatkeeper::backend::embedded::TenantFile;
use seatkeeper::backend::journal;
use std::path::Path;
use std::process::{Command, Stdio};

const NOW: &str = "2026-11-21T09:00:00Z";
const USERS: usize = 5_000;

/// Large enough (≈ 450 KiB) that its changes are journaled.
fn tenant() -> String {
    let mut y = String::from(
        "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n",
    );
    for i in 0..USERS {
        y += &format!("  - {{upn: u{i}@contoso.com, usageLocation: NL}}\n");
    }
    y += "  subscriptions:\n  - {id: sub-e3, product: ENTERPRISEPACK, seats: 2500, purchasedAt: '2026-11-01T00:00:00Z'}\n";
    y
}

/// E3 raised to 3,000 seats, a new Microsoft 365 E3 subscription of 2,000 bought, and
/// 5,000 users licensed in 50 LicenseAssignments.
fn manifests() -> String {
    let mut m = String::from(
        "apiVersion: seatkeeper.dev/v1alpha1\nkind: Subscription\nmetadata: {name: e3}\nspec: {organization: contoso.com, product: ENTERPRISEPACK, subscriptionId: sub-e3, seats: 3000}\n---\napiVersion: seatkeeper.dev/v1alpha1\nkind: Subscription\nmetadata: {name: m365}\nspec: {organization: contoso.com, product: SPE_E3, seats: 2000}\n",
    );
    for g in 0..USERS / 100 {
        let product = if g < 30 { "ENTERPRISEPACK" } else { "SPE_E3" };
        let users: Vec<String> = (g * 100..(g + 1) * 100)
            .map(|i| format!("u{i}@contoso.com"))
            .collect();
        m += &format!(
            "---\napiVersion: seatkeeper.dev/v1alpha1\nkind: LicenseAssignment\nmetadata: {{name: team-{g}}}\nspec: {{organization: contoso.com, users: [{}], licenses: [{{product: {product}}}]}}\n",
            users.join(", ")
        );
    }
    m
}

fn apply(dir: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
        .args(["apply", "-f"])
        .arg(dir.join("m.yaml"))
        .arg("--state")
        .arg(dir.join("tenant.yaml"))
        .args(["--now", NOW, "--max-seat-increase", "10000", "-o", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tenant.yaml"), tenant()).unwrap();
    std::fs::write(dir.path().join("m.yaml"), manifests()).unwrap();
    dir
}

/// The organizations as the service holds them (file and journal), in one comparable text.
fn service(dir: &Path) -> String {
    let t = TenantFile::load(&dir.join("tenant.yaml")).unwrap();
    serde_json::to_string_pretty(&t.organizations).unwrap()
}

/// What a real service guarantees at every instant.
fn assert_possible(dir: &Path, after: &str) {
    let t = TenantFile::load(&dir.join("tenant.yaml"))
        .unwrap_or_else(|e| panic!("after {after}: the tenant cannot be read: {e}"));
    let org = &t.organizations[0];
    let bought = org
        .subscriptions
        .iter()
        .filter(|s| s.product == "SPE_E3")
        .count();
    assert!(
        bought <= 1,
        "after {after}: Microsoft 365 E3 bought {bought} times"
    );
    let now = NOW.parse().unwrap();
    for product in ["ENTERPRISEPACK", "SPE_E3"] {
        assert!(
            org.consumed(product) <= org.pool(product, now),
            "after {after}: {product}: {} licences on {} seats",
            org.consumed(product),
            org.pool(product, now)
        );
    }
}

/// R07/R16 and no double purchase hold at every crash point; the run that follows converges
/// to exactly what an uninterrupted run gives.
#[test]
fn a_crash_at_any_point_loses_no_acknowledged_change_and_buys_nothing_twice() {
    let reference = setup();
    assert!(apply(reference.path()).wait().unwrap().success());
    let expected = service(reference.path());
    assert!(!journal::path_of(&reference.path().join("tenant.yaml")).exists());

    let crashed = setup();
    let journal = journal::path_of(&crashed.path().join("tenant.yaml"));
    let mut kills = 0;
    // Kill when the journal holds this many acknowledged licence batches (or later).
    for lines in [1, 10, 60, 140] {
        let mut child = apply(crashed.path());
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            let held = std::fs::read(&journal)
                .map(|b| b.iter().filter(|c| **c == b'\n').count())
                .unwrap_or(0);
            if held >= lines {
                child.kill().unwrap();
                child.wait().unwrap();
                break false;
            }
            // Not a busy loop: the child needs the cores more than this reader does.
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        if !finished {
            kills += 1;
        }
        assert_possible(crashed.path(), &format!("a kill at {lines} journal lines"));
    }
    assert!(
        kills >= 2,
        "only {kills} runs were cut short: the test proves little"
    );
    assert!(apply(crashed.path()).wait().unwrap().success());
    assert_eq!(service(crashed.path()), expected);
}
