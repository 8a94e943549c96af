//! The `seatkeeper` command line (CONTRACT §3).

mod emulate;
mod export;
mod manifests;
mod output;
mod progress;
mod report;
mod schema;

pub use manifests::{InputError, Object};

use crate::api::Conditions;
use crate::backend::Backend;
use crate::backend::BackendError;
use crate::backend::embedded::{Embedded, ResourceRecord, TenantFile};
use crate::backend::hooked::Hooked;
use crate::backend::microsoft::Microsoft;
use crate::backend::routed::Routed;
use crate::clock::{Clock, FixedClock, Interrupt, SystemClock};
use crate::domain::{Instant, counted};
use crate::executor::{self, Ledger, NoLedger, SavePoint};
use crate::intents::declared;
use crate::planner::{Desired, Kind, Options};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    Plan(PlanArgs),
    /// Reconcile the manifests against the tenant without a cluster, and save the tenant.
    Apply(Args),
    /// Carry out each resource's deletion policy.
    Delete(Args),
    /// Write manifests that adopt what an organization holds today (its subscriptions,
    /// add-ons and directly assigned licences); `plan` on them changes nothing.
    Export(export::ExportArgs),
    /// What seats cost and who uses them: per product seats bought, assigned and free (and
    /// what the free ones cost), per namespace what its LicenseAssignments hold, licensed
    /// accounts disabled or unused, licences in error. Reads; changes nothing.
    Report(report::ReportArgs),
    /// Print the CustomResourceDefinitions (the same bytes as crds/).
    Crds,
    /// Run the controller against the current kubeconfig or in-cluster config.
    Run(RunArgs),
    /// Serve Microsoft's licensing services (token endpoint, Graph, Partner Center) from a
    /// tenant file, with injectable faults: a sandbox and the Microsoft backend's test bed.
    Emulate(emulate::EmulateArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// The tenant simulator, kept in the file given by --state.
    Embedded,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The licensing backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Embedded)]
    backend: BackendKind,
    /// The embedded backend's tenant file (on a volume in a cluster).
    #[arg(long)]
    state: PathBuf,
    /// Log lines as text (colour only on a terminal, never with NO_COLOR) or one JSON object
    /// per line, for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A tenant file copied to --state when that does not exist yet (a sandbox's first start).
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// How often every organization is re-read to correct drift made outside seatkeeper
    /// (e.g. 10m, 30s, 1h).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    resync: std::time::Duration,
    /// Refuse resources in namespaces not labelled seatkeeper.dev/organization (on by
    /// default; `--require-namespace-binding=false` turns it off; the bare flag means true).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    require_namespace_binding: bool,
    /// One reconcile of one resource removes licences from at most this many users.
    #[arg(long, default_value_t = 20)]
    max_removals: usize,
    /// Licence batches sent to the backend at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// One reconcile of one resource raises seats (or buys) by at most this many, unless it is
    /// annotated seatkeeper.dev/allow-large-purchase: "true".
    #[arg(long, default_value_t = crate::planner::DEFAULT_MAX_SEAT_INCREASE)]
    max_seat_increase: u32,
    /// Elect a leader on a coordination.k8s.io Lease, so several replicas are safe.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Spread the organizations that have their own Microsoft tenant over the replicas: each
    /// holds a Lease for its shard (`seatkeeper-shard-<identity>`), and each organization is
    /// reconciled by one live shard at a time. Needs --leader-election (the embedded tenant
    /// file stays with the leader).
    #[arg(long)]
    sharding: bool,
    /// Benchmarks against the emulator only: Graph's budget windows divided by this factor
    /// (the emulator's compressed the same way), so a fleet run of hours takes minutes.
    #[arg(long, default_value_t = 1, hide = true)]
    graph_budget_compression: u32,
    /// Benchmarks against the emulator only: Graph's budgets' counts divided by this factor
    /// (the emulator's scaled the same way), so a fleet that fits one machine still spans
    /// many windows of the app-wide budget.
    #[arg(long, default_value_t = 1, hide = true)]
    graph_budget_scale: u32,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, default_value = "seatkeeper")]
    lease_name: String,
    /// This replica's name in the Lease (default: $POD_NAME, else the host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// A leader that has not renewed for this long is replaced.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: std::time::Duration,
    /// How often the leader renews (and others check).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    lease_renew: std::time::Duration,
    /// How long to wait at start while another process (a CLI apply) holds the tenant file
    /// (e.g. 30s; 0 fails at once). With leader election, a replica leads only while it holds
    /// the file; without it, the controller holds the file from start to stop.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    lock_timeout: std::time::Duration,
    /// On SIGTERM/SIGINT the work in flight has this long to finish its batch and save it
    /// (keep it under the pod's terminationGracePeriodSeconds); then the process exits 0. A
    /// second signal exits at once.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    shutdown_timeout: std::time::Duration,
    /// Read Secrets (Organization credentials, product keys) only in these namespaces
    /// (comma-separated), as the chart's least-privilege RBAC allows; without it, anywhere.
    #[arg(long, value_delimiter = ',')]
    secret_namespaces: Option<Vec<String>>,
}

