//! The embedded backend: a tenant simulator kept in one YAML file (CONTRACT §2).
//!
//! It enforces the licensing rules itself, through the same functions the planner predicts
//! with, and rewrites its file atomically (temporary file, fsync, rename) after every change;
//! a large tenant's changes go to a journal beside the file first (see [`super::journal`]).

use super::journal::{self, JOURNAL_FROM_BYTES};
use super::{
    Backend, BackendError, Cancellation, MAX_BATCH, PurchaseRequest, Result, SeatChange, Snapshot,
};
use crate::clock::Clock;
use crate::domain::billing::period_after;
use crate::domain::catalog::CatalogOverrides;
use crate::domain::groups;
use crate::domain::rules::{
    cancellation_window_open, check_add_on_available, check_admin_may_change, check_cancellation,
    check_free_seats, check_reduction, check_seat_change, check_trial_conversion,
    check_user_change,
};
use crate::domain::{
    Catalog, Channel, CreditCheck, Instant, Organization, PendingSeatChange, Refusal, Subscription,
    SubscriptionState, TraditionalAddOn,
};
use crate::domain::{Licence, UserChange};
use jiff::ToSpan;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A resource's last status, kept for `plan`/`apply` runs without a cluster: what it bought
/// and which licences it owns must survive between runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRecord {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub created_at: Instant,
    /// Being deleted: its deletion policy is not carried out in full yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// The object as last applied (metadata and spec).
    pub manifest: serde_json::Value,
    pub status: serde_json::Value,
}

/// The whole tenant file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogOverrides>,
    #[serde(default)]
    pub organizations: Vec<Organization>,
    /// seatkeeper's own records of the resources applied without a cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceRecord>,
    /// How many times the deletion of each resource (`Kind/namespace/name`) completed: a
    /// resource applied again under the same name is a new one (a new purchase key), as a
    /// cluster gives a re-created object a new uid.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub deletions: std::collections::BTreeMap<String, u32>,
    /// The latest change the simulator made (a purchase, a seat change, a licence change…):
    /// the tenant's clock never runs back past it (`--now`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<RecordedChange>,
    /// The emulator's app registrations: the certificates (PEM) each client id may sign its
    /// client assertions with, as registered under *Certificates & secrets*.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<Application>,
}

/// An app registration the emulator knows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    pub client_id: String,
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Federated identity credentials (workload identity): whose tokens the app accepts in
    /// place of a secret, as Entra's federatedIdentityCredential has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federated_credentials: Vec<FederatedCredential>,
}

/// One federated identity credential of an app registration: a token whose `iss` is
/// `issuer`, whose `sub` is `subject` and whose `aud` is one of `audiences`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
}

fn default_audiences() -> Vec<String> {
    vec!["api://AzureADTokenExchange".into()]
}

pub use super::journal::RecordedChange;

impl RecordedChange {
    /// One change of `org` from `before` (its subscriptions then) and the users it touched.
    fn of(org: &Organization, before: &[Subscription], users: &[&str], at: Instant) -> Self {
        let changed = org
            .subscriptions
            .iter()
            .find(|s| before.iter().find(|b| b.id == s.id) != Some(*s));
        let what = match (changed, users) {
            (Some(s), _) => format!("a change of subscription {} in {}", s.id, org.domain),
            (None, [user]) => format!("a licence change of {user} in {}", org.domain),
            (None, users) => format!(
                "licence changes of {} in {}",
                crate::domain::counted(users.len(), "user", "users"),
                org.domain
            ),
        };
        RecordedChange { at, what }
    }
}

impl TenantFile {
    /// One journal entry: the values it holds replace the file's.
    fn apply(&mut self, entry: journal::Entry) -> std::result::Result<(), String> {
        let org = self
            .organizations
            .iter_mut()
            .find(|o| o.domain.eq_ignore_ascii_case(&entry.organization))
            .ok_or_else(|| {
                format!(
                    "organization {} is not in the tenant file",
                    entry.organization
                )
            })?;
        if let Some(subscriptions) = entry.subscriptions {
            org.subscriptions = subscriptions;
        }
        if let Some(groups) = entry.groups {
            org.groups = groups;
        }
        for u in entry.users {
            if !org.set_licences(&u.upn, u.licenses) {
                return Err(format!("user {} is not in the tenant file", u.upn));
            }
        }
        if entry.change.is_some() {
            self.last_change = entry.change;
        }
        Ok(())
    }

    /// The uid of a resource applied without a cluster and without `metadata.uid`: a function
    /// of its name and how often a resource of that name was deleted, so two runs of one
    /// declaration give its purchase one key (earlier versions took the run's start time).
    pub fn uid_for(&self, kind: &str, namespace: &str, name: &str) -> String {
        let deleted = self
            .deletions
            .get(&format!("{kind}/{namespace}/{name}"))
            .copied()
            .unwrap_or(0);
        format!("cli-{}", deleted + 1)
    }
}

/// A tenant file that cannot be used, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TenantFileError {
    pub path: String,
    pub message: String,
}

