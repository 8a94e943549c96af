//! `seatkeeper report` (CONTRACT §5.4): what seats cost and who uses them, from the tenant as
//! it is read now and the declarations given with `-f`. It reads and changes nothing; the
//! figures come from [`crate::report`], the showback from the planner's own claims.

use super::{CliError, Declarations, EXIT_READY, InputError, Mode, clock_of};
use crate::backend::embedded::Embedded;
use crate::domain::billing::money;
use crate::domain::{Instant, counted};
use crate::planner::resources::UserState;
use crate::planner::{Desired, Options};
use crate::report::{self, LicenceErrorReport, OrganizationReport, Report};
use clap::ValueEnum;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Manifest files or folders (the declarations whose cost is shown per namespace, and
    /// Organization documents for Microsoft tenants); `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// The embedded backend's tenant file (for a Microsoft organization, the records file).
    #[arg(long)]
    state: PathBuf,
    /// Only this organization (by its domain); default: every one the tenant file holds or
    /// an Organization document declares.
    #[arg(long)]
    organization: Option<String>,
    /// A licensed account whose last sign-in is older than this is inactive (e.g. 30d, 90d,
    /// 12h).
    #[arg(long, default_value = "30d", value_parser = parse_age)]
    inactive: jiff::SignedDuration,
    /// Fix the clock (RFC 3339), as for `plan`: what "inactive" and term ends are measured
    /// against.
    #[arg(long, value_parser = super::parse_now)]
    now: Option<String>,
    /// Output format: tables, one JSON document, or CSV (one row per line of every table,
    /// the first column naming the table).
    #[arg(short = 'o', long = "format", value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
    /// How long to wait while another run holds the tenant file (e.g. 30s; 0 fails at once).
    /// A report only reads: it shares the file with plans and exports.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    lock_timeout: std::time::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

/// `30d`, `12h`, `90m`, or a duration `--resync` takes.
fn parse_age(s: &str) -> Result<jiff::SignedDuration, String> {
    let bad = || format!("{s:?}: expected a duration such as 30d, 90d or 12h");
    if let Some(days) = s.strip_suffix('d') {
        let days: i64 = days.parse().map_err(|_| bad())?;
        if !(0..=36_500).contains(&days) {
            return Err(bad());
        }
        return Ok(jiff::SignedDuration::from_hours(days * 24));
    }
    let d = super::parse_duration(s).map_err(|_| bad())?;
    jiff::SignedDuration::try_from(d).map_err(|_| bad())
}

pub fn run(args: &ReportArgs) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(build(args)) {
        Ok(r) => {
            print!("{}", render(&r, args.format));
            EXIT_READY
        }
        Err(e) => super::failed(&e),
    }
}

async fn build(args: &ReportArgs) -> Result<Report, CliError> {
    let clock = clock_of(&args.now)?;
    let now = clock.now();
    let (_lock, tenant, missing) =
        super::read_state(&args.state, args.lock_timeout, "seatkeeper report")?;
    let Declarations {
        tenants,
        desired,
        organizations,
        ..
    } = Declarations::read(&args.files, &args.state, &tenant, missing, Mode::Plan, now)?;
    let copy = Embedded::new(tenant.clone(), None, clock.clone());
    let (copy, live_catalogs) = tenants.with_live_tenants(copy, clock.clone()).await?;
    let mut domains: Vec<String> = match &args.organization {
        Some(d) => vec![d.to_lowercase()],
        None => copy
            .tenant()
            .organizations
            .iter()
            .map(|o| o.domain.to_lowercase())
            .collect(),
    };
    domains.extend(desired.organizations());
    domains.sort();
    domains.dedup();
    let mut observed = crate::executor::observe(&copy, &domains).await?;
    if let Some(d) = &args.organization
        && !observed.organizations.contains_key(&d.to_lowercase())
    {
        return Err(InputError(format!(
            "--organization {d}: not an organization in the tenant file {}, nor declared by an \
             Organization document given with -f",
            args.state.display()
        ))
        .into());
    }
    // Last sign-ins: the tenant file's own; a Microsoft tenant's from Graph when it may.
    let mut sign_ins: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    for (domain, m) in tenants.backends()? {
        let Some(org) = observed.organizations.get_mut(&domain) else {
            continue;
        };
        match m.sign_ins().await? {
            Ok(read) => {
                for u in &mut org.users {
                    u.last_sign_in_at = read.get(&u.upn.to_lowercase()).copied().flatten();
                }
                sign_ins.insert(domain, Ok(()));
            }
            Err(why) => {
                sign_ins.insert(domain, Err(why));
            }
        }
    }
    let options = Options {
        per_organization: crate::organizations::limits(&organizations),
        ..Options::default()
    };
    let plan = crate::planner::plan(&desired, &observed, now, &options);
    let mut out = Report::default();
    for (domain, org) in &observed.organizations {
        if args
            .organization
            .as_ref()
            .is_some_and(|d| !d.eq_ignore_ascii_case(domain))
        {
            continue;
        }
        let showback = plan
            .held
            .iter()
            .filter(|h| desired.assignments[h.assignment].spec.organization == *domain)
            .map(|h| {
                let ns = desired.assignments[h.assignment].meta.namespace.clone();
                (ns, h.product.clone(), h.users)
            })
            .collect();
        // Who holds each user's licence: the oldest resource naming the user and a product
        // the user holds (the claim the planner applies).
        let mut order: Vec<usize> = (0..desired.assignments.len())
            .filter(|i| desired.assignments[*i].spec.organization == *domain)
            .collect();
        order.sort_by_key(|i| desired.assignments[*i].meta.created_at);
        let mut declared_by = std::collections::HashMap::new();
        for i in order {
            let d = &desired.assignments[i];
            for u in &plan.assignments[i].users {
                let holds = org.user(&u.user).is_some_and(|h| {
                    d.spec
                        .licenses
                        .iter()
                        .any(|l| h.licence(&l.product).is_some())
                });
                if holds {
                    declared_by
                        .entry(u.user.to_lowercase())
                        .or_insert_with(|| format!("{}/{}", d.meta.namespace, d.meta.name));
                }
            }
            // A group's members hold its licence through the group: the declaration is the
            // resource naming the group (drop the member from the group, or the group).
            for name in &d.spec.groups {
                let Ok(g) = org.group(name) else { continue };
                for m in &g.members {
                    declared_by.entry(m.to_lowercase()).or_insert_with(|| {
                        format!("{}/{} (group {})", d.meta.namespace, d.meta.name, g.name)
                    });
                }
            }
        }
        let inputs = report::Inputs {
            declared_by,
            // A Microsoft tenant's own catalog: its prices are not known.
            catalog: live_catalogs.get(domain).unwrap_or(&observed.catalog),
            now,
            inactive_after: args.inactive,
            sign_ins: sign_ins.get(domain).cloned().unwrap_or(Ok(())),
            showback,
            direct_errors: direct_errors(&desired, &plan, domain, org),
        };
        out.organizations.push(report::organization(org, &inputs));
    }
    Ok(out)
}