/// `10m`, `30s`, `1h`, `500ms` or plain seconds.
/// `--now`: an RFC 3339 time, checked when the command line is read (a bad one is a usage
/// error, exit 2, like any other bad flag value).
fn parse_now(s: &str) -> Result<String, String> {
    match s.parse::<Instant>() {
        Ok(_) => Ok(s.to_string()),
        Err(_) => Err("not an RFC 3339 time such as 2026-11-21T09:00:00Z".into()),
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s}: expected a duration such as 30s, 10m or 1h"))?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        "h" => std::time::Duration::from_secs(n * 3600),
        _ => return Err(format!("{s}: expected a duration such as 30s, 10m or 1h")),
    })
}

impl RunArgs {
    fn config(&self) -> crate::controller::RunConfig {
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "seatkeeper".into());
            format!("{host}-{}", std::process::id())
        });
        crate::controller::RunConfig {
            state: self.state.clone(),
            resync: self.resync,
            options: Options {
                max_removals: self.max_removals,
                require_namespace_binding: self.require_namespace_binding,
                concurrency: self.concurrency,
                max_seat_increase: self.max_seat_increase,
                ..Options::default()
            },
            metrics_addr: self.metrics_addr,
            lock_timeout: Some(self.lock_timeout),
            shutdown_timeout: self.shutdown_timeout,
            secret_namespaces: crate::controller::watches::SecretNamespaces(
                self.secret_namespaces.clone(),
            ),
            sharding: self.sharding,
            graph_budgets: crate::controller::tenants::GraphBudgets::compressed(
                self.graph_budget_compression,
            )
            .scaled(self.graph_budget_scale),
            election: self
                .leader_election
                .then(|| crate::controller::leader::Election {
                    namespace: self.lease_namespace.clone(),
                    name: self.lease_name.clone(),
                    identity,
                    duration: self.lease_duration,
                    renew: self.lease_renew,
                }),
        }
    }
}

/// glibc's allocator, tuned for a long-running controller holding a large tenant:
/// - it raises its mmap threshold each time a large block is freed, after which large blocks
///   (watch pages, statuses being serialized, a pass's plan) come from the heap and stay
///   there, fragmented; a fixed threshold (128 KiB, glibc's starting value) returns them to
///   the system when freed (as `MALLOC_MMAP_THRESHOLD_=131072`);
/// - it gives threads their own arenas, and memory freed in one is not reused by another;
///   one arena (as `MALLOC_ARENA_MAX=1`) keeps the peak steady.
///
/// At 100k users the two take the peak RSS from 400–500 MiB to about 270 MiB, for about a
/// tenth more time per convergence (BENCHMARKS.md).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once, before the runtime's
    // threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// `seatkeeper run`: until SIGTERM or Ctrl-C, then a graceful stop.