impl TenantFile {
    pub fn parse(text: &str, path: &str) -> std::result::Result<TenantFile, TenantFileError> {
        let err = |message: String| TenantFileError {
            path: path.into(),
            message,
        };
        if text.trim().is_empty() {
            return Ok(TenantFile::default());
        }
        // Straight into the types: a large tenant is never held twice (as a tree of values
        // and as types). Only when that fails is it read again as values, for an error that
        // names the field.
        if let Ok(tenant) =
            serde_saphyr::from_str_with_options::<TenantFile>(text, crate::yaml::options())
        {
            tenant.validate().map_err(err)?;
            return Ok(tenant);
        }
        let value: serde_json::Value = {
            serde_saphyr::from_str_with_options(text, crate::yaml::options()).map_err(|e| {
                let told = crate::yaml::syntax_error(&e);
                // A manifest given as --state is the likely mistake.
                let hint = if told.contains("several YAML documents") {
                    " (is it a manifest? a tenant file is one document; manifests go with -f)"
                } else {
                    ""
                };
                err(format!("not valid YAML: {told}{hint}"))
            })?
        };
        let tenant: TenantFile = serde_path_to_error::deserialize(&value).map_err(|e| {
            err(format!(
                "{}: {}",
                e.path(),
                crate::yaml::plain(&e.inner().to_string())
            ))
        })?;
        tenant.validate().map_err(err)?;
        Ok(tenant)
    }

