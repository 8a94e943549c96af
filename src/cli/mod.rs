//! The `seatkeeper` command line (CONTRACT §3).

mod manifests;
mod output;
mod schema;

pub use manifests::{InputError, Object};

use crate::api::Conditions;
use crate::backend::BackendError;
use crate::backend::embedded::{Embedded, ResourceRecord, TenantFile};
use crate::clock::{Clock, FixedClock, SystemClock};
use crate::domain::Instant;
use crate::executor::{self, Ledger, NoLedger};
use crate::planner::{Declared, Desired, Kind, Meta, Options};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "seatkeeper",
    version,
    about = "SaaS seat licensing as declared state"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what `apply` would do and the statuses it would reach; changes nothing.
    Plan(Args),
    /// Reconcile the manifests against the tenant without a cluster, and save the tenant.
    Apply(Args),
    /// Carry out each resource's deletion policy.
    Delete(Args),
    /// Print the CustomResourceDefinitions (the same bytes as crds/).
    Crds,
}

#[derive(clap::Args, Debug)]
struct Args {
    /// Manifest files or folders of multi-document YAML.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// The embedded backend's tenant file.
    #[arg(long)]
    state: PathBuf,
    /// Fix the clock (RFC 3339), for reproducible runs.
    #[arg(long)]
    now: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// One reconcile of one resource removes licences from at most this many users, unless it
    /// is annotated seatkeeper.dev/allow-bulk-removal: "true".
    #[arg(long, default_value_t = 20)]
    max_removals: usize,
    /// Refuse resources in namespaces not bound to an organization.
    #[arg(long)]
    require_namespace_binding: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Exit codes (CONTRACT §3).
pub const EXIT_READY: i32 = 0;
pub const EXIT_INVALID: i32 = 1;
pub const EXIT_NOT_READY: i32 = 3;

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let (args, mode) = match cli.command {
        Command::Crds => {
            print!("{}", crate::crdgen::crds_yaml());
            return EXIT_READY;
        }
        Command::Plan(a) => (a, Mode::Plan),
        Command::Apply(a) => (a, Mode::Apply),
        Command::Delete(a) => (a, Mode::Delete),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(&args, mode)) {
        Ok(code) => code,
        Err(e) => {
            let line: Vec<String> = e
                .to_string()
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("error: {}", line.join(" "));
            EXIT_INVALID
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plan,
    Apply,
    Delete,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Tenant(#[from] crate::backend::embedded::TenantFileError),
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    #[error("--now: {0}: expected an RFC 3339 time such as 2026-11-21T09:00:00Z")]
    Now(String),
}

fn kind_of(name: &str) -> Option<Kind> {
    match name {
        "Subscription" => Some(Kind::Subscription),
        "LicenseAssignment" => Some(Kind::LicenseAssignment),
        "AddOn" => Some(Kind::AddOn),
        _ => None,
    }
}

/// Keeps resource records in the tenant file, beside the tenant they describe.
struct TenantLedger<'a> {
    backend: &'a Embedded,
    /// Records of resources this run does not touch, kept as they are.
    others: Vec<ResourceRecord>,
    objects: &'a BTreeMap<(Kind, String, String), Value>,
}

impl Ledger for TenantLedger<'_> {
    async fn save(&mut self, desired: &Desired) -> Result<(), BackendError> {
        let mut records = self.others.clone();
        records.extend(records_of(desired, self.objects));
        records.sort_by(|a, b| {
            (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name))
        });
        self.backend.save_records(records)
    }
}

fn records_of(
    desired: &Desired,
    objects: &BTreeMap<(Kind, String, String), Value>,
) -> Vec<ResourceRecord> {
    desired
        .statuses()
        .into_iter()
        .map(|(kind, meta, status)| ResourceRecord {
            kind: format!("{kind:?}"),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            created_at: meta.created_at,
            deleting: meta.deleting,
            manifest: objects
                .get(&(kind, meta.namespace.clone(), meta.name.clone()))
                .cloned()
                .unwrap_or(Value::Null),
            status,
        })
        .collect()
}