fn run_controller(args: &RunArgs) -> i32 {
    if args.sharding && !args.leader_election {
        eprintln!(
            "error: --sharding needs --leader-election=true: shards are kept on Leases, and the embedded tenant file stays with the leader"
        );
        return EXIT_USAGE;
    }
    // Colour only on a terminal (not in `kubectl logs`), and never with NO_COLOR.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    // kube's client logs every failed request at ERROR, and a broken watch at WARN with a Rust
    // debug dump, once per request per object: seatkeeper reports those failures itself, one
    // line per outage (controller::apihealth), so kube's own lines are left out.
    // SEATKEEPER_LOG (e.g. `debug`, or `info,seatkeeper::controller=debug`) replaces this.
    let filter = std::env::var("SEATKEEPER_LOG")
        .ok()
        .and_then(|f| f.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::Level::INFO)
                .with_target("kube_client", tracing_subscriber::filter::LevelFilter::OFF)
                .with_target("kube_runtime", tracing::Level::ERROR)
        });
    let logs = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr);
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = match args.log_format {
        LogFormat::Text => logs.with_ansi(colour).finish().with(filter).try_init(),
        LogFormat::Json => logs
            .json()
            .with_ansi(false)
            .finish()
            .with(filter)
            .try_init(),
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "seatkeeper starting");
    tune_allocator();
    let BackendKind::Embedded = args.backend;
    if let Some(seed) = &args.seed
        && !args.state.exists()
        && let Err(e) = std::fs::copy(seed, &args.state)
    {
        eprintln!(
            "error: cannot copy the seed {} to {}: {e}",
            seed.display(),
            args.state.display()
        );
        return EXIT_INVALID;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("cannot reach Kubernetes: {e}"))?;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping");
            stop_tx.send_replace(true);
            shutdown_signal().await;
            tracing::warn!("stopping at once (a second signal)");
            std::process::exit(EXIT_INTERRUPTED);
        });
        crate::controller::run(client, args.config(), stop)
            .await
            .map_err(|e| e.to_string())
    });
    // Threads still busy (a DNS lookup, a blocking read) cannot hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => EXIT_READY,
        Err(e) => {
            // Through the log, so that a JSON log stays one object per line.
            tracing::error!("{e}");
            EXIT_INVALID
        }
    }
}

/// SIGINT or SIGTERM during `apply`/`delete`: the changes in flight finish, everything done is
/// saved and printed, exit 130. A second signal exits at once: the tenant file is still valid
/// (every write is a rename or an fsync'ed journal line), only the changes in flight may be
/// left for the next run.
async fn interrupt_on_signals(interrupt: Interrupt) {
    shutdown_signal().await;
    interrupt.request();
    eprintln!(
        "interrupted: finishing the changes in flight, then saving (interrupt again to stop at once)"
    );
    shutdown_signal().await;
    eprintln!("interrupted again: stopping now");
    std::process::exit(EXIT_INTERRUPTED);
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `plan`: the flags of every run, and the one of plan alone.
#[derive(clap::Args, Debug)]
struct PlanArgs {
    #[command(flatten)]
    common: Args,
    /// As Terraform's: exit 4 when the plan would change something (0 and 3 then mean nothing
    /// to do, with everything Ready or not).
    #[arg(long)]
    detailed_exitcode: bool,
}

#[derive(clap::Args, Debug)]
struct Args {
    /// Manifest files or folders of multi-document YAML; `-` reads standard input (e.g.
    /// `kustomize build . | seatkeeper plan -f -`). Documents of other API groups (CRDs,
    /// ConfigMaps, …) are skipped with one note.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// The embedded backend's tenant file.
    #[arg(long)]
    state: PathBuf,
    /// Fix the clock (RFC 3339), for reproducible runs.
    #[arg(long, value_parser = parse_now)]
    now: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// One reconcile of one resource removes licences from at most this many users, unless it
    /// is annotated seatkeeper.dev/allow-bulk-removal: "true".
    #[arg(long, default_value_t = 20)]
    max_removals: usize,
    /// One reconcile of one resource raises seats (or buys) by at most this many, unless it is
    /// annotated seatkeeper.dev/allow-large-purchase: "true".
    #[arg(long, default_value_t = crate::planner::DEFAULT_MAX_SEAT_INCREASE)]
    max_seat_increase: u32,
    /// Refuse resources in namespaces not bound to an organization (off by default; the bare
    /// flag and `=true` turn it on, as on `run`).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    require_namespace_binding: bool,
    /// `plan --detailed-exitcode` (set from [`PlanArgs`]; not a flag of apply and delete).
    #[arg(skip)]
    detailed_exitcode: bool,
    /// How long to wait while another run holds the tenant file (e.g. 30s, 2m; 0 fails at
    /// once). The file is locked for the whole run: one writer at a time, plans share.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    lock_timeout: std::time::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
/// `plan --detailed-exitcode`: the plan would change something.
pub const EXIT_CHANGES: i32 = 4;
/// A usage error (as clap's own).
pub const EXIT_USAGE: i32 = 2;
/// `apply`/`delete` stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it): what
/// was done is saved and printed.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    run_command(Cli::parse(), None)
}

/// `plan`, `apply` or `delete` in this process, as the command line `argv` (its first item
/// the program name) would run it, stopped by `interrupt` instead of by signals: for tests
/// that interrupt a run at a chosen point. Returns the exit code; output goes to stdout and
/// stderr as usual.
pub fn main_with(argv: &[&str], interrupt: Interrupt) -> i32 {
    match Cli::try_parse_from(argv) {
        Ok(cli) => run_command(cli, Some(interrupt)),
        Err(e) => {
            eprintln!("{e}");
            EXIT_USAGE
        }
    }
}

/// One command; `interrupt` None listens to SIGINT and SIGTERM.
fn run_command(cli: Cli, interrupt: Option<Interrupt>) -> i32 {
    let (args, mode) = match cli.command {
        Command::Crds => {
            print!("{}", crate::crdgen::crds_yaml());
            return EXIT_READY;
        }
        Command::Plan(p) => (
            Args {
                detailed_exitcode: p.detailed_exitcode,
                ..p.common
            },
            Mode::Plan,
        ),
        Command::Apply(a) => (a, Mode::Apply),
        Command::Delete(a) => (a, Mode::Delete),
        Command::Run(a) => return run_controller(&a),
        Command::Emulate(a) => return emulate::run(&a),
        Command::Export(a) => return export::run(&a),
        Command::Report(a) => return report::run(&a),
    };
    // One worker beside the run: it hears signals while the run is busy.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let interrupt = match interrupt {
        Some(i) => i,
        None => {
            let i = Interrupt::default();
            if mode != Mode::Plan {
                // `plan` changes nothing: a signal simply ends it.
                runtime.spawn(interrupt_on_signals(i.clone()));
            }
            i
        }
    };
    match runtime.block_on(run(&args, mode, &interrupt)) {
        Ok(code) => code,
        Err(e) => failed(&e),
    }
}