    pub fn load(path: &Path) -> std::result::Result<TenantFile, TenantFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| TenantFileError {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        let mut tenant = TenantFile::parse(&text, &path.display().to_string())?;
        if journal::path_of(path).exists() {
            journal::replay(path, |entry| tenant.apply(entry)).map_err(|message| {
                TenantFileError {
                    path: path.display().to_string(),
                    message,
                }
            })?;
            tenant.validate().map_err(|message| TenantFileError {
                path: journal::path_of(path).display().to_string(),
                message,
            })?;
        }
        Ok(tenant)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let catalog = Catalog::with_overrides(self.catalog.as_ref());
        let mut domains = std::collections::BTreeSet::new();
        let mut ids = std::collections::BTreeSet::new();
        for (i, o) in self.organizations.iter().enumerate() {
            if !domains.insert(o.domain.to_lowercase()) {
                return Err(format!(
                    "organizations[{i}].domain: {} appears twice",
                    o.domain
                ));
            }
            for (j, s) in o.subscriptions.iter().enumerate() {
                let at = format!("organizations[{i}].subscriptions[{j}]");
                if !ids.insert(s.id.clone()) {
                    return Err(format!("{at}.id: {} appears twice", s.id));
                }
                if catalog.product(&s.product).is_none() {
                    return Err(format!("{at}.product: {} is not in the catalog", s.product));
                }
                for (k, a) in s.add_ons.iter().enumerate() {
                    if !ids.insert(a.id.clone()) {
                        return Err(format!("{at}.addOns[{k}].id: {} appears twice", a.id));
                    }
                    if catalog.product(&a.product).is_none() {
                        return Err(format!(
                            "{at}.addOns[{k}].product: {} is not in the catalog",
                            a.product
                        ));
                    }
                }
            }
            let upns: std::collections::BTreeSet<String> =
                o.users.iter().map(|u| u.upn.to_lowercase()).collect();
            let mut group_ids = std::collections::BTreeSet::new();
            for (j, g) in o.groups.iter().enumerate() {
                let at = format!("organizations[{i}].groups[{j}]");
                if !group_ids.insert(g.key().to_lowercase()) {
                    return Err(format!(
                        "{at}.{}: {} appears twice",
                        if g.id.is_some() { "id" } else { "name" },
                        g.key()
                    ));
                }
                for (k, m) in g.members.iter().enumerate() {
                    if !upns.contains(&m.to_lowercase()) {
                        return Err(format!(
                            "{at}.members[{k}]: {m} is not a user of {}",
                            o.domain
                        ));
                    }
                }
                for (k, l) in g.licenses.iter().enumerate() {
                    if catalog.product(&l.product).is_none() {
                        return Err(format!(
                            "{at}.licenses[{k}].product: {} is not in the catalog",
                            l.product
                        ));
                    }
                }
            }
            let mut upns = std::collections::BTreeSet::new();
            for (j, u) in o.users.iter().enumerate() {
                if !upns.insert(u.upn.to_lowercase()) {
                    return Err(format!(
                        "organizations[{i}].users[{j}].upn: {} appears twice",
                        u.upn
                    ));
                }
                for (k, l) in u.licenses.iter().enumerate() {
                    if catalog.product(&l.product).is_none() {
                        return Err(format!(
                            "organizations[{i}].users[{j}].licenses[{k}].product: {} is not in the catalog",
                            l.product
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The service's group processing, done (as the service has done it by the time
    /// anyone reads the tenant): members hold their groups' licences or are in error.
    fn process_groups(&mut self, catalog: &Catalog, now: Instant) {
        for o in &mut self.organizations {
            groups::process(o, catalog, now);
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("the tenant file always serializes")
    }
}

struct State {
    tenant: TenantFile,
    catalog: Arc<Catalog>,
    path: Option<PathBuf>,
    writes: u64,
    /// The tenant file and its journal as last read or written; a different file on disk was
    /// edited outside seatkeeper (by hand, like a change in the vendor's portal, or by another
    /// replica) and is read again.
    stamp: (Option<Stamp>, Option<Stamp>),
    /// The journal being appended to, if any change is not in the file yet.
    journal: Option<journal::Writer>,
    /// Files up to this size are rewritten after every change instead of journaled.
    journal_from: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: std::time::SystemTime,
    len: u64,
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok()?,
        len: m.len(),
    })
}

/// The tenant file's stamp and its journal's.
fn stamps_of(path: &Path) -> (Option<Stamp>, Option<Stamp>) {
    (stamp_of(path), stamp_of(&journal::path_of(path)))
}

impl State {
    fn refresh(&mut self, now: Instant) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let stamp = stamps_of(path);
        if stamp.0.is_none() || stamp == self.stamp {
            return Ok(());
        }
        let mut tenant = TenantFile::load(path).map_err(|e| {
            BackendError::Unavailable(format!("the tenant file changed on disk: {e}"))
        })?;
        tracing::info!(path = %path.display(), "tenant file changed on disk; read again");
        self.catalog = Arc::new(Catalog::with_overrides(tenant.catalog.as_ref()));
        tenant.process_groups(&self.catalog, now);
        self.tenant = tenant;
        self.stamp = stamp;
        self.journal = None;
        Ok(())
    }

    /// Make one acknowledged change durable: a small file is rewritten; a large one gets a
    /// journal line, and is rewritten when the journal has grown to half its size.
    fn commit(&mut self, entry: journal::Entry) -> Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let file_len = self.stamp.0.map_or(0, |s| s.len);
        if file_len <= self.journal_from && self.journal.is_none() {
            return persist(self);
        }
        let journal_path = journal::path_of(&path);
        let io = |e: std::io::Error| {
            BackendError::Unavailable(format!("cannot write {}: {e}", journal_path.display()))
        };
        if self.journal.is_none() {
            self.journal = Some(journal::Writer::open(&journal_path).map_err(io)?);
        }
        let writer = self.journal.as_mut().expect("opened above");
        writer.append(&entry).map_err(io)?;
        let len = writer.len;
        self.stamp.1 = stamp_of(&journal_path);
        if len >= file_len.max(JOURNAL_FROM_BYTES) / 2 {
            return persist(self);
        }
        Ok(())
    }
}

/// The simulator. With a path it persists every change; without one it lives in memory.
pub struct Embedded {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl Embedded {
    pub fn new(mut tenant: TenantFile, path: Option<PathBuf>, clock: Arc<dyn Clock>) -> Embedded {
        let catalog = Arc::new(Catalog::with_overrides(tenant.catalog.as_ref()));
        tenant.process_groups(&catalog, clock.now());
        let stamp = path.as_deref().map(stamps_of).unwrap_or_default();
        Embedded {
            state: Mutex::new(State {
                tenant,
                catalog,
                path,
                writes: 0,
                stamp,
                journal: None,
                journal_from: JOURNAL_FROM_BYTES,
            }),
            clock,
        }
    }

    pub fn open(
        path: &Path,
        clock: Arc<dyn Clock>,
    ) -> std::result::Result<Embedded, TenantFileError> {
        Ok(Embedded::new(
            TenantFile::load(path)?,
            Some(path.to_path_buf()),
            clock,
        ))
    }

    /// What `snapshot` reads, taking the organization out of the simulator instead of copying
    /// it: for a reader that needs it once (`seatkeeper export`), which then holds one copy of
    /// a large tenant, not two.
    pub fn into_snapshot(self, organization: &str) -> Result<Snapshot> {
        let now = self.clock.now();
        let mut st = self.state.into_inner().expect("tenant lock");
        st.refresh(self.clock.now())?;
        let organizations = &mut st.tenant.organizations;
        let organization = organizations
            .iter()
            .position(|o| o.domain.eq_ignore_ascii_case(organization))
            .map(|i| {
                let mut o = organizations.swap_remove(i);
                advance(&mut o, now);
                o
            });
        Ok(Snapshot {
            catalog: st.catalog,
            organization,
        })
    }

    /// The simulator's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The whole tenant as it stands.
    pub fn tenant(&self) -> TenantFile {
        self.state.lock().expect("tenant lock").tenant.clone()
    }

    /// How many changes were made (and, with a path, written).
    pub fn writes(&self) -> u64 {
        self.state.lock().expect("tenant lock").writes
    }

    /// Journal the changes of tenant files larger than `bytes` (0: always).
    #[cfg(test)]
    fn journal_from(self, bytes: u64) -> Embedded {
        self.state.lock().expect("tenant lock").journal_from = bytes;
        self
    }

    /// Replace seatkeeper's resource records and persist them with every journaled change.
    pub fn save_records(&self, records: Vec<ResourceRecord>) -> Result<()> {
        let mut st = self.state.lock().expect("tenant lock");
        st.refresh(self.clock.now())?;
        if st.tenant.resources == records && st.journal.is_none() {
            return Ok(());
        }
        st.tenant.resources = records;
        persist(&mut st)
    }

    /// Resources whose deletion completed leave the records; each one's deletion is counted
    /// (see [`TenantFile::uid_for`]).
    pub fn forget_records(&self, gone: &[(String, String, String)]) -> Result<()> {
        if gone.is_empty() {
            return Ok(());
        }
        let mut st = self.state.lock().expect("tenant lock");
        st.refresh(self.clock.now())?;
        let tenant = &mut st.tenant;
        tenant
            .resources
            .retain(|r| !gone.contains(&(r.kind.clone(), r.namespace.clone(), r.name.clone())));
        for (kind, namespace, name) in gone {
            *tenant
                .deletions
                .entry(format!("{kind}/{namespace}/{name}"))
                .or_default() += 1;
        }
        persist(&mut st)
    }

    /// A change to a user made outside seatkeeper (another admin, in the portal): `f` on the
    /// user, saved. False: no such user.
    pub fn edit_user(
        &self,
        organization: &str,
        upn: &str,
        f: impl FnOnce(&mut crate::domain::User),
    ) -> Result<bool> {
        let mut st = self.state.lock().expect("tenant lock");
        st.refresh(self.clock.now())?;
        let Some(user) = st
            .tenant
            .organizations
            .iter_mut()
            .find(|o| o.domain.eq_ignore_ascii_case(organization))
            .and_then(|o| o.users.iter_mut().find(|u| u.upn.eq_ignore_ascii_case(upn)))
        else {
            return Ok(false);
        };
        f(user);
        persist(&mut st)?;
        Ok(true)
    }

    /// Fold the journal into the tenant file (at the end of a run, or when idle).
    pub fn checkpoint(&self) -> Result<()> {
        let mut st = self.state.lock().expect("tenant lock");
        if st.journal.is_none() {
            return Ok(());
        }
        persist(&mut st)
    }

    /// `f` on one organization's users and the catalog, borrowed under the lock rather than
    /// copied as a snapshot is: for the emulator's reads of a few users of a large tenant.
    /// Subscriptions are as last written, not advanced to now (use a snapshot for them).
    /// `None`: no such organization.
    pub fn with_users<T>(
        &self,
        organization: &str,
        f: impl FnOnce(&Organization, &Catalog) -> T,
    ) -> Result<Option<T>> {
        let mut st = self.state.lock().expect("tenant lock");
        st.refresh(self.clock.now())?;
        let catalog = st.catalog.clone();
        Ok(st
            .tenant
            .organizations
            .iter()
            .find(|o| o.domain.eq_ignore_ascii_case(organization))
            .map(|o| f(o, &catalog)))
    }

    /// Run `f` on one organization with time advanced to now; persist if it succeeded.
    fn change<T>(
        &self,
        organization: &str,
        f: impl FnOnce(&mut Organization, &Catalog, Instant) -> Result<T>,
    ) -> Result<T> {
        self.update(organization, &[], |org, catalog, now, _| {
            f(org, catalog, now).map(Done::Changed)
        })
    }

    /// Like [`Embedded::change`], all under one lock: `f` may find the change already made
    /// (a retried purchase: nothing is written) and may take new ids, unique in the tenant.
    /// `users` are those whose licences `f` may change.
    fn update<T>(
        &self,
        organization: &str,
        users: &[&str],
        f: impl FnOnce(&mut Organization, &Catalog, Instant, &Ids) -> Result<Done<T>>,
    ) -> Result<T> {
        let now = self.clock.now();
        let mut st = self.state.lock().expect("tenant lock");
        st.refresh(self.clock.now())?;
        let catalog = st.catalog.clone();
        let orgs = &mut st.tenant.organizations;
        let i = orgs
            .iter()
            .position(|o| o.domain.eq_ignore_ascii_case(organization))
            .ok_or_else(|| {
                BackendError::Refused(Refusal::NotFound {
                    what: format!("organization {organization}"),
                })
            })?;
        let (before, rest) = orgs.split_at_mut(i);
        let (org, after) = rest.split_first_mut().expect("found above");
        let ids = Ids(before.iter().chain(after.iter()).collect());
        let before = org.subscriptions.clone();
        let groups_before = org.groups.clone();
        advance(org, now);
        // The service has processed its groups before anything else (as a snapshot shows).
        let mut processed = groups::process(org, &catalog, now);
        let out = match f(org, &catalog, now, &ids)? {
            Done::Unchanged(out) => return Ok(out),
            Done::Changed(out) => out,
        };
        processed.extend(groups::process(org, &catalog, now));
        let mut touched: Vec<&str> = users.to_vec();
        touched.extend(
            processed
                .iter()
                .map(String::as_str)
                .filter(|p| !users.iter().any(|u| u.eq_ignore_ascii_case(p))),
        );
        touched.dedup();
        let users = &touched[..];
        let change = RecordedChange::of(org, &before, users, now);
        let entry = journal::Entry {
            change: Some(change.clone()),
            organization: org.domain.clone(),
            subscriptions: (org.subscriptions != before).then(|| org.subscriptions.clone()),
            groups: (org.groups != groups_before).then(|| org.groups.clone()),
            users: users
                .iter()
                .filter_map(|upn| org.user(upn))
                .map(|u| journal::UserLicences {
                    upn: u.upn.clone(),
                    licenses: u.licenses.clone(),
                })
                .collect(),
        };
        st.tenant.last_change = Some(change);
        st.writes += 1;
        st.commit(entry)?;
        Ok(out)
    }
}

/// What a call did to the tenant.
enum Done<T> {
    Changed(T),
    /// Already done before (a retried purchase): nothing to write.
    Unchanged(T),
}

/// The other organizations, for ids unique across the tenant.
struct Ids<'t>(Vec<&'t Organization>);

impl Ids<'_> {
    fn next(&self, org: &Organization, prefix: &str) -> String {
        let used: std::collections::BTreeSet<&str> = self
            .0
            .iter()
            .copied()
            .chain(std::iter::once(org))
            .flat_map(|o| o.subscriptions.iter())
            .flat_map(|s| {
                std::iter::once(s.id.as_str()).chain(s.add_ons.iter().map(|a| a.id.as_str()))
            })
            .collect();
        (1..)
            .map(|n| format!("{prefix}-{n:04}"))
            .find(|id| !used.contains(id.as_str()))
            .expect("an id is free")
    }
}

/// Atomic rewrite: temporary file beside the target, fsync, rename; then the journal, now in
/// the file, is removed.
fn persist(st: &mut State) -> Result<()> {
    let Some(path) = &st.path else { return Ok(()) };
    let io = |e: std::io::Error| {
        BackendError::Unavailable(format!("cannot write {}: {e}", path.display()))
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Named for this process: even a writer that ignored the lock could not write into
    // another's temporary file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("tenant"),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(st.tenant.to_yaml().as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    if st.journal.take().is_some() || journal::path_of(path).exists() {
        let journal = journal::path_of(path);
        std::fs::remove_file(&journal).map_err(|e| {
            BackendError::Unavailable(format!("cannot remove {}: {e}", journal.display()))
        })?;
    }
    st.stamp = stamps_of(path);
    Ok(())
}

/// What time alone changes: credit checks clear (R03), purchases activate (R27), terms end.
fn advance(org: &mut Organization, now: Instant) {
    for s in &mut org.subscriptions {
        if s.credit_check == CreditCheck::Pending
            && s.credit_check_clears_at.is_some_and(|t| t <= now)
        {
            s.credit_check = CreditCheck::Cleared;
            s.credit_check_clears_at = None;
        }
        if let Some(p) = &s.pending_seat_change
            && p.completes_at <= now
        {
            s.seats = p.seats;
            s.pending_seat_change = None;
        }
        if s.status == SubscriptionState::Pending && s.activates_at.is_none_or(|t| t <= now) {
            s.status = SubscriptionState::Active;
            s.activates_at = None;
        }
        if let Some(end) = s.term_ends_at
            && end <= now
            && s.status != SubscriptionState::Canceled
        {
            if s.recurring_billing {
                // Renewed, term after term; a term past the calendar's end never comes.
                let mut next = Some(end);
                while let Some(n) = next.filter(|n| *n <= now) {
                    next = period_after(n, s.billing_frequency);
                }
                s.term_ends_at = next;
            } else {
                s.status = SubscriptionState::Canceled;
            }
        }
    }
}

fn find_sub<'o>(org: &'o mut Organization, id: &str) -> Result<&'o mut Subscription> {
    org.subscriptions
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or_else(|| {
            BackendError::Refused(Refusal::NotFound {
                what: format!("subscription {id}"),
            })
        })
}

/// One user's atomic change, checked like the real service does.
fn apply_change(
    org: &mut Organization,
    catalog: &Catalog,
    change: &UserChange,
    now: Instant,
) -> std::result::Result<(), Refusal> {
    let user = org
        .user(&change.user)
        .ok_or_else(|| Refusal::UserNotFound {
            user: change.user.clone(),
        })?;
    let checked = check_user_change(org, catalog, user, &change.add, &change.remove, now)?;
    for p in &checked.new_products {
        // Make-before-break: the user's own removals do not count against the pool yet.
        check_free_seats(p, 1, org.pool(p, now).saturating_sub(org.consumed(p)))?;
    }
    org.set_licences(&change.user, checked.after);
    Ok(())
}

impl Backend for Embedded {
    async fn checkpoint(&self) -> Result<()> {
        Embedded::checkpoint(self)
    }

