//! Drives the real binary like a user: a tenant file, manifests and the command line, with a
//! fixed clock. Shared by the test files that exercise the CLI contract.
#![allow(dead_code)]

use serde_json::Value;
use std::process::Command;

pub const NOW: &str = "2026-11-21T09:00:00Z";

pub struct Run {
    pub code: i32,
    pub out: Value,
    pub stderr: String,
    pub tenant: String,
}

impl Run {
    pub fn item(&self, name: &str) -> &Value {
        self.out["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }
    pub fn blocked(&self, name: &str) -> String {
        self.item(name)["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Blocked")
            .map(|c| {
                if c["status"] == "True" {
                    c["reason"].as_str().unwrap().to_string()
                } else {
                    String::new()
                }
            })
            .unwrap()
    }
    pub fn ready(&self, name: &str) -> bool {
        self.item(name)["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    }
    pub fn user(&self, name: &str, user: &str) -> &Value {
        self.item(name)["status"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user"] == user)
            .unwrap()
    }
    pub fn actions(&self) -> Vec<String> {
        self.out["actions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x["action"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub struct Tenant {
    pub dir: tempfile::TempDir,
}

impl Tenant {
    pub fn new(tenant: &str) -> Tenant {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tenant.yaml"), tenant).unwrap();
        Tenant { dir }
    }
    pub fn run(&self, verb: &str, manifests: &str, now: &str) -> Run {
        self.run_with(verb, manifests, now, &[])
    }
    /// `run` with more command-line arguments.
    pub fn run_with(&self, verb: &str, manifests: &str, now: &str, extra: &[&str]) -> Run {
        let m = self.dir.path().join("m.yaml");
        std::fs::write(&m, manifests).unwrap();
        let state = self.dir.path().join("tenant.yaml");
        let out = Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
            .args([
                verb,
                "-f",
                m.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
                "--now",
                now,
                "-o",
                "json",
            ])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        Run {
            code: out.status.code().unwrap(),
            out: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
            // Only the tenant itself, not seatkeeper's records of applied manifests.
            tenant: std::fs::read_to_string(&state)
                .unwrap()
                .split("\nresources:")
                .next()
                .unwrap()
                .to_string(),
        }
    }
    pub fn apply(&self, manifests: &str) -> Run {
        self.run("apply", manifests, NOW)
    }
}

pub fn sub(name: &str, id: &str, product: &str, seats: i32, extra: &str) -> String {
    format!(
        "---\napiVersion: seatkeeper.dev/v1alpha1\nkind: Subscription\nmetadata: {{name: {name}}}\nspec: {{organization: contoso.com, product: {product}, subscriptionId: {id}, seats: {seats}{extra}}}\n"
    )
}

pub fn lasg(name: &str, users: &[&str], licences: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: seatkeeper.dev/v1alpha1\nkind: LicenseAssignment\nmetadata: {{name: {name}{}}}\nspec: {{organization: contoso.com, users: [{}], licenses: {licences}{extra}}}\n",
        "",
        users.join(", ")
    )
}

pub fn users(n: usize, licence: &str) -> String {
    (0..n)
        .map(|i| format!("  - {{upn: u{i}@contoso.com, usageLocation: NL{licence}}}\n"))
        .collect()
}

pub fn tenant(users_yaml: &str, subs_yaml: &str) -> String {
    format!(
        "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n{users_yaml}  subscriptions:\n{subs_yaml}"
    )
}

pub fn s(id: &str, product: &str, seats: u32, extra: &str) -> String {
    format!(
        "  - {{id: {id}, product: {product}, seats: {seats}, purchasedAt: '2026-11-01T00:00:00Z', cancellationWindowEndsAt: '2026-11-08T00:00:00Z'{extra}}}\n"
    )
}

pub fn addon(name: &str, product: &str, kind: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: seatkeeper.dev/v1alpha1\nkind: AddOn\nmetadata: {{name: {name}}}\nspec: {{organization: contoso.com, product: {product}, type: {kind}, quantity: 2{extra}}}\n"
    )
}