/// An error as one line on stderr, every line of it joined (`error: …`); exit code 1.
fn failed(e: &CliError) -> i32 {
    let line: Vec<String> = e
        .to_string()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("error: {}", line.join(" "));
    EXIT_INVALID
}

/// A reading command's start: the tenant file's shared lock (held while the guard lives) and
/// the file as it is (and whether it is missing).
fn read_state(
    state: &Path,
    timeout: std::time::Duration,
    command: &str,
) -> Result<(Option<crate::backend::lock::StateLock>, TenantFile, bool), CliError> {
    let lock = lock_file(state, crate::backend::lock::Access::Read, timeout, command)?;
    let (tenant, missing) = load_state(state)?;
    Ok((lock, tenant, missing))
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
    #[error(transparent)]
    Lock(#[from] crate::backend::lock::LockError),
    #[error(
        "--now {now} is before {what} ({then}) recorded in {file}: the tenant's clock cannot run \
         backwards; give a time at or after {then}"
    )]
    NowBeforeTenant {
        now: Instant,
        what: String,
        then: Instant,
        file: String,
    },
}

/// The latest moment the tenant file records as past (a purchase, a seat or licence change,
/// a resource's creation), so a `--now` before it is refused instead of charging or
/// crediting for negative time.
fn latest_recorded(tenant: &TenantFile) -> Option<(Instant, String)> {
    let subscriptions = tenant.organizations.iter().flat_map(|o| {
        o.subscriptions.iter().filter_map(move |s| {
            s.purchased_at.map(|t| {
                let what = format!("the purchase of subscription {} in {}", s.id, o.domain);
                (t, what)
            })
        })
    });
    let resources = tenant.resources.iter().map(|r| {
        let what = format!("the creation of {} {}/{}", r.kind, r.namespace, r.name);
        (r.created_at, what)
    });
    let change = tenant.last_change.iter().map(|c| (c.at, c.what.clone()));
    // At the same instant the last one named wins: a resource's creation explains it best.
    subscriptions
        .chain(change)
        .chain(resources)
        .max_by_key(|(t, _)| *t)
}

/// Keeps resource records in the tenant file, beside the tenant they describe.
struct TenantLedger<'a> {
    backend: &'a Embedded,
    /// Records of resources this run does not touch, kept as they are.
    others: Vec<ResourceRecord>,
    objects: &'a BTreeMap<(Kind, String, String), Value>,
    progress: &'a progress::Progress,
}