    async fn snapshot(&self, organization: &str) -> Result<Snapshot> {
        let now = self.clock.now();
        let mut st = self.state.lock().expect("tenant lock");
        st.refresh(self.clock.now())?;
        let organization = st
            .tenant
            .organizations
            .iter()
            .find(|o| o.domain.eq_ignore_ascii_case(organization))
            .cloned()
            .map(|mut o| {
                advance(&mut o, now);
                groups::process(&mut o, &st.catalog, now);
                o
            });
        Ok(Snapshot {
            catalog: st.catalog.clone(),
            organization,
        })
    }

    async fn buy_subscription(
        &self,
        organization: &str,
        req: &PurchaseRequest,
    ) -> Result<Subscription> {
        self.update(organization, &[], |org, catalog, now, ids| {
            let key = Some(req.idempotency_key.as_str());
            if let Some(existing) = org
                .subscriptions
                .iter()
                .find(|s| s.purchase_key.as_deref() == key)
            {
                return Ok(Done::Unchanged(existing.clone()));
            }
            let id = ids.next(org, "sub");
            let product = catalog
                .product(&req.product)
                .ok_or_else(|| Refusal::ProductUnknown {
                    product: req.product.clone(),
                })?;
            if product.kind == crate::domain::ProductKind::AddOn {
                check_add_on_available(catalog, org, &req.product, None, now)?;
            }
            let delayed = org.activation_delay_minutes > 0;
            let sub = Subscription {
                id,
                product: req.product.clone(),
                seats: req.seats,
                channel: Channel::Direct,
                status: if delayed {
                    SubscriptionState::Pending
                } else {
                    SubscriptionState::Active
                },
                activates_at: delayed
                    .then(|| now + (org.activation_delay_minutes as i64).minutes()),
                billing_frequency: req.billing_frequency,
                recurring_billing: req.recurring_billing,
                purchased_at: Some(now),
                term_ends_at: period_after(now, req.billing_frequency),
                cancellation_window_ends_at: Some(now + (7 * 24).hours()),
                purchase_key: Some(req.idempotency_key.clone()),
                ..Default::default()
            };
            org.subscriptions.push(sub.clone());
            Ok(Done::Changed(sub))
        })
    }

