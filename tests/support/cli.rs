//! Drives the real binary like a user: a tenant file, manifests and the command line, with a
//! fixed clock. Shared by the test files that exercise the CLI contract.
#![allow(dead_code)]

use crate::backend::MICROSOFT;

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

#[derive(Clone, Copy, PartialEq)]
enum How {
    File,
    Piped,
    Terminal,
}

pub struct Tenant {
    pub dir: tempfile::TempDir,
    /// More flags for `seatkeeper emulate` (Microsoft mode).
    pub emulator_args: Vec<String>,
}

impl Tenant {
    pub fn new(tenant: &str) -> Tenant {
        let dir = tempfile::tempdir().unwrap();
        match tenant.split_once("\nresources:") {
            // seatkeeper's records live in --state: a file of their own beside a real tenant.
            Some((file, records)) if MICROSOFT => {
                std::fs::write(dir.path().join("tenant.yaml"), format!("{file}\n")).unwrap();
                let records = format!("organizations: []\nresources:{records}");
                std::fs::write(dir.path().join("records.yaml"), records).unwrap();
            }
            _ => std::fs::write(dir.path().join("tenant.yaml"), tenant).unwrap(),
        }
        Tenant {
            dir,
            emulator_args: vec![],
        }
    }
    pub fn run(&self, verb: &str, manifests: &str, now: &str) -> Run {
        self.run_with(verb, manifests, now, &[])
    }
    /// `run` with more command-line arguments.
    pub fn run_with(&self, verb: &str, manifests: &str, now: &str, extra: &[&str]) -> Run {
        self.run_inner(verb, manifests, now, extra, How::File)
    }
    /// `run` with the manifests piped to `-f -`.
    pub fn run_piped(&self, verb: &str, manifests: &str, now: &str) -> Run {
        self.run_inner(verb, manifests, now, &[], How::Piped)
    }
    /// `run` on a terminal (a pseudo-terminal from `script`): what a person sees, stdout and
    /// stderr together, in `Run::stderr`.
    pub fn run_on_terminal(&self, verb: &str, manifests: &str, now: &str) -> Run {
        self.run_inner(verb, manifests, now, &[], How::Terminal)
    }
    fn run_inner(&self, verb: &str, manifests: &str, now: &str, extra: &[&str], how: How) -> Run {
        let piped = how == How::Piped;
        let m = self.dir.path().join("m.yaml");
        let tenant = self.dir.path().join("tenant.yaml");
        let mut state = tenant.clone();
        let _emulator = if MICROSOFT {
            let extra: Vec<&str> = self.emulator_args.iter().map(String::as_str).collect();
            let (emulator, root) = Emulator::start(&tenant, now, &extra);
            std::fs::write(&m, on_microsoft(manifests, &root)).unwrap();
            state = self.dir.path().join("records.yaml");
            Some(emulator)
        } else {
            std::fs::write(&m, manifests).unwrap();
            None
        };
        let file = if piped { "-" } else { m.to_str().unwrap() };
        let mut args: Vec<&str> = vec![verb, "-f", file, "--state", state.to_str().unwrap()];
        args.extend(["--now", now, "-o", "json"]);
        args.extend(extra);
        let bin = env!("CARGO_BIN_EXE_seatkeeper");
        if how == How::Terminal {
            let line = std::iter::once(bin)
                .chain(args.iter().copied())
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" ");
            let out = Command::new("script")
                .args(["-qec", &line, "/dev/null"])
                .output()
                .expect("`script` (util-linux) runs a command on a pseudo-terminal");
            return Run {
                code: out.status.code().unwrap(),
                out: Value::Null,
                stderr: String::from_utf8_lossy(&out.stdout).to_string(),
                tenant: String::new(),
            };
        }
        let mut child = Command::new(bin)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if piped {
            std::io::Write::write_all(&mut stdin, &std::fs::read(&m).unwrap()).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        Run {
            code: out.status.code().unwrap(),
            out: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
            // Only the tenant itself, not seatkeeper's records of applied manifests.
            tenant: std::fs::read_to_string(&tenant)
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
    /// `seatkeeper export --organization contoso.com` of this tenant (through the emulator on
    /// the Microsoft backend, with the Organization document it needs), more flags in
    /// `extra`: exit code, standard output and standard error.
    pub fn export(&self, extra: &[&str]) -> (i32, String, String) {
        let dir = self.dir.path();
        let tenant = dir.join("tenant.yaml");
        let mut args: Vec<String> = vec!["export".into()];
        let _emulator = if MICROSOFT {
            let (emulator, root) = Emulator::start(&tenant, NOW, &[]);
            std::fs::write(dir.join("org.yaml"), on_microsoft("", &root)).unwrap();
            args.extend(["-f".into(), dir.join("org.yaml").display().to_string()]);
            args.extend([
                "--state".into(),
                dir.join("records.yaml").display().to_string(),
            ]);
            Some(emulator)
        } else {
            args.extend(["--state".into(), tenant.display().to_string()]);
            None
        };
        args.extend(["--organization", "contoso.com", "--now", NOW].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        let out = Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }
    /// `verb` with the default table output (simulator only): exit code and stdout.
    pub fn table(&self, verb: &str, manifests: &str) -> (i32, String) {
        let dir = self.dir.path();
        std::fs::write(dir.join("table.yaml"), manifests).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
            .args([
                verb,
                "-f",
                "table.yaml",
                "--state",
                "tenant.yaml",
                "--now",
                NOW,
            ])
            .current_dir(dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.code().unwrap(), text)
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

/// The LicenseAssignments of `manifests`, annotated to acknowledge that a user dropped from
/// them loses their data (R28): for tests of other rules that drop users.
pub fn acked(manifests: &str) -> String {
    manifests.replace(
        "kind: LicenseAssignment\nmetadata: {name: ",
        "kind: LicenseAssignment\nmetadata: {annotations: {seatkeeper.dev/acknowledge-downgrade: \"true\"}, name: ",
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

/// A subscription or add-on id as the backend under test names it: the tenant file's on the
/// embedded simulator, the emulator's stable GUID through the Microsoft backend.
pub fn id(tenant_id: &str) -> String {
    if MICROSOFT {
        seatkeeper::emulator::subscription_id(tenant_id)
    } else {
        tenant_id.to_string()
    }
}

/// `seatkeeper emulate` serving a tenant file, stopped when dropped.
pub struct Emulator(std::process::Child);

impl Emulator {
    pub fn start(tenant: &std::path::Path, now: &str, extra: &[&str]) -> (Emulator, String) {
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
                now,
                "--client-id",
                "app",
                "--client-secret",
                "s3cret",
            ])
            .args(extra)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the emulator did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (Emulator(child), format!("http://{listen}"))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The manifests as a Microsoft tenant needs them: an Organization pointing at the emulator
/// (with Partner Center) and its credentials, subscription and add-on ids as GUIDs.
fn on_microsoft(manifests: &str, root: &str) -> String {
    let mut out = String::new();
    for line in manifests.split_inclusive('\n') {
        out += &map_ids(line);
    }
    out + &format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: app, namespace: seatkeeper}}\nstringData: {{secret: s3cret}}\n---\napiVersion: seatkeeper.dev/v1alpha1\nkind: Organization\nmetadata: {{name: contoso}}\nspec:\n  domain: contoso.com\n  backend:\n    microsoft:\n      tenantId: contoso.com\n      endpoints: {{login: '{root}', graph: '{root}', partnerCenter: '{root}'}}\n      partnerCenter: {{enabled: true}}\n      credentials: {{clientId: app, clientSecretRef: {{namespace: seatkeeper, name: app, key: secret}}}}\n"
    )
}

fn map_ids(line: &str) -> String {
    let mut out = line.to_string();
    for field in ["subscriptionId: ", "addOnId: "] {
        if let Some(at) = out.find(field) {
            let start = at + field.len();
            let end = out[start..]
                .find([',', '}', '\n'])
                .map_or(out.len(), |e| start + e);
            let value = out[start..end].trim().to_string();
            out.replace_range(start..end, &id(&value));
        }
    }
    out
}

/// The purchase key a subscription bought with `key` carries in the tenant: the key itself in
/// the simulator; through Partner Center, the checkout's MS-RequestId derived from it.
pub fn purchase_key_in_tenant(key: &str) -> String {
    if MICROSOFT {
        format!("{}/0", seatkeeper::guid::guid("checkout", key))
    } else {
        key.to_string()
    }
}

/// (id, product) of every subscription in a tenant file's text.
pub fn tenant_subscriptions(tenant: &str) -> Vec<(String, String)> {
    let v: Value = serde_saphyr::from_str(tenant).unwrap();
    v["organizations"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|o| o["subscriptions"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (text("id"), text("product"))
        })
        .collect()
}
