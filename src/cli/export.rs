//! `seatkeeper export` (CONTRACT §5.4): manifests that adopt what an organization holds today,
//! so that `plan` on them changes nothing.
//!
//! What is written: a Namespace bound to the organization; one Subscription per live
//! subscription (its id, product, seats, billing; `deletionPolicy: Orphan`); an AddOn per
//! traditional add-on (under its Subscription) and per standalone add-on (a subscription of
//! an add-on product); and LicenseAssignments in mode `Add` that list, per product and set of
//! disabled plans, the users who hold that licence directly. Licences inherited from a group
//! are left to the group. Nothing here reads or writes the tenant; [`adopt`] is a pure
//! function of what was read.

use super::{CliError, EXIT_READY, InputError, Tenants, clock_of, manifests};
use crate::backend::Backend;
use crate::backend::embedded::{Embedded, TenantFile};
use crate::domain::{
    Catalog, Instant, Organization, ProductKind, SubscriptionState, User, counted,
};
use clap::ValueEnum;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// At most this many users in one LicenseAssignment: an object stays far below the API
/// server's 1.5 MiB limit (5,000 names of 40 characters are about 200 KiB, with status).
pub const MAX_USERS_PER_ASSIGNMENT: usize = 5_000;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Organization and Secret documents (files or folders; `-` reads standard input), for an
    /// organization on the Microsoft backend; not needed for one in the tenant file.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// The embedded backend's tenant file (for a Microsoft organization, the records file; it
    /// need not exist).
    #[arg(long)]
    state: PathBuf,
    /// The organization to export, by its domain.
    #[arg(long)]
    organization: String,
    /// The namespace of what is exported (default: the domain's first label, e.g. `contoso`);
    /// with --split-by, the prefix of each namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// One namespace (`none`), one per product (`product`: its Subscriptions, add-ons and
    /// licences together), or one per department for the LicenseAssignments (`department`:
    /// users without a department, the Subscriptions and AddOns stay in --namespace).
    #[arg(long, value_enum, default_value_t = SplitBy::None)]
    split_by: SplitBy,
    /// Fix the clock (RFC 3339), as for `plan`: the time the tenant is read at.
    #[arg(long, value_parser = super::parse_now)]
    now: Option<String>,
    /// Output format: multi-document YAML, or a JSON `List`.
    #[arg(short = 'o', long = "format", value_enum, default_value_t = ExportFormat::Yaml)]
    format: ExportFormat,
    /// Write to this file (`.yaml`, `.yml`, `.json`), or to this folder (an existing folder,
    /// a path ending in `/`, or one without an extension): one file per namespace and a
    /// `kustomization.yaml`. Default: standard output.
    #[arg(long = "output")]
    output: Option<PathBuf>,
    /// How long to wait while another run holds the tenant file (e.g. 30s; 0 fails at once).
    /// Export only reads: it shares the file with plans and other exports.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    lock_timeout: std::time::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitBy {
    Product,
    Department,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Yaml,
    Json,
}

/// Where the exported objects go.
#[derive(Clone, Debug)]
pub struct Layout {
    pub namespace: String,
    pub split_by: SplitBy,
    pub max_users: usize,
}

/// What [`adopt`] produced: documents by namespace (each namespace's Namespace first), and
/// what was left out, in words.
#[derive(Debug, Default)]
pub struct Export<'a> {
    pub namespaces: BTreeMap<String, Vec<Doc<'a>>>,
    pub left_out: Vec<String>,
    pub counts: Counts,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub subscriptions: usize,
    pub add_ons: usize,
    pub assignments: usize,
    pub users: usize,
}

pub fn run(args: &ExportArgs) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(export(args)) {
        Ok(()) => EXIT_READY,
        Err(e) => super::failed(&e),
    }
}