/// Declared licences a user cannot have (the resource's users in state Blocked), one row per
/// product the user lacks.
fn direct_errors(
    desired: &Desired,
    plan: &crate::planner::Plan,
    domain: &str,
    org: &crate::domain::Organization,
) -> Vec<LicenceErrorReport> {
    let mut out = vec![];
    for (d, s) in desired.assignments.iter().zip(&plan.assignments) {
        if d.spec.organization != domain {
            continue;
        }
        for u in s.users.iter().filter(|u| u.state == UserState::Blocked) {
            let held = org.user(&u.user);
            for l in &d.spec.licenses {
                if held.is_some_and(|h| h.licence(&l.product).is_some()) {
                    continue;
                }
                out.push(LicenceErrorReport {
                    user: u.user.clone(),
                    product: l.product.clone(),
                    reason: u.reason.clone().unwrap_or_default(),
                    group: None,
                    declared_by: Some(format!("{}/{}", d.meta.namespace, d.meta.name)),
                    message: u.message.clone().unwrap_or_default(),
                });
            }
        }
    }
    out
}

fn render(r: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => serde_json::to_string_pretty(r).expect("a report serializes") + "\n",
        ReportFormat::Table => r.organizations.iter().map(table).collect(),
        ReportFormat::Csv => csv(r),
    }
}

fn amount(a: Option<f64>) -> String {
    a.map_or("-".into(), money)
}

fn date(at: Option<Instant>) -> String {
    at.map_or("-".into(), |t| t.strftime("%Y-%m-%d").to_string())
}