async fn run(args: &Args, mode: Mode) -> Result<i32, CliError> {
    let now = match &args.now {
        Some(s) => Some(
            s.parse::<Instant>()
                .map_err(|e| CliError::Now(e.to_string()))?,
        ),
        None => None,
    };
    let clock: Arc<dyn Clock> = match now {
        Some(t) => Arc::new(FixedClock::new(t)),
        None => Arc::new(SystemClock),
    };
    let start = clock.now();
    let tenant = TenantFile::load(&args.state)?;
    let recorded: BTreeMap<(String, String, String), ResourceRecord> = tenant
        .resources
        .iter()
        .map(|r| {
            (
                (r.kind.clone(), r.namespace.clone(), r.name.clone()),
                r.clone(),
            )
        })
        .collect();
    let recorded_manifests = recorded
        .iter()
        .map(|(k, r)| (k.clone(), r.manifest.clone()))
        .collect();
    let manifests = manifests::load(&args.files, &recorded_manifests)?;
    check_against_tenant(&manifests, &tenant)?;

    // Declared state: everything applied before, overridden by these manifests (a cluster
    // keeps objects between applies; so does the tenant file).
    let mut objects: BTreeMap<(Kind, String, String), Value> = BTreeMap::new();
    let mut meta_of: BTreeMap<(Kind, String, String), (Instant, String, bool)> = BTreeMap::new();
    let mut statuses: BTreeMap<(Kind, String, String), Value> = BTreeMap::new();
    let mut others = vec![];
    for r in tenant.resources.iter() {
        match kind_of(&r.kind) {
            Some(k) if !r.manifest.is_null() => {
                let key = (k, r.namespace.clone(), r.name.clone());
                objects.insert(key.clone(), r.manifest.clone());
                meta_of.insert(key.clone(), (r.created_at, r.uid.clone(), r.deleting));
                statuses.insert(key, r.status.clone());
            }
            _ => others.push(r.clone()),
        }
    }
    let mut targets = vec![];
    for (_, obj) in &manifests.objects {
        let k = kind_of(obj.kind()).expect("a seatkeeper kind");
        let key = (k, obj.namespace(), obj.name());
        let mut v = obj.to_value();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        objects.insert(key.clone(), v);
        let created = obj
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(start);
        let entry = meta_of.entry(key.clone()).or_insert((
            created,
            format!("{}", created.as_second()),
            false,
        ));
        entry.2 = mode == Mode::Delete || (entry.2 && mode == Mode::Plan);
        targets.push(key);
    }
    let mut desired = Desired {
        namespaces: manifests.namespaces.clone(),
        secrets: manifests.secrets.clone(),
        ..Default::default()
    };
    for (key, object) in &objects {
        let (created_at, uid, deleting) = meta_of[key].clone();
        let obj = Object::from_value(object, None).map_err(|e| {
            InputError(format!(
                "{}: recorded {:?} {}/{}: {e}",
                args.state.display(),
                key.0,
                key.1,
                key.2
            ))
        })?;
        let m = obj.meta();
        let meta = Meta {
            namespace: key.1.clone(),
            name: key.2.clone(),
            created_at,
            generation: m.generation,
            uid,
            annotations: m.annotations.clone().unwrap_or_default(),
            deleting,
        };
        let status = statuses.get(key).cloned().unwrap_or(Value::Null);
        match obj {
            Object::Subscription(o) => desired.subscriptions.push(Declared {
                meta,
                spec: o.spec,
                status: serde_json::from_value(status).unwrap_or_default(),
            }),
            Object::LicenseAssignment(o) => desired.assignments.push(Declared {
                meta,
                spec: o.spec,
                status: serde_json::from_value(status).unwrap_or_default(),
            }),
            Object::AddOn(o) => desired.add_ons.push(Declared {
                meta,
                spec: o.spec,
                status: serde_json::from_value(status).unwrap_or_default(),
            }),
        }
    }

    let options = Options {
        max_removals: args.max_removals,
        require_namespace_binding: args.require_namespace_binding,
        ..Options::default()
    };
    let report = if mode == Mode::Plan {
        // The same run on an in-memory copy of the tenant: what apply would do, changing nothing.
        let copy = Embedded::new(tenant.clone(), None, clock.clone());
        executor::converge(
            &copy,
            &mut NoLedger,
            &mut desired,
            clock.as_ref(),
            &options,
            executor::DEFAULT_MAX_PASSES,
        )
        .await?
    } else {
        let backend = Embedded::new(tenant.clone(), Some(args.state.clone()), clock.clone());
        let mut ledger = TenantLedger {
            backend: &backend,
            others,
            objects: &objects,
        };
        let report = executor::converge(
            &backend,
            &mut ledger,
            &mut desired,
            clock.as_ref(),
            &options,
            executor::DEFAULT_MAX_PASSES,
        )
        .await?;
        // Resources whose deletion is complete leave the tenant file's records.
        if mode == Mode::Delete {
            let gone: Vec<(String, String, String)> = report
                .plan
                .deleted
                .iter()
                .map(|r| (format!("{:?}", r.kind), r.namespace.clone(), r.name.clone()))
                .collect();
            let mut records = backend.tenant().resources;
            records
                .retain(|r| !gone.contains(&(r.kind.clone(), r.namespace.clone(), r.name.clone())));
            backend.save_records(records)?;
        }
        report
    };

    let shown = output::objects(&desired, &objects, &targets);
    let deleted: Vec<(Kind, String, String)> = report
        .plan
        .deleted
        .iter()
        .map(|r| (r.kind, r.namespace.clone(), r.name.clone()))
        .collect();
    let all_done = targets.iter().all(|key| match mode {
        Mode::Delete => deleted.contains(key),
        _ => shown
            .iter()
            .find(|o| o.key == *key)
            .is_some_and(|o| o.ready()),
    });
    let text = output::render(
        args.output,
        mode == Mode::Plan,
        &shown,
        &report,
        &deleted,
        mode == Mode::Delete,
    );
    print!("{text}");
    Ok(if all_done && report.converged {
        EXIT_READY
    } else {
        EXIT_NOT_READY
    })
}