async fn export(args: &ExportArgs) -> Result<(), CliError> {
    let clock = clock_of(&args.now)?;
    let now = clock.now();
    let (_lock, tenant, missing) =
        super::read_state(&args.state, args.lock_timeout, "seatkeeper export")?;
    let manifests = if args.files.is_empty() {
        manifests::Manifests::default()
    } else {
        manifests::read(&args.files, &BTreeMap::new())?
    };
    let tenants = Tenants::of(&manifests)?;
    let domain = args.organization.to_lowercase();
    let (snapshot, source) = match tenants.backends()?.remove(&domain) {
        Some(m) => (
            m.snapshot(&domain).await?,
            "Microsoft Graph and Partner Center".to_string(),
        ),
        None => {
            if missing {
                TenantFile::load(&args.state)?;
            }
            (
                Embedded::new(tenant, None, clock.clone()).into_snapshot(&domain)?,
                format!("the tenant file {}", args.state.display()),
            )
        }
    };
    let Some(org) = snapshot.organization else {
        return Err(InputError(format!(
            "--organization {}: not an organization in the tenant file {}, nor declared by an \
             Organization document given with -f",
            args.organization,
            args.state.display()
        ))
        .into());
    };
    let layout = Layout {
        namespace: match &args.namespace {
            Some(ns) if manifests::dns1123_label(ns) => ns.clone(),
            Some(ns) => {
                return Err(InputError(format!(
                    "--namespace {ns}: not a namespace name (at most 63 lowercase letters, \
                     digits and '-', starting and ending with a letter or digit)"
                ))
                .into());
            }
            None => default_namespace(&org.domain),
        },
        split_by: args.split_by,
        max_users: MAX_USERS_PER_ASSIGNMENT,
    };
    let exported = adopt(&org, &snapshot.catalog, &layout);
    let header = header(&org.domain, &source, now, &exported);
    write(args, &header, &exported)?;
    let c = exported.counts;
    eprintln!(
        "exported {}, {}, {} ({}) from {}{}",
        counted(c.subscriptions, "Subscription", "Subscriptions"),
        counted(c.add_ons, "AddOn", "AddOns"),
        counted(c.assignments, "LicenseAssignment", "LicenseAssignments"),
        counted(c.users, "licensed user", "licensed users"),
        org.domain,
        match &args.output {
            Some(p) => format!(" to {}", p.display()),
            None => String::new(),
        }
    );
    for line in &exported.left_out {
        eprintln!("note: not exported: {line}");
    }
    Ok(())
}

/// The first label of the domain, as a namespace name: `contoso.com` → `contoso`.
pub fn default_namespace(domain: &str) -> String {
    let first = domain.split('.').next().unwrap_or(domain);
    let s = slug(first, 63);
    if s.is_empty() { "default".into() } else { s }
}

/// Lowercase letters, digits and single '-', at most `max` characters: a readable name.
pub fn slug(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max);
    out.trim_end_matches('-').to_string()
}