    async fn convert_trial(&self, organization: &str, subscription_id: &str) -> Result<()> {
        self.change(organization, |org, _, now| {
            let snapshot = org.clone();
            let sub = find_sub(org, subscription_id)?;
            check_trial_conversion(&snapshot, sub, now)?;
            sub.trial = false;
            Ok(())
        })
    }

    async fn set_seats(
        &self,
        organization: &str,
        subscription_id: &str,
        seats: u32,
        product_key: Option<&str>,
    ) -> Result<SeatChange> {
        self.change(organization, |org, _, now| {
            let snapshot = org.clone();
            let sub = find_sub(org, subscription_id)?;
            let consumed = snapshot.consumed(&sub.product);
            check_seat_change(&snapshot, sub, seats, consumed, product_key, now)?;
            if snapshot.seat_change_delay_minutes == 0 || seats == sub.seats {
                sub.seats = seats;
                sub.pending_seat_change = None;
                return Ok(SeatChange::Applied);
            }
            // Partner Center: 202 Accepted, finished later (see `advance`).
            sub.pending_seat_change = Some(PendingSeatChange {
                seats,
                completes_at: now + (snapshot.seat_change_delay_minutes as i64).minutes(),
            });
            Ok(SeatChange::Accepted)
        })
    }

    async fn set_recurring_billing(
        &self,
        organization: &str,
        subscription_id: &str,
        enabled: bool,
    ) -> Result<()> {
        self.change(organization, |org, _, now| {
            let sub = find_sub(org, subscription_id)?;
            check_admin_may_change(sub, now)?;
            sub.recurring_billing = enabled;
            Ok(())
        })
    }