/// Bad input that only the tenant can reveal: an unknown organization or product.
fn check_against_tenant(m: &manifests::Manifests, tenant: &TenantFile) -> Result<(), InputError> {
    let catalog = crate::domain::Catalog::with_overrides(tenant.catalog.as_ref());
    for (src, obj) in &m.objects {
        let label = format!("{} {}/{}", obj.kind(), obj.namespace(), obj.name());
        let (org, products): (&str, Vec<(String, &str)>) = match obj {
            Object::Subscription(o) => (
                &o.spec.organization,
                vec![("spec.product".into(), o.spec.product.as_str())],
            ),
            Object::AddOn(o) => (
                &o.spec.organization,
                vec![("spec.product".into(), o.spec.product.as_str())],
            ),
            Object::LicenseAssignment(o) => (
                &o.spec.organization,
                o.spec
                    .licenses
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (format!("spec.licenses[{i}].product"), l.product.as_str()))
                    .collect(),
            ),
        };
        if !tenant
            .organizations
            .iter()
            .any(|o| o.domain.eq_ignore_ascii_case(org))
        {
            return Err(src.err(
                &label,
                format!("spec.organization: {org} is not an organization in the tenant file"),
            ));
        }
        for (field, p) in products {
            if catalog.product(p).is_none() {
                return Err(src.err(
                    &label,
                    format!("{field}: unknown product {p} (not in the catalog)"),
                ));
            }
        }
    }
    Ok(())
}

/// An object as printed: the manifest with its status.
pub struct Shown {
    pub key: (Kind, String, String),
    pub object: Value,
    pub conditions: Conditions,
}

impl Shown {
    pub fn ready(&self) -> bool {
        self.conditions.is_true("Ready")
    }
}
