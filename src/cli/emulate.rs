//! `seatkeeper emulate`: Microsoft's licensing services on one address (see `crate::emulator`).

use crate::backend::embedded::Embedded;
use crate::clock::{Clock, SystemClock};
use crate::emulator::{Emulator, Faults, Options};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct EmulateArgs {
    /// The tenant file the emulated services serve (changes are saved to it).
    #[arg(long)]
    state: PathBuf,
    /// Where to listen, e.g. 127.0.0.1:8443.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: std::net::SocketAddr,
    /// The one application id accepted by the token endpoint (default: any).
    #[arg(long)]
    client_id: Option<String>,
    /// Its client secret (default: any). Prefer the environment to the command line.
    #[arg(
        long,
        env = "SEATKEEPER_EMULATOR_CLIENT_SECRET",
        hide_env_values = true
    )]
    client_secret: Option<String>,
    /// How long a token lives (e.g. 1h, 30s): a short life tests renewal mid-run.
    #[arg(long, default_value = "1h", value_parser = super::parse_duration)]
    token_lifetime: Duration,
    /// Fault: added to every answer (e.g. 50ms).
    #[arg(long, default_value = "0ms", value_parser = super::parse_duration)]
    latency: Duration,
    /// Fault: share of requests (0 to 1) answered 503 before anything is done.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Fault: share of writes (0 to 1) whose reply is lost after the change was made.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Fault: Graph licence writes allowed per --budget-window (Graph: 3000 per 150 s);
    /// beyond it items are answered 429 with Retry-After.
    #[arg(long)]
    write_budget: Option<u32>,
    /// The write budget's window; shorter than Graph's 150s compresses time for tests.
    #[arg(long, default_value = "150s", value_parser = super::parse_duration)]
    budget_window: Duration,
    /// Fault: Graph licence writes allowed per --app-budget-window for the app across every
    /// tenant served (Graph: 70000 per 5 minutes); beyond it items are answered 429 with
    /// x-ms-throttle-scope Application/…. (--write-budget is then per tenant.)
    #[arg(long)]
    app_write_budget: Option<u32>,
    /// The app-wide budget's window; shorter than Graph's 300s compresses time.
    #[arg(long, default_value = "300s", value_parser = super::parse_duration)]
    app_budget_window: Duration,
    /// Seed of the fault dice (the same seed, the same faults).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fault: tokens stop working this long after they were issued, whatever their
    /// expires_in said (a revoked token, a token expiring mid-run), e.g. 2s.
    #[arg(long, value_parser = super::parse_duration)]
    tokens_die_after: Option<Duration>,
    /// Fault: a subscription just bought stays out of reads this long (replication lag), e.g. 2s.
    #[arg(long, default_value = "0ms", value_parser = super::parse_duration)]
    replication_lag: Duration,
    /// Fault: licence writes are refused 403 (the application lacks LicenseAssignment.ReadWrite.All).
    #[arg(long)]
    deny_licence_writes: bool,
    /// Fault: users' signInActivity is refused 403 (the application lacks AuditLog.Read.All).
    #[arg(long)]
    deny_sign_in_activity: bool,
    /// Fault: this tenant's admin consent was revoked: its token requests are refused
    /// (AADSTS65001), the others' are not. Repeat for several tenants.
    #[arg(long = "revoke-consent", value_name = "TENANT")]
    revoked_consent: Vec<String>,
    /// Fault: this tenant's delegated access ended (a GDAP relationship expired): every call
    /// for it is refused 403. Repeat for several tenants.
    #[arg(long = "deny-tenant", value_name = "TENANT")]
    denied_tenants: Vec<String>,
    /// Fault: every checkout goes through and its reply is lost.
    #[arg(long)]
    lose_checkout_replies: bool,
    /// Fault: an order is listed only this long after it was placed (Partner Center: up to
    /// 15 minutes), e.g. 15m.
    #[arg(long, default_value = "0ms", value_parser = super::parse_duration)]
    orders_lag: Duration,
    /// Fault: every trial transition is answered with a Failed event and converts nothing.
    #[arg(long)]
    fail_transitions: bool,
    /// Fault: Partner Center answers seat changes 202 Accepted and finishes them this much
    /// later (every organization's seatChangeDelayMinutes), e.g. 30m.
    #[arg(long, value_parser = super::parse_duration)]
    seat_changes_finish_after: Option<Duration>,
    /// Fix the tenant's clock (RFC 3339), for reproducible runs.
    #[arg(long, value_parser = super::parse_now)]
    now: Option<String>,
}

pub fn run(args: &EmulateArgs) -> i32 {
    let clock: Arc<dyn Clock> = match args
        .now
        .as_deref()
        .map(str::parse::<crate::domain::Instant>)
    {
        None => Arc::new(SystemClock),
        Some(Ok(t)) => Arc::new(crate::clock::FixedClock::new(t)),
        Some(Err(e)) => {
            eprintln!("error: --now: {e}: expected an RFC 3339 time such as 2026-11-21T09:00:00Z");
            return super::EXIT_INVALID;
        }
    };
    // The emulated services own the tenant file while they run, as `apply` does.
    let _lock = match crate::backend::lock::acquire(
        &args.state,
        crate::backend::lock::Access::Write,
        Duration::from_secs(30),
        "seatkeeper emulate",
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_INVALID;
        }
    };
    let mut tenant = match crate::backend::embedded::TenantFile::load(&args.state) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_INVALID;
        }
    };
    if let Some(after) = args.seat_changes_finish_after {
        let minutes = after.as_secs().div_ceil(60).max(1) as u32;
        for o in &mut tenant.organizations {
            o.seat_change_delay_minutes = minutes;
        }
    }
    let backend = Embedded::new(tenant, Some(args.state.clone()), clock);
    let options = Options {
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone(),
        token_lifetime: args.token_lifetime.as_secs().max(1),
        faults: Faults {
            latency: args.latency,
            error_rate: args.error_rate.clamp(0.0, 1.0),
            drop_rate: args.drop_rate.clamp(0.0, 1.0),
            write_budget: args.write_budget,
            window: args.budget_window,
            app_write_budget: args.app_write_budget,
            app_window: args.app_budget_window,
            seed: args.seed,
            tokens_die_after: args.tokens_die_after,
            replication_lag: args.replication_lag,
            deny_licence_writes: args.deny_licence_writes,
            deny_sign_in_activity: args.deny_sign_in_activity,
            revoked_consent: args.revoked_consent.clone(),
            denied_tenants: args.denied_tenants.clone(),
            lose_checkout_replies: args.lose_checkout_replies,
            orders_lag: args.orders_lag,
            fail_transitions: args.fail_transitions,
        },
    };
    let emulator = Arc::new(Emulator::new(backend, options));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let listen = args.listen;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        eprintln!(
            "emulating Microsoft Graph, Partner Center and the token endpoint on http://{listen}"
        );
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            super::shutdown_signal().await;
            stop_tx.send_replace(true);
        });
        crate::emulator::serve(listener, emulator, stop)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => super::EXIT_READY,
        Err(e) => {
            eprintln!("error: {e}");
            super::EXIT_INVALID
        }
    }
}