    async fn cancel(&self, organization: &str, subscription_id: &str) -> Result<Cancellation> {
        self.change(organization, |org, _, now| {
            let snapshot = org.clone();
            let sub = find_sub(org, subscription_id)?;
            check_cancellation(
                sub,
                snapshot.pool(&sub.product, now),
                snapshot.consumed(&sub.product),
                now,
            )?;
            if cancellation_window_open(sub, now) {
                // R22: its traditional add-ons go with it.
                sub.status = SubscriptionState::Canceled;
                Ok(Cancellation::Canceled)
            } else {
                sub.recurring_billing = false;
                Ok(Cancellation::RecurringBillingTurnedOff)
            }
        })
    }

    async fn buy_add_on(
        &self,
        organization: &str,
        base_subscription_id: &str,
        r: &PurchaseRequest,
    ) -> Result<TraditionalAddOn> {
        let (product, quantity, key) = (r.product.as_str(), r.seats, r.idempotency_key.as_str());
        self.update(organization, &[], |org, catalog, now, ids| {
            if let Some(a) = org
                .subscriptions
                .iter()
                .flat_map(|s| s.add_ons.iter())
                .find(|a| a.purchase_key.as_deref() == Some(key))
            {
                return Ok(Done::Unchanged(a.clone()));
            }
            let id = ids.next(org, "addon");
            let snapshot = org.clone();
            let base = find_sub(org, base_subscription_id)?;
            check_admin_may_change(base, now)?;
            check_add_on_available(catalog, &snapshot, product, Some(base), now)?;
            let add_on = TraditionalAddOn {
                id,
                product: product.into(),
                quantity,
                purchase_key: Some(key.into()),
            };
            base.add_ons.push(add_on.clone());
            Ok(Done::Changed(add_on))
        })
    }