fn table(o: &OrganizationReport) -> String {
    use super::output::aligned;
    let mut out = format!(
        "Organization {}: {} a month, {} of it on free seats{}\n\n",
        o.domain,
        amount(o.monthly_cost),
        amount(o.free_monthly_cost),
        if o.currency.is_none() {
            " (prices unknown for this tenant)"
        } else {
            ""
        }
    );
    let mut grid = vec![
        [
            "PRODUCT",
            "SEATS",
            "ASSIGNED",
            "FREE",
            "MONTHLY",
            "FREE SEATS MONTHLY",
            "NEXT TERM END",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in &o.products {
        grid.push(vec![
            p.product.clone(),
            p.seats.to_string(),
            p.assigned.to_string(),
            p.free.to_string(),
            amount(p.monthly_cost),
            amount(p.free_monthly_cost),
            match (p.next_term_ends_at, p.renews) {
                (Some(at), Some(false)) => format!("{} (ends)", date(Some(at))),
                (Some(at), _) => format!("{} (renews)", date(Some(at))),
                _ => "-".into(),
            },
        ]);
    }
    out += "Products:\n";
    out += &aligned(&grid);
    if !o.namespaces.is_empty() {
        let mut grid = vec![["NAMESPACE", "SEATS", "MONTHLY"].map(String::from).to_vec()];
        for n in &o.namespaces {
            grid.push(vec![
                n.namespace.clone(),
                n.seats.to_string(),
                amount(n.monthly_cost),
            ]);
        }
        if o.undeclared.seats > 0 {
            grid.push(vec![
                "(not declared)".into(),
                o.undeclared.seats.to_string(),
                amount(o.undeclared.monthly_cost),
            ]);
        }
        out += "Seats held per namespace (its LicenseAssignments):\n";
        out += &aligned(&grid);
    }
    let since = date(Some(o.inactive_since));
    if o.inactive_users.is_empty() {
        out += &format!("Inactive licensed users (no sign-in since {since}): none\n\n");
    } else {
        let mut grid = vec![
            [
                "USER",
                "PRODUCTS",
                "LAST SIGN-IN",
                "WHY",
                "MONTHLY",
                "DECLARED BY",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for u in &o.inactive_users {
            grid.push(vec![
                u.user.clone(),
                u.products.join(","),
                u.last_sign_in_at.map_or("never".into(), |t| date(Some(t))),
                u.why.clone(),
                amount(u.monthly_cost),
                u.declared_by.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out += &format!(
            "Inactive licensed users (no sign-in since {since}), {}:\n",
            counted(o.inactive_users.len(), "user", "users")
        );
        out += &aligned(&grid);
    }
    if let Some(why) = &o.sign_in_activity.reason {
        out += &format!("Last sign-ins unavailable, only disabled accounts are listed: {why}\n\n");
    }
    if !o.licence_errors.is_empty() {
        let mut grid = vec![
            ["USER", "PRODUCT", "REASON", "FROM", "MESSAGE"]
                .map(String::from)
                .to_vec(),
        ];
        for e in &o.licence_errors {
            grid.push(vec![
                e.user.clone(),
                e.product.clone(),
                e.reason.clone(),
                match (&e.group, &e.declared_by) {
                    (Some(g), _) => format!("group {g}"),
                    (None, Some(d)) => d.clone(),
                    _ => "-".into(),
                },
                e.message.clone(),
            ]);
        }
        out += "Licences in error:\n";
        out += &aligned(&grid);
    }
    out += "A report changes nothing: to reclaim a seat, change the declaration that holds it.\n";
    out
}

/// One header for every table; the first column names the table a row belongs to. Amounts
/// are plain numbers beside their currency.
fn csv(r: &Report) -> String {
    let mut out = String::from(
        "table,organization,name,product,seats,assigned,free,monthlyCost,freeMonthlyCost,currency,lastSignInAt,accountEnabled,reason\n",
    );
    let field = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let num = |a: Option<f64>| a.map_or(String::new(), |a| format!("{a:.2}"));
    for o in &r.organizations {
        let cur = o.currency.clone().unwrap_or_default();
        let mut row = |cells: [String; 13]| {
            let line: Vec<String> = cells.iter().map(|c| field(c)).collect();
            out += &line.join(",");
            out.push('\n');
        };
        let d = o.domain.clone();
        for p in &o.products {
            row([
                "product".into(),
                d.clone(),
                String::new(),
                p.product.clone(),
                p.seats.to_string(),
                p.assigned.to_string(),
                p.free.to_string(),
                num(p.monthly_cost),
                num(p.free_monthly_cost),
                cur.clone(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for n in &o.namespaces {
            row([
                "namespace".into(),
                d.clone(),
                n.namespace.clone(),
                String::new(),
                n.seats.to_string(),
                String::new(),
                String::new(),
                num(n.monthly_cost),
                String::new(),
                cur.clone(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        if o.undeclared.seats > 0 {
            row([
                "undeclared".into(),
                d.clone(),
                String::new(),
                String::new(),
                o.undeclared.seats.to_string(),
                String::new(),
                String::new(),
                num(o.undeclared.monthly_cost),
                String::new(),
                cur.clone(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for u in &o.inactive_users {
            row([
                "inactiveUser".into(),
                d.clone(),
                u.user.clone(),
                u.products.join(" "),
                String::new(),
                String::new(),
                String::new(),
                num(u.monthly_cost),
                String::new(),
                cur.clone(),
                u.last_sign_in_at.map(|t| t.to_string()).unwrap_or_default(),
                u.account_enabled.to_string(),
                u.why.clone(),
            ]);
        }
        for e in &o.licence_errors {
            row([
                "licenceError".into(),
                d.clone(),
                e.user.clone(),
                e.product.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                e.reason.clone(),
            ]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inactive_takes_days_and_the_durations_other_flags_take() {
        assert_eq!(
            parse_age("30d").unwrap(),
            jiff::SignedDuration::from_hours(720)
        );
        assert_eq!(
            parse_age("12h").unwrap(),
            jiff::SignedDuration::from_hours(12)
        );
        assert!(parse_age("soon").unwrap_err().contains("30d"));
        assert!(parse_age("-3d").is_err());
    }
}