impl Ledger for TenantLedger<'_> {
    async fn save(&mut self, desired: &Desired, _: SavePoint) -> Result<(), BackendError> {
        self.progress.saving();
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
    crate::intents::statuses(desired)
        .into_iter()
        .map(|(kind, meta, status)| ResourceRecord {
            kind: kind.as_str().to_string(),
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

/// The tenant file, and whether it is missing: with only Microsoft organizations the records
/// file may not exist yet (an empty one stands in; an organization of the tenant file then
/// fails as the missing file's error).
fn load_state(path: &Path) -> Result<(TenantFile, bool), CliError> {
    let loaded = TenantFile::load(path);
    let missing = loaded.is_err() && !path.exists();
    match loaded {
        Ok(t) => Ok((t, missing)),
        Err(_) if missing => Ok((TenantFile::default(), true)),
        Err(e) => Err(e.into()),
    }
}

/// Inputs → declared state → the executor's run (on a copy for `plan`) → output and exit code.
async fn run(args: &Args, mode: Mode, interrupt: &Interrupt) -> Result<i32, CliError> {
    // From the first moment: reading 20k users' manifests takes seconds already.
    let progress = progress::Progress::new(mode != Mode::Plan);
    let clock = clock_of(&args.now)?;
    // Held until the run ends: a second run waits, then fails naming this one.
    let _lock = lock_state(args, mode)?;
    let (tenant, missing) = load_state(&args.state)?;
    if args.now.is_some()
        && let Some((then, what)) = latest_recorded(&tenant)
        && clock.now() < then
    {
        return Err(CliError::NowBeforeTenant {
            now: clock.now(),
            what,
            then,
            file: args.state.display().to_string(),
        });
    }
    let Declarations {
        manifests,
        tenants,
        state,
        mut desired,
        organizations,
    } = Declarations::read(
        &args.files,
        &args.state,
        &tenant,
        missing,
        mode,
        clock.now(),
    )?;
    let live = tenants.catalogs().await?;
    check_against_tenant(&manifests, &tenant, &live)?;
    let options = Options {
        max_removals: args.max_removals,
        require_namespace_binding: args.require_namespace_binding,
        max_seat_increase: args.max_seat_increase,
        per_organization: crate::organizations::limits(&organizations),
        interrupt: interrupt.clone(),
        ..Options::default()
    };
    let run = Execution {
        args,
        mode,
        tenant: &tenant,
        state: &state,
        tenants,
        clock,
    };
    let report = run.execute(&mut desired, &options, progress).await?;

    let mut shown = output::objects(&desired, &state.objects, &state.targets);
    if mode == Mode::Plan {
        output::mark_undecided(&mut shown, &report);
    }
    let deleted: Vec<Key> = report
        .plan
        .deleted
        .iter()
        .map(|r| (r.kind, r.namespace.clone(), r.name.clone()))
        .collect();
    let all_done = state.targets.iter().all(|key| match mode {
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
    let changes = report.executed.iter().any(|e| e.refused.is_none());
    if interrupt.was_requested() {
        let done = report
            .executed
            .iter()
            .filter(|e| e.refused.is_none())
            .count();
        eprintln!(
            "interrupted: stopped after {} (listed above, with any money charged); everything \
             done is saved in {}; run the same command again to finish",
            counted(done, "change", "changes"),
            args.state.display()
        );
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(if args.detailed_exitcode && changes {
        EXIT_CHANGES
    } else if all_done && report.converged {
        EXIT_READY
    } else {
        EXIT_NOT_READY
    })
}

/// What the manifests declare, read once for every command that plans: the documents, the
/// Microsoft tenants they name, the resources with their records, the planner's declared state
/// (with the namespaces' bindings) and the Organizations.
struct Declarations {
    manifests: manifests::Manifests,
    tenants: Tenants,
    state: Applied,
    desired: Desired,
    organizations: Vec<crate::api::Organization>,
}

impl Declarations {
    fn read(
        files: &[PathBuf],
        path: &Path,
        tenant: &TenantFile,
        missing: bool,
        mode: Mode,
        now: Instant,
    ) -> Result<Declarations, CliError> {
        let recorded = tenant
            .resources
            .iter()
            .map(|r| {
                let key = (r.kind.clone(), r.namespace.clone(), r.name.clone());
                (key, r.manifest.clone())
            })
            .collect();
        let manifests = manifests::load(files, &recorded)?;
        if let Some(note) = manifests.skipped_note() {
            eprintln!("{note}");
        }
        let tenants = Tenants::of(&manifests)?;
        if missing && tenants.microsoft.is_empty() {
            TenantFile::load(path)?;
        }
        let state = Applied::read(mode, tenant, &manifests, now)?;
        let mut desired = state.desired(path, &manifests)?;
        let organizations: Vec<crate::api::Organization> = manifests
            .organizations
            .iter()
            .map(|(_, o)| o.clone())
            .collect();
        desired.namespaces = crate::organizations::bindings(&manifests.namespaces, &organizations);
        Ok(Declarations {
            manifests,
            tenants,
            state,
            desired,
            organizations,
        })
    }
}

/// The tenant file's lock for this run: shared for `plan`, exclusive otherwise.
fn lock_state(
    args: &Args,
    mode: Mode,
) -> Result<Option<crate::backend::lock::StateLock>, CliError> {
    use crate::backend::lock::Access;
    let (access, command) = match mode {
        Mode::Plan => (Access::Read, "seatkeeper plan"),
        Mode::Apply => (Access::Write, "seatkeeper apply"),
        Mode::Delete => (Access::Write, "seatkeeper delete"),
    };
    lock_file(&args.state, access, args.lock_timeout, command)
}

/// The lock on `state` for `command`. A tenant file in a folder that does not exist (a run
/// with Microsoft organizations only) needs none.
fn lock_file(
    state: &std::path::Path,
    access: crate::backend::lock::Access,
    timeout: std::time::Duration,
    command: &str,
) -> Result<Option<crate::backend::lock::StateLock>, CliError> {
    let dir = state.parent().filter(|p| !p.as_os_str().is_empty());
    if dir.is_some_and(|d| !d.is_dir()) {
        return Ok(None);
    }
    Ok(Some(crate::backend::lock::acquire(
        state, access, timeout, command,
    )?))
}

/// `--now` fixes the clock; without it, the real time.
fn clock_of(now: &Option<String>) -> Result<Arc<dyn Clock>, CliError> {
    Ok(match now {
        Some(s) => {
            let t = s
                .parse::<Instant>()
                .map_err(|e| CliError::Now(e.to_string()))?;
            Arc::new(FixedClock::new(t))
        }
        None => Arc::new(SystemClock),
    })
}

/// (kind, namespace, name)
type Key = (Kind, String, String);

/// The declared state without a cluster: everything applied before (the tenant file's
/// records), overridden by these manifests, as a cluster keeps objects between applies.
struct Applied {
    objects: BTreeMap<Key, Value>,
    /// created at, uid, deleting.
    meta: BTreeMap<Key, (Instant, String, bool)>,
    statuses: BTreeMap<Key, Value>,
    /// Records of other things, kept as they are.
    others: Vec<ResourceRecord>,
    /// The objects these manifests name.
    targets: Vec<Key>,
}

impl Applied {
    fn read(
        mode: Mode,
        tenant: &TenantFile,
        manifests: &manifests::Manifests,
        start: Instant,
    ) -> Result<Applied, CliError> {
        let mut d = Applied {
            objects: BTreeMap::new(),
            meta: BTreeMap::new(),
            statuses: BTreeMap::new(),
            others: vec![],
            targets: vec![],
        };
        for r in &tenant.resources {
            match Kind::from_wire(&r.kind) {
                Some(k) if !r.manifest.is_null() => {
                    let key = (k, r.namespace.clone(), r.name.clone());
                    d.objects.insert(key.clone(), r.manifest.clone());
                    d.meta
                        .insert(key.clone(), (r.created_at, r.uid.clone(), r.deleting));
                    d.statuses.insert(key, r.status.clone());
                }
                _ => d.others.push(r.clone()),
            }
        }
        for (_, obj) in &manifests.objects {
            let k = Kind::from_wire(obj.kind()).expect("a seatkeeper kind");
            let key = (k, obj.namespace(), obj.name());
            let mut v = obj.to_value();
            if let Some(o) = v.as_object_mut() {
                o.remove("status");
            }
            d.objects.insert(key.clone(), v);
            let created = obj
                .meta()
                .creation_timestamp
                .as_ref()
                .map_or(start, |t| t.0);
            let uid = obj
                .meta()
                .uid
                .clone()
                .unwrap_or_else(|| tenant.uid_for(obj.kind(), &key.1, &key.2));
            let entry = d.meta.entry(key.clone()).or_insert((created, uid, false));
            // `plan` of a deletion in progress still plans the deletion.
            entry.2 = mode == Mode::Delete || (entry.2 && mode == Mode::Plan);
            d.targets.push(key);
        }
        Ok(d)
    }

    /// The planner's declared state, through the one intent builder.
    fn desired(&self, state: &Path, manifests: &manifests::Manifests) -> Result<Desired, CliError> {
        let mut desired = Desired {
            namespaces: BTreeMap::new(),
            secrets: manifests.secrets.clone(),
            ..Default::default()
        };
        for (key, object) in &self.objects {
            let (created_at, uid, deleting) = self.meta[key].clone();
            let recorded = |e: String| {
                InputError(format!(
                    "{}: recorded {} {}/{}: {e}",
                    state.display(),
                    key.0,
                    key.1,
                    key.2
                ))
            };
            let obj = Object::from_value(object, None).map_err(&recorded)?;
            let meta = crate::intents::meta(obj.meta(), created_at, uid, deleting);
            // A record that cannot be read is an error, never an empty status: it holds what
            // the resource bought and the licences it owns.
            let status = self.statuses.get(key).cloned().unwrap_or(Value::Null);
            match obj {
                Object::Subscription(o) => desired.subscriptions.push(declared(
                    meta,
                    &o.spec,
                    recorded_status(status).map_err(&recorded)?,
                )),
                Object::LicenseAssignment(o) => desired.assignments.push(declared(
                    meta,
                    &o.spec,
                    recorded_status(status).map_err(&recorded)?,
                )),
                Object::AddOn(o) => desired.add_ons.push(declared(
                    meta,
                    &o.spec,
                    recorded_status(status).map_err(&recorded)?,
                )),
            }
        }
        Ok(desired)
    }
}

/// The Microsoft tenants the manifests declare (Organization documents with a Microsoft
/// backend, their credentials from Secret documents).
struct Tenants {
    /// lowercase domain → configuration.
    microsoft: BTreeMap<String, crate::backend::microsoft::Config>,
}

impl Tenants {
    fn of(m: &manifests::Manifests) -> Result<Tenants, CliError> {
        let secret = |ns: &str, name: &str, key: &str| {
            m.secrets
                .get(&(ns.to_string(), name.to_string(), key.to_string()))
                .cloned()
        };
        let mut microsoft = BTreeMap::new();
        for (src, o) in &m.organizations {
            let label = format!(
                "Organization {}",
                o.metadata.name.clone().unwrap_or_default()
            );
            if let Some(cfg) = crate::organizations::microsoft_config(o, &secret)
                .map_err(|e| src.err(&label, e))?
            {
                microsoft.insert(o.spec.domain.to_lowercase(), cfg);
            }
        }
        Ok(Tenants { microsoft })
    }

    /// Each Microsoft tenant's catalog as it reads now: what input is checked against.
    async fn catalogs(&self) -> Result<BTreeMap<String, Arc<crate::domain::Catalog>>, CliError> {
        let mut out = BTreeMap::new();
        for (domain, m) in self.backends()? {
            out.insert(domain.clone(), m.snapshot(&domain).await?.catalog);
        }
        Ok(out)
    }

    fn backends(&self) -> Result<BTreeMap<String, Microsoft>, CliError> {
        self.microsoft
            .iter()
            .map(|(d, c)| {
                let m = Microsoft::new(c.clone())
                    .map_err(|e| CliError::Backend(BackendError::Unavailable(e)))?;
                Ok((d.clone(), m))
            })
            .collect()
    }

    /// The copy `plan` runs on, with each Microsoft tenant as it stands (read, not changed),
    /// and each Microsoft tenant's own catalog (its products, no list prices).
    async fn with_live_tenants(
        &self,
        copy: Embedded,
        clock: Arc<dyn Clock>,
    ) -> Result<(Embedded, BTreeMap<String, Arc<crate::domain::Catalog>>), CliError> {
        let mut catalogs = BTreeMap::new();
        if self.microsoft.is_empty() {
            return Ok((copy, catalogs));
        }
        let mut file = copy.tenant();
        let mut products = file.catalog.clone().unwrap_or_default();
        for (domain, m) in self.backends()? {
            let snap = m.snapshot(&domain).await?;
            let builtin = crate::domain::Catalog::builtin();
            for p in snap
                .catalog
                .products()
                .filter(|p| builtin.product(&p.sku).is_none())
            {
                products.products.push(p.clone());
            }
            file.organizations
                .retain(|o| !o.domain.eq_ignore_ascii_case(&domain));
            file.organizations.extend(snap.organization);
            catalogs.insert(domain, snap.catalog);
        }
        file.catalog = Some(products);
        Ok((Embedded::new(file, None, clock), catalogs))
    }
}

/// One `plan`, `apply` or `delete`.
struct Execution<'a> {
    args: &'a Args,
    mode: Mode,
    tenant: &'a TenantFile,
    state: &'a Applied,
    tenants: Tenants,
    clock: Arc<dyn Clock>,
}

impl Execution<'_> {
    /// The executor's run: for `plan`, on an in-memory copy (of the tenant file, and of each
    /// Microsoft tenant as it is read now): what apply would do, changing nothing; otherwise
    /// on the tenant file and the real services, keeping records in the file.
    async fn execute(
        &self,
        desired: &mut Desired,
        options: &Options,
        progress: progress::Progress,
    ) -> Result<executor::Report, CliError> {
        let max = executor::DEFAULT_MAX_PASSES;
        let clock = self.clock.clone();
        if self.mode == Mode::Plan {
            let copy = Embedded::new(self.tenant.clone(), None, clock.clone());
            let (copy, _) = self.tenants.with_live_tenants(copy, clock.clone()).await?;
            let mut nothing = NoLedger;
            let run = executor::converge(&copy, &mut nothing, desired, &*clock, options, max);
            return Ok(run.await?);
        }
        let embedded = Embedded::new(
            self.tenant.clone(),
            Some(self.args.state.clone()),
            clock.clone(),
        );
        let mut routed = Routed::new(embedded);
        routed.microsoft = self.tenants.backends()?;
        let backend = Hooked {
            inner: routed,
            hook: progress,
        };
        let mut ledger = TenantLedger {
            backend: &backend.inner.default,
            others: self.state.others.clone(),
            objects: &self.state.objects,
            progress: &backend.hook,
        };
        let run = executor::converge(&backend, &mut ledger, desired, &*clock, options, max).await;
        backend.hook.finish();
        let report = run?;
        let backend = backend.inner;
        if self.mode == Mode::Delete {
            // Resources whose deletion is complete leave the tenant file's records.
            let gone: Vec<(String, String, String)> = report
                .plan
                .deleted
                .iter()
                .map(|r| (r.kind.as_str().into(), r.namespace.clone(), r.name.clone()))
                .collect();
            backend.default.forget_records(&gone)?;
        }
        Ok(report)
    }
}

/// A status recorded in the tenant file (none yet: the default).
fn recorded_status<T: Default + serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    if value.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| format!("status.{}: {}", e.path(), e.inner()))
}

/// Bad input that only the tenant can reveal: an unknown organization or product.
fn check_against_tenant(
    m: &manifests::Manifests,
    tenant: &TenantFile,
    live: &BTreeMap<String, Arc<crate::domain::Catalog>>,
) -> Result<(), InputError> {
    let file_catalog = crate::domain::Catalog::with_overrides(tenant.catalog.as_ref());
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
        let catalog = live
            .get(&org.to_lowercase())
            .map_or(&file_catalog, |c| &**c);
        if !live.contains_key(&org.to_lowercase())
            && !tenant
                .organizations
                .iter()
                .any(|o| o.domain.eq_ignore_ascii_case(org))
        {
            return Err(src.err(
                &label,
                format!("spec.organization: {org} is not an organization in the tenant file, nor declared by an Organization document"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(args: &[&str]) -> bool {
        match Cli::try_parse_from(args).unwrap().command {
            Command::Run(a) => a.require_namespace_binding,
            Command::Plan(p) => p.common.require_namespace_binding,
            Command::Apply(a) | Command::Delete(a) => a.require_namespace_binding,
            _ => unreachable!(),
        }
    }

    #[test]
    fn require_namespace_binding_takes_both_forms_on_every_subcommand() {
        let plan = ["seatkeeper", "plan", "-f", "m.yaml", "--state", "t.yaml"];
        let run = ["seatkeeper", "run", "--state", "t.yaml"];
        let with = |base: &[&'static str], extra: &[&'static str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            binding(&v)
        };
        assert!(!with(&plan, &[]), "plan: off by default");
        assert!(with(&plan, &["--require-namespace-binding"]));
        assert!(with(&plan, &["--require-namespace-binding=true"]));
        assert!(!with(&plan, &["--require-namespace-binding=false"]));
        assert!(with(&run, &[]), "run: on by default");
        assert!(with(&run, &["--require-namespace-binding"]));
        assert!(!with(&run, &["--require-namespace-binding=false"]));
        assert!(!with(&run, &["--require-namespace-binding", "false"]));
    }
}