    async fn set_add_on_quantity(
        &self,
        organization: &str,
        base_subscription_id: &str,
        add_on_id: &str,
        quantity: u32,
    ) -> Result<()> {
        self.change(organization, |org, _, now| {
            let snapshot = org.clone();
            let base = find_sub(org, base_subscription_id)?;
            check_admin_may_change(base, now)?;
            let a = base
                .add_ons
                .iter_mut()
                .find(|a| a.id == add_on_id)
                .ok_or_else(|| {
                    BackendError::Refused(Refusal::NotFound {
                        what: format!("add-on {add_on_id}"),
                    })
                })?;
            if quantity == 0 {
                return Err(Refusal::RemovalRequiresSupport.into());
            }
            let pool = snapshot.pool(&a.product, now);
            check_reduction(pool, a.quantity, quantity, snapshot.consumed(&a.product))?;
            a.quantity = quantity;
            Ok(())
        })
    }

    async fn cancel_add_on(
        &self,
        _organization: &str,
        _base_subscription_id: &str,
        _add_on_id: &str,
    ) -> Result<()> {
        // R23: only support can remove a traditional add-on.
        Err(Refusal::RemovalRequiresSupport.into())
    }

    async fn assign_group_licences(
        &self,
        organization: &str,
        group: &str,
        add: &[Licence],
        remove: &[String],
    ) -> Result<()> {
        self.change(organization, |org, catalog, _now| {
            let at = org
                .groups
                .iter()
                .position(|g| g.key().eq_ignore_ascii_case(group))
                .ok_or_else(|| {
                    BackendError::Refused(Refusal::NotFound {
                        what: format!("group {group}"),
                    })
                })?;
            if let Some(l) = add.iter().find(|l| catalog.product(&l.product).is_none()) {
                return Err(Refusal::ProductUnknown {
                    product: l.product.clone(),
                }
                .into());
            }
            let g = &mut org.groups[at];
            g.licenses.retain(|l| {
                !remove.contains(&l.product) && !add.iter().any(|a| a.product == l.product)
            });
            g.licenses.extend(
                add.iter()
                    .map(|l| Licence::new(&l.product, &l.disabled_plans)),
            );
            Ok(())
        })
    }