/// Names already given in one namespace to one kind; a second `name` becomes `name-2`.
#[derive(Default)]
struct Names(BTreeMap<(String, &'static str), BTreeMap<String, usize>>);

impl Names {
    fn unique(&mut self, namespace: &str, kind: &'static str, base: &str) -> String {
        let seen = self.0.entry((namespace.to_string(), kind)).or_default();
        let n = seen.entry(base.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base.to_string()
        } else {
            let suffix = format!("-{n}");
            let mut b = base.to_string();
            b.truncate(63 - suffix.len());
            format!("{}{suffix}", b.trim_end_matches('-'))
        }
    }
}

/// One exported document, its fields in the order a person writes them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Doc<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Meta,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<Spec<'a>>,
}

impl<'a> Doc<'a> {
    fn new(kind: &'static str, name: &str, namespace: &str, spec: Spec<'a>) -> Doc<'a> {
        Doc {
            api_version: crate::api::API_VERSION,
            kind,
            metadata: Meta {
                name: name.to_string(),
                namespace: Some(namespace.to_string()),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
            },
            spec: Some(spec),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Meta {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<&'static str, &'static str>,
}

// Write-only shapes of the specs, on purpose not the API's types: they borrow the tenant's
// strings (100k users are not copied), keep the field order a reviewer reads, and write only
// what adoption needs (no `term: P1M` or `convertTrial: false` the tenant never chose). Their
// names cannot drift unnoticed: the round-trip tests read every export back through the CRDs'
// schemas and the planner (`plan` on the export changes nothing).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Spec<'a> {
    Subscription(SubscriptionSpec<'a>),
    AddOn(AddOnSpec<'a>),
    Assignment(AssignmentSpec<'a>),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSpec<'a> {
    organization: &'a str,
    product: &'a str,
    subscription_id: &'a str,
    seats: u32,
    billing_frequency: crate::domain::BillingFrequency,
    recurring_billing: bool,
    deletion_policy: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddOnSpec<'a> {
    organization: &'a str,
    product: &'a str,
    #[serde(rename = "type")]
    add_on_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_ref: Option<Ref>,
    add_on_id: &'a str,
    quantity: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    billing_frequency: Option<crate::domain::BillingFrequency>,
    deletion_policy: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Ref {
    name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentSpec<'a> {
    organization: &'a str,
    mode: &'static str,
    users: Vec<&'a str>,
    licenses: Vec<LicenceSpec>,
    deletion_policy: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenceSpec {
    product: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    disabled_plans: Vec<String>,
}

/// The manifests that adopt `org` as it stands.
pub fn adopt<'a>(org: &'a Organization, catalog: &Catalog, layout: &Layout) -> Export<'a> {
    let mut out = Export::default();
    let mut names = Names::default();
    let base_ns = layout.namespace.clone();
    // `<base>-<part>` within a namespace name's 63 characters; the base when `part` has no
    // letter or digit.
    let split_ns = |part: &str| {
        let prefix = format!("{base_ns}-");
        let s = slug(part, 63 - prefix.len());
        if s.is_empty() {
            base_ns.clone()
        } else {
            format!("{prefix}{s}")
        }
    };
    let product_ns = |sku: &str| match layout.split_by {
        SplitBy::Product => split_ns(sku),
        _ => base_ns.clone(),
    };
    let name_of = |sku: &str| {
        let name = catalog
            .product(sku)
            .map(|p| p.name.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or(sku);
        let s = slug(name, 55);
        if s.is_empty() { slug(sku, 55) } else { s }
    };
    let mut objects: BTreeMap<String, Vec<Doc<'_>>> = BTreeMap::new();

    let mut subscriptions: Vec<&crate::domain::Subscription> = org.subscriptions.iter().collect();
    subscriptions.sort_by(|a, b| {
        (&a.product, a.purchased_at, &a.id).cmp(&(&b.product, b.purchased_at, &b.id))
    });
    for s in subscriptions {
        let Some(product) = catalog.product(&s.product) else {
            out.left_out.push(format!(
                "subscription {} of {}: the product is not in the catalog",
                s.id, s.product
            ));
            continue;
        };
        if s.status == SubscriptionState::Canceled {
            out.left_out
                .push(format!("subscription {} of {}: canceled", s.id, s.product));
            continue;
        }
        let seats = s.pending_seat_change.as_ref().map_or(s.seats, |p| p.seats);
        let ns = product_ns(&s.product);
        if product.kind == ProductKind::AddOn {
            let name = names.unique(&ns, "AddOn", &name_of(&s.product));
            let spec = AddOnSpec {
                organization: &org.domain,
                product: &s.product,
                add_on_type: "Standalone",
                subscription_ref: None,
                add_on_id: &s.id,
                quantity: seats,
                billing_frequency: Some(s.billing_frequency),
                deletion_policy: "Orphan",
            };
            let doc = Doc::new("AddOn", &name, &ns, Spec::AddOn(spec));
            objects.entry(ns.clone()).or_default().push(doc);
            out.counts.add_ons += 1;
            continue;
        }
        let name = names.unique(&ns, "Subscription", &name_of(&s.product));
        let spec = SubscriptionSpec {
            organization: &org.domain,
            product: &s.product,
            subscription_id: &s.id,
            seats,
            billing_frequency: s.billing_frequency,
            recurring_billing: s.recurring_billing,
            deletion_policy: "Orphan",
        };
        let doc = Doc::new("Subscription", &name, &ns, Spec::Subscription(spec));
        objects.entry(ns.clone()).or_default().push(doc);
        out.counts.subscriptions += 1;
        for a in &s.add_ons {
            if catalog.product(&a.product).is_none() {
                out.left_out.push(format!(
                    "add-on {} of {}: the product is not in the catalog",
                    a.id, a.product
                ));
                continue;
            }
            let add_on = names.unique(&ns, "AddOn", &name_of(&a.product));
            let spec = AddOnSpec {
                organization: &org.domain,
                product: &a.product,
                add_on_type: "Traditional",
                subscription_ref: Some(Ref { name: name.clone() }),
                add_on_id: &a.id,
                quantity: a.quantity,
                billing_frequency: None,
                deletion_policy: "Orphan",
            };
            let doc = Doc::new("AddOn", &add_on, &ns, Spec::AddOn(spec));
            objects.entry(ns.clone()).or_default().push(doc);
            out.counts.add_ons += 1;
        }
    }

    // (namespace, product, disabled plans) → users holding exactly that licence directly.
    let mut groups: BTreeMap<(String, String, Vec<String>), Vec<&User>> = BTreeMap::new();
    let mut by_group = 0usize;
    let mut unknown: BTreeMap<&str, usize> = BTreeMap::new();
    let mut licensed = std::collections::BTreeSet::new();
    for u in &org.users {
        for l in &u.licenses {
            if l.by_group {
                by_group += 1;
                continue;
            }
            if catalog.product(&l.product).is_none() {
                *unknown.entry(&l.product).or_default() += 1;
                continue;
            }
            let ns = match (layout.split_by, u.department.as_deref()) {
                (SplitBy::Department, Some(d)) => split_ns(d),
                (SplitBy::Department, None) => base_ns.clone(),
                _ => product_ns(&l.product),
            };
            let mut disabled = l.disabled_plans.clone();
            disabled.sort();
            disabled.dedup();
            groups
                .entry((ns, l.product.clone(), disabled))
                .or_default()
                .push(u);
            licensed.insert(u.upn.to_lowercase());
        }
    }
    for ((ns, product, disabled), mut users) in groups {
        users.sort_by(|a, b| a.upn.cmp(&b.upn));
        let mut base = name_of(&product);
        if !disabled.is_empty() {
            let without = format!("{base}-without-{}", disabled.join("-"));
            base = slug(&without, 55);
        }
        for chunk in users.chunks(layout.max_users.max(1)) {
            let name = names.unique(&ns, "LicenseAssignment", &base);
            let spec = AssignmentSpec {
                organization: &org.domain,
                mode: "Add",
                users: chunk.iter().map(|u| u.upn.as_str()).collect(),
                licenses: vec![LicenceSpec {
                    product: product.clone(),
                    disabled_plans: disabled.clone(),
                }],
                // Deleting an adopted declaration leaves the licences where they are, as
                // Orphan leaves the subscriptions: removing licences takes an edit that says so.
                deletion_policy: "Retain",
            };
            let mut doc = Doc::new("LicenseAssignment", &name, &ns, Spec::Assignment(spec));
            // The licences listed are held already: they become this resource's own.
            doc.metadata
                .annotations
                .insert(crate::api::ADOPT_LICENCES_ANNOTATION, "true");
            objects.entry(ns.clone()).or_default().push(doc);
            out.counts.assignments += 1;
        }
    }
    out.counts.users = licensed.len();
    if by_group > 0 {
        out.left_out.push(format!(
            "{} inherited from groups: they stay with their groups",
            counted(by_group, "licence", "licences")
        ));
    }
    for (product, n) in unknown {
        out.left_out.push(format!(
            "{} of {product}: the product is not in the catalog",
            counted(n, "licence", "licences")
        ));
    }
    for (ns, mut docs) in objects {
        // Subscriptions, then add-ons, then licence assignments: the order a reader expects.
        docs.sort_by_key(|d| match d.kind {
            "Subscription" => 0,
            "AddOn" => 1,
            _ => 2,
        });
        let mut list = vec![Doc {
            api_version: "v1",
            kind: "Namespace",
            metadata: Meta {
                name: ns.clone(),
                namespace: None,
                labels: BTreeMap::from([(crate::api::ORGANIZATION_LABEL, org.domain.clone())]),
                annotations: BTreeMap::new(),
            },
            spec: None,
        }];
        list.extend(docs);
        out.namespaces.insert(ns, list);
    }
    out
}

/// The comment each written file starts with: when, from what, and what applying it does.
fn header(domain: &str, source: &str, now: Instant, exported: &Export<'_>) -> String {
    let mut h = format!(
        "# Exported by `seatkeeper export` at {now} from organization {domain}\n\
         # ({source}).\n\
         # Applying it adopts what is there and changes nothing: each Subscription and AddOn\n\
         # names its id and keeps today's seats (deletionPolicy Orphan: deleting it never\n\
         # cancels); each LicenseAssignment (mode Add) lists who holds that licence today and\n\
         # adopts those licences (seatkeeper.dev/adopt-licences): it owns them and no others, so\n\
         # dropping a user later removes that licence (deletionPolicy Retain: deleting it\n\
         # removes none). Review it, commit it, apply it; then edit it to change the tenant.\n"
    );
    for line in &exported.left_out {
        h += &format!("# Not exported: {line}.\n");
    }
    h
}

fn render(format: ExportFormat, header: &str, docs: &[&Doc<'_>]) -> String {
    match format {
        ExportFormat::Yaml => {
            let mut text = header.to_string();
            for d in docs {
                text += "---\n";
                text += &serde_saphyr::to_string(d).expect("yaml");
            }
            text
        }
        // JSON has no comments: the header is left out.
        ExportFormat::Json => {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
            serde_json::to_string_pretty(&list).expect("json") + "\n"
        }
    }
}

/// A path that names a folder: one that exists as such, ends in `/`, or has no extension.
fn is_folder(p: &Path) -> bool {
    p.is_dir() || p.as_os_str().to_string_lossy().ends_with('/') || p.extension().is_none()
}

fn write(args: &ExportArgs, header: &str, exported: &Export<'_>) -> Result<(), CliError> {
    let cannot = |p: &Path, e: std::io::Error| {
        CliError::Input(InputError(format!("{}: cannot write: {e}", p.display())))
    };
    let Some(out) = &args.output else {
        let all: Vec<&Doc<'_>> = exported.namespaces.values().flatten().collect();
        print!("{}", render(args.format, header, &all));
        return Ok(());
    };
    if !is_folder(out) {
        let all: Vec<&Doc<'_>> = exported.namespaces.values().flatten().collect();
        return write_file(out, &render(args.format, header, &all)).map_err(|e| cannot(out, e));
    }
    std::fs::create_dir_all(out).map_err(|e| cannot(out, e))?;
    let ext = match args.format {
        ExportFormat::Yaml => "yaml",
        ExportFormat::Json => "json",
    };
    let mut files = vec![];
    for (ns, docs) in &exported.namespaces {
        let file = format!("{ns}.{ext}");
        let path = out.join(&file);
        write_file(
            &path,
            &render(args.format, header, &docs.iter().collect::<Vec<_>>()),
        )
        .map_err(|e| cannot(&path, e))?;
        files.push(file);
    }
    // Another organization exported to the same folder before stays listed.
    let path = out.join("kustomization.yaml");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(v) = serde_saphyr::from_str::<serde_json::Value>(&text)
    {
        let listed = v["resources"].as_array().into_iter().flatten();
        files.extend(listed.filter_map(|f| f.as_str().map(String::from)));
    }
    files.sort();
    files.dedup();
    let mut kustomization = String::from(
        "# Written by `seatkeeper export`: the files of this folder, for `kubectl apply -k`.\n",
    );
    kustomization +=
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n";
    for f in files {
        kustomization += &format!("- {f}\n");
    }
    write_file(&path, &kustomization).map_err(|e| cannot(&path, e))
}

/// Whole or not at all: a temporary file beside it, then a rename.
fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    // On disk before it takes the name: a crash leaves the old file or the new, never half.
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Licence, Subscription, TraditionalAddOn};

    fn org() -> Organization {
        let user = |upn: &str, dept: Option<&str>, licences: Vec<Licence>| User {
            upn: upn.into(),
            department: dept.map(String::from),
            licenses: licences,
            ..Default::default()
        };
        let mut org = Organization::default();
        org.domain = "contoso.com".into();
        org.users = vec![
            user(
                "a@contoso.com",
                Some("Sales"),
                vec![Licence::new("SPB", &[])],
            ),
            user(
                "b@contoso.com",
                Some("R&D / Labs"),
                vec![Licence::new("SPB", &["SWAY".into()])],
            ),
            user("c@contoso.com", None, vec![Licence::new("SPB", &[])]),
        ];
        org.subscriptions = vec![
            Subscription {
                id: "s1".into(),
                product: "SPB".into(),
                seats: 4,
                add_ons: vec![TraditionalAddOn {
                    id: "a1".into(),
                    product: "MCOMEETADV".into(),
                    quantity: 1,
                    purchase_key: None,
                }],
                ..Default::default()
            },
            Subscription {
                id: "s2".into(),
                product: "SPB".into(),
                seats: 2,
                ..Default::default()
            },
        ];
        org
    }

    fn layout(split_by: SplitBy, max_users: usize) -> Layout {
        Layout {
            namespace: "contoso".into(),
            split_by,
            max_users,
        }
    }

    fn names(e: &Export<'_>, kind: &str) -> Vec<String> {
        e.namespaces
            .values()
            .flatten()
            .filter(|d| d.kind == kind)
            .map(|d| {
                format!(
                    "{}/{}",
                    d.metadata.namespace.as_deref().unwrap_or(""),
                    d.metadata.name
                )
            })
            .collect()
    }

    #[test]
    fn export_names_resources_readably_and_uniquely() {
        let org = org();
        let e = adopt(&org, &Catalog::builtin(), &layout(SplitBy::None, 5000));
        assert_eq!(
            names(&e, "Subscription"),
            [
                "contoso/microsoft-365-business-premium",
                "contoso/microsoft-365-business-premium-2"
            ]
        );
        assert_eq!(
            names(&e, "AddOn"),
            ["contoso/microsoft-365-audio-conferencing"]
        );
        assert_eq!(
            names(&e, "LicenseAssignment"),
            [
                "contoso/microsoft-365-business-premium",
                "contoso/microsoft-365-business-premium-without-sway"
            ]
        );
        assert_eq!(names(&e, "Namespace"), ["/contoso"]);
        let text = render(
            ExportFormat::Yaml,
            "",
            &e.namespaces["contoso"].iter().collect::<Vec<_>>(),
        );
        assert!(
            text.contains("subscriptionRef:\n    name: microsoft-365-business-premium\n"),
            "{text}"
        );
        assert!(
            text.contains("seatkeeper.dev/adopt-licences: 'true'")
                || text.contains("seatkeeper.dev/adopt-licences: \"true\""),
            "{text}"
        );
        // Deleting an adopted LicenseAssignment removes no licence.
        assert!(text.contains("deletionPolicy: Retain"), "{text}");
        assert!(!text.contains("deletionPolicy: Unassign"), "{text}");
    }

    #[test]
    fn export_splits_large_lists_so_an_object_stays_small() {
        let org = org();
        let e = adopt(&org, &Catalog::builtin(), &layout(SplitBy::None, 1));
        assert_eq!(
            names(&e, "LicenseAssignment"),
            [
                "contoso/microsoft-365-business-premium",
                "contoso/microsoft-365-business-premium-2",
                "contoso/microsoft-365-business-premium-without-sway"
            ]
        );
        assert_eq!(e.counts.users, 3);
    }

    #[test]
    fn export_split_by_department_gives_each_department_its_namespace() {
        let org = org();
        let e = adopt(
            &org,
            &Catalog::builtin(),
            &layout(SplitBy::Department, 5000),
        );
        let spaces: Vec<&String> = e.namespaces.keys().collect();
        assert_eq!(spaces, ["contoso", "contoso-r-d-labs", "contoso-sales"]);
        // Subscriptions stay in the base namespace, with the users without a department.
        assert_eq!(names(&e, "Subscription").len(), 2);
        assert!(
            names(&e, "Subscription")
                .iter()
                .all(|n| n.starts_with("contoso/"))
        );
        assert_eq!(
            names(&e, "LicenseAssignment"),
            [
                "contoso/microsoft-365-business-premium",
                "contoso-r-d-labs/microsoft-365-business-premium-without-sway",
                "contoso-sales/microsoft-365-business-premium"
            ]
        );
    }

    #[test]
    fn export_split_by_product_keeps_an_add_on_with_its_subscription() {
        let org = org();
        let e = adopt(&org, &Catalog::builtin(), &layout(SplitBy::Product, 5000));
        assert_eq!(
            names(&e, "AddOn"),
            ["contoso-spb/microsoft-365-audio-conferencing"]
        );
        assert!(
            names(&e, "LicenseAssignment")
                .iter()
                .all(|n| n.starts_with("contoso-spb/"))
        );
    }

    #[test]
    fn export_leaves_group_licences_and_unknown_products_out_and_says_so() {
        let mut org = org();
        org.users[0].licenses[0].by_group = true;
        org.users[2]
            .licenses
            .push(Licence::new("NOT_A_PRODUCT", &[]));
        let e = adopt(&org, &Catalog::builtin(), &layout(SplitBy::None, 5000));
        assert!(
            e.left_out
                .iter()
                .any(|l| l.contains("1 licence inherited from groups"))
        );
        assert!(e.left_out.iter().any(|l| l.contains("NOT_A_PRODUCT")));
        assert_eq!(e.counts.users, 2);
    }

    #[test]
    fn slugs_are_namespace_and_object_names() {
        assert_eq!(
            slug("Microsoft 365 E3 (no Teams)", 63),
            "microsoft-365-e3-no-teams"
        );
        assert_eq!(slug("--A__b--", 63), "a-b");
        assert_eq!(slug("abcdef", 3), "abc");
        assert_eq!(default_namespace("Contoso.onmicrosoft.com"), "contoso");
        assert!(manifests::dns1123_label(&slug(&"x-".repeat(60), 63)));
    }
}