    async fn assign_licences(
        &self,
        organization: &str,
        changes: &[UserChange],
    ) -> Result<Vec<std::result::Result<(), Refusal>>> {
        if changes.len() > MAX_BATCH {
            return Err(Refusal::BatchTooLarge {
                size: changes.len(),
            }
            .into());
        }
        let users: Vec<&str> = changes.iter().map(|c| c.user.as_str()).collect();
        self.update(organization, &users, |org, catalog, now, _| {
            Ok(Done::Changed(
                changes
                    .iter()
                    .map(|c| apply_change(org, catalog, c, now))
                    .collect(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::domain::BillingFrequency;

    fn two_orgs() -> Embedded {
        let yaml = "organizations:\n- {domain: contoso.com, paymentMethodOnFile: true}\n- {domain: fabrikam.com, paymentMethodOnFile: true}\n";
        let tenant = TenantFile::parse(yaml, "tenant.yaml").unwrap();
        let now = "2026-11-21T09:00:00Z".parse().unwrap();
        Embedded::new(tenant, None, Arc::new(FixedClock::new(now)))
    }

    /// Two organizations buying at the same moment never get the same subscription id.
    #[test]
    fn concurrent_purchases_in_two_organizations_get_distinct_ids() {
        let backend = Arc::new(two_orgs());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let backend = backend.clone();
                std::thread::spawn(move || {
                    let org = if t % 2 == 0 {
                        "contoso.com"
                    } else {
                        "fabrikam.com"
                    };
                    (0..25)
                        .map(|i| {
                            let request = PurchaseRequest {
                                product: "SPB".into(),
                                seats: 1,
                                billing_frequency: BillingFrequency::Monthly,
                                term: Default::default(),
                                offer: None,
                                recurring_billing: true,
                                idempotency_key: format!("key-{t}-{i}"),
                            };
                            futures::executor::block_on(backend.buy_subscription(org, &request))
                                .unwrap()
                                .id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let ids: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), 200, "ids were handed out twice");
        let subs: usize = backend
            .tenant()
            .organizations
            .iter()
            .map(|o| o.subscriptions.len())
            .sum();
        assert_eq!(subs, 200);
    }

    const JOURNALED: &str = "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n  - {upn: a@contoso.com, usageLocation: NL}\n  - {upn: b@contoso.com, usageLocation: NL}\n  - {upn: c@contoso.com, usageLocation: NL}\n  subscriptions:\n  - {id: sub-spb, product: SPB, seats: 2}\n";

    /// A tenant file in a temporary directory, its changes always journaled.
    fn journaled() -> (tempfile::TempDir, PathBuf, Embedded) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.yaml");
        std::fs::write(&path, JOURNALED).unwrap();
        let now = "2026-11-21T09:00:00Z".parse().unwrap();
        let backend = Embedded::open(&path, Arc::new(FixedClock::new(now)))
            .unwrap()
            .journal_from(0);
        (dir, path, backend)
    }

    fn give(backend: &Embedded, users: &[&str]) -> Vec<std::result::Result<(), Refusal>> {
        let changes: Vec<UserChange> = users
            .iter()
            .map(|u| UserChange {
                user: u.to_string(),
                add: vec![crate::domain::Licence::new("SPB", &[])],
                remove: vec![],
                plans_only: vec![],
            })
            .collect();
        futures::executor::block_on(backend.assign_licences("contoso.com", &changes)).unwrap()
    }

    fn organizations(t: &TenantFile) -> String {
        serde_saphyr::to_string(&t.organizations).unwrap()
    }

    /// The process dies (no checkpoint): what is read back from disk is what it acknowledged.
    fn reread_after_crash(path: &Path, backend: Embedded) -> TenantFile {
        let acknowledged = backend.tenant();
        drop(backend);
        let reread = TenantFile::load(path).unwrap();
        assert_eq!(organizations(&reread), organizations(&acknowledged));
        reread
    }

    /// Every acknowledged change is on disk (in the journal) before it is acknowledged: a
    /// process that dies without folding the journal loses nothing.
    #[test]
    fn journaled_changes_survive_a_crash() {
        let (_dir, path, backend) = journaled();
        give(&backend, &["a@contoso.com", "b@contoso.com"]);
        futures::executor::block_on(backend.set_seats("contoso.com", "sub-spb", 3, None)).unwrap();
        give(&backend, &["c@contoso.com"]);
        let reread = reread_after_crash(&path, backend);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            JOURNALED,
            "the changes were journaled, not rewritten"
        );
        assert_eq!(reread.organizations[0].consumed("SPB"), 3);
    }

    /// A line cut short by a crash was never acknowledged: it is ignored on reading and cut off
    /// before the next change is appended.
    #[test]
    fn a_torn_last_journal_line_is_ignored_and_cut_off() {
        let (_dir, path, backend) = journaled();
        give(&backend, &["a@contoso.com"]);
        let acknowledged = backend.tenant();
        drop(backend);
        let journal = journal::path_of(&path);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        f.write_all(br#"{"organization":"contoso.com","users":[{"upn":"b@con"#)
            .unwrap();
        drop(f);
        let reread = TenantFile::load(&path).unwrap();
        assert_eq!(organizations(&reread), organizations(&acknowledged));
        let now = "2026-11-21T09:00:00Z".parse().unwrap();
        let backend = Embedded::open(&path, Arc::new(FixedClock::new(now)))
            .unwrap()
            .journal_from(0);
        give(&backend, &["b@contoso.com"]);
        let reread = reread_after_crash(&path, backend);
        assert_eq!(reread.organizations[0].consumed("SPB"), 2);
    }

    /// A checkpoint folds the journal into the file and removes it; a crash between the two
    /// replays changes the file already holds, to the same state.
    #[test]
    fn folding_the_journal_is_safe_to_repeat() {
        let (_dir, path, backend) = journaled();
        give(&backend, &["a@contoso.com"]);
        futures::executor::block_on(backend.set_seats("contoso.com", "sub-spb", 1, None)).unwrap();
        let journal = journal::path_of(&path);
        let pending = std::fs::read(&journal).unwrap();
        backend.checkpoint().unwrap();
        assert!(!journal.exists(), "the journal was folded and removed");
        let file = TenantFile::parse(&std::fs::read_to_string(&path).unwrap(), "t").unwrap();
        assert_eq!(organizations(&file), organizations(&backend.tenant()));
        std::fs::write(&journal, pending).unwrap(); // crashed before the removal
        let reread = TenantFile::load(&path).unwrap();
        assert_eq!(organizations(&reread), organizations(&backend.tenant()));
    }

    /// A journal that does not fit its file (edited by hand meanwhile) is one clear error.
    #[test]
    fn a_journal_naming_an_unknown_user_is_refused_with_its_line() {
        let (_dir, path, backend) = journaled();
        give(&backend, &["a@contoso.com"]);
        drop(backend);
        std::fs::write(&path, JOURNALED.replace("a@contoso.com", "x@contoso.com")).unwrap();
        let err = TenantFile::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(
                "tenant.yaml.journal line 1: user a@contoso.com is not in the tenant file"
            ),
            "{err}"
        );
    }

    /// Small tenant files are still rewritten after every change: no journal appears.
    #[test]
    fn small_tenant_files_are_rewritten_after_every_change() {
        let (_dir, path, backend) = journaled();
        let backend = backend.journal_from(JOURNAL_FROM_BYTES);
        give(&backend, &["a@contoso.com"]);
        assert!(!journal::path_of(&path).exists());
        let file = TenantFile::parse(&std::fs::read_to_string(&path).unwrap(), "t").unwrap();
        assert_eq!(file.organizations[0].consumed("SPB"), 1);
    }
}
