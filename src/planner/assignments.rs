//! LicenseAssignments: who gets which licence, in a deterministic order, never removing what
//! the declared state does not ask to remove.

use super::conditions::{Block, Outcome};
use super::resources::{
    ACKNOWLEDGE_DOWNGRADE_ANNOTATION, ALLOW_BULK_REMOVAL_ANNOTATION, AssignmentDeletionPolicy,
    AssignmentIntent, AssignmentMode, LicenseAssignmentStatus, OwnedLicence, UserState, UserStatus,
};
use super::{Declared, Kind, Op, Planner, UserChange};
use crate::domain::BlockReason;
use crate::domain::rules::{check_user_change, data_plans_enabled, licences_after};
use crate::domain::{Licence, Refusal, User};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

type Assignment = Declared<AssignmentIntent, LicenseAssignmentStatus>;

/// organization → lowercase user → (product, (the oldest resource declaring it, its plans)).
type Claims = HashMap<String, HashMap<String, Vec<(String, (usize, Licence))>>>;

/// One user's change before seats are allocated.
struct Candidate {
    user: String,
    change: UserChange,
    /// Products this change takes a new seat of.
    new_products: Vec<String>,
    /// The user is listed in spec (not only dropped from it).
    listed: bool,
}

impl Planner<'_> {
    pub(super) fn plan_assignments(&mut self) {
        let desired = self.desired;
        let mut order: Vec<usize> = (0..desired.assignments.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&desired.assignments[a].meta, &desired.assignments[b].meta);
            (a.created_at, &a.namespace, &a.name).cmp(&(b.created_at, &b.namespace, &b.name))
        });
        // Claims: (organization, user, product) → the oldest resource declaring it, with its plans.
        let mut claims: Claims = HashMap::new();
        for &i in &order {
            let d = &desired.assignments[i];
            if d.meta.deleting || self.gate(&d.meta, &d.spec.organization).is_err() {
                continue;
            }
            for u in unique(&d.spec.users) {
                let of_user = claims
                    .entry(d.spec.organization.clone())
                    .or_default()
                    .entry(u.to_lowercase())
                    .or_default();
                for l in &d.spec.licenses {
                    if !of_user.iter().any(|(p, _)| *p == l.product) {
                        of_user.push((
                            l.product.clone(),
                            (i, Licence::new(&l.product, &l.disabled_plans)),
                        ));
                    }
                }
            }
        }
        let mut statuses: Vec<Option<LicenseAssignmentStatus>> =
            vec![None; desired.assignments.len()];
        for &i in &order {
            statuses[i] = Some(self.plan_assignment(i, &desired.assignments[i], &claims));
        }
        self.assignments = statuses
            .into_iter()
            .map(|s| s.expect("every assignment planned"))
            .collect();
    }

    fn plan_assignment(
        &mut self,
        index: usize,
        d: &Assignment,
        claims: &Claims,
    ) -> LicenseAssignmentStatus {
        let mut outcome = Outcome {
            paused: d.meta.flags.paused,
            ..Default::default()
        };
        let users = unique(&d.spec.users);
        let mut user_states: BTreeMap<String, (UserState, Option<Block>)> = BTreeMap::new();
        let result =
            self.assignment_steps(index, d, claims, &users, &mut user_states, &mut outcome);
        if let Err(block) = result {
            outcome.blocked = Some(block);
        }
        let mut status = LicenseAssignmentStatus {
            observed_generation: d.meta.generation,
            desired_users: users.len() as i64,
            removals: d.status.removals.clone(),
            owned: d.status.owned.clone(),
            ..Default::default()
        };
        let mut first_block: Option<(&str, Block)> = None;
        for u in &users {
            let (state, block) = user_states
                .get(*u)
                .cloned()
                .unwrap_or((UserState::Pending, outcome.blocked.clone()));
            match state {
                UserState::Assigned => status.assigned += 1,
                UserState::Pending => status.pending += 1,
                UserState::Blocked => status.blocked += 1,
            }
            // The resource's Blocked reason: the first blocked user's, else the first waiting one's.
            if let Some(b) = &block {
                let better = match &first_block {
                    None => true,
                    Some((fu, _)) => {
                        state == UserState::Blocked
                            && user_states.get(*fu).map(|s| s.0) != Some(UserState::Blocked)
                    }
                };
                if better {
                    first_block = Some((u, b.clone()));
                }
            }
            status.users.push(UserStatus {
                user: u.to_string(),
                state,
                reason: block.as_ref().map(|b| b.reason.to_string()),
                message: block.map(|b| b.message),
            });
        }
        if outcome.blocked.is_none()
            && let Some((user, b)) = first_block
        {
            let same_reason = status
                .users
                .iter()
                .filter(|x| x.reason.as_deref() == Some(b.reason.as_str()))
                .count();
            let others = match same_reason.saturating_sub(1) {
                0 => String::new(),
                1 => " (and 1 more user)".to_string(),
                n => format!(" (and {n} more users)"),
            };
            outcome.blocked = Some(Block::new(
                b.reason,
                format!("{user}: {}{others}", b.message),
            ));
        }
        status.conditions = outcome.conditions(&d.status.conditions, d.meta.generation, self.now);
        status.blocked_reason = outcome.blocked_reason();
        status
    }

    #[allow(clippy::too_many_arguments)]
    fn assignment_steps(
        &mut self,
        index: usize,
        d: &Assignment,
        claims: &Claims,
        users: &[&str],
        user_states: &mut BTreeMap<String, (UserState, Option<Block>)>,
        outcome: &mut Outcome,
    ) -> Result<(), Block> {
        let org = self.gate(&d.meta, &d.spec.organization)?;
        let catalog = self.observed.catalog.clone();
        for l in &d.spec.licenses {
            if catalog.product(&l.product).is_none() {
                return Err(Refusal::ProductUnknown {
                    product: l.product.clone(),
                }
                .into());
            }
        }
        let organization = d.spec.organization.as_str();
        let of_org = claims.get(organization);
        // `user` is lowercase.
        let claim = |user: &str, product: &str| {
            of_org
                .and_then(|o| o.get(user))
                .and_then(|c| c.iter().find(|(p, _)| p == product))
                .map(|(_, c)| c)
        };
        let claimed_elsewhere =
            |user: &str, product: &str| claim(user, product).is_some_and(|(o, _)| *o != index);
        let declared: Vec<Licence> = d
            .spec
            .licenses
            .iter()
            .map(|l| Licence::new(&l.product, &l.disabled_plans))
            .collect();
        let owned: BTreeSet<(String, String)> = d
            .status
            .owned
            .iter()
            .map(|o| (o.user.to_lowercase(), o.product.clone()))
            .collect();
        let replace = d.spec.mode == AssignmentMode::Replace;
        let deleting = d.meta.deleting;
        let unassign = deleting && d.spec.deletion_policy == AssignmentDeletionPolicy::Unassign;
        let mut candidates: Vec<Candidate> = vec![];

        if !deleting {
            for &u in users {
                let block = |reason: Refusal| (UserState::Blocked, Some(Block::from(reason)));
                let lower = u.to_lowercase();
                if let Some((l, (owner, _))) = declared.iter().find_map(|l| {
                    claim(&lower, &l.product)
                        .filter(|(owner, plans)| *owner != index && !plans.same_plans(l))
                        .map(|c| (l, c))
                }) {
                    let other = &self.desired.assignments[*owner].meta;
                    user_states.insert(
                        u.to_string(),
                        (
                            UserState::Blocked,
                            Some(Block::new(
 BlockReason::DuplicateAssignment,
                                format!(
                                    "LicenseAssignment {}/{} already assigns {} to this user with other disabled plans; the older claim wins: make the plans agree or drop one",
                                    other.namespace, other.name, l.product
                                ),
                            )),
                        ),
                    );
                    continue;
                }
                let Some(user) = org.user(u) else {
                    user_states.insert(
                        u.to_string(),
                        block(Refusal::UserNotFound { user: u.into() }),
                    );
                    continue;
                };
                let user = &*self.planned_user(organization, user);
                let add: Vec<Licence> = declared
                    .iter()
                    .filter(|l| user.licence(&l.product).is_none_or(|h| !h.same_plans(l)))
                    .cloned()
                    .collect();
                let remove: Vec<String> = user
                    .licenses
                    .iter()
                    .map(|l| &l.product)
                    .filter(|p| {
                        !declared.iter().any(|l| &l.product == *p) && !claimed_elsewhere(&lower, p)
                    })
                    .filter(|p| replace || owned.contains(&(lower.clone(), (*p).clone())))
                    .cloned()
                    .collect();
                if add.is_empty() && remove.is_empty() {
                    user_states.insert(u.to_string(), (UserState::Assigned, None));
                    continue;
                }
                let checked = match check_user_change(org, &catalog, user, &add, &remove, self.now)
                {
                    Ok(c) => c,
                    Err(r) => {
                        user_states.insert(u.to_string(), block(r));
                        continue;
                    }
                };
                let (after, new_products) = (checked.after, checked.new_products);
                if replace
                    && !remove.is_empty()
                    && !d.meta.flags.acknowledge_downgrade
                    && data_plans_enabled(&catalog, &after)
                        < data_plans_enabled(&catalog, &user.licenses)
                {
                    user_states.insert(
                        u.to_string(),
                        (
                            UserState::Blocked,
                            Some(Block::new(
 BlockReason::DowngradeNotAcknowledged,
                                format!(
                                    "moving {u} off {} loses data-bearing services (R28): back the data up, then annotate {ACKNOWLEDGE_DOWNGRADE_ANNOTATION}=\"true\"",
                                    remove.join(", ")
                                ),
                            )),
                        ),
                    );
                    continue;
                }
                candidates.push(Candidate {
                    user: u.to_string(),
                    change: UserChange {
                        user: user.upn.clone(),
                        add,
                        remove,
                    },
                    new_products,
                    listed: true,
                });
            }
        }
        // Licences this resource owns that the spec no longer asks for (or all, when unassigning).
        let listed: BTreeSet<String> = if deleting {
            BTreeSet::new()
        } else {
            users.iter().map(|u| u.to_lowercase()).collect()
        };
        let mut dropped: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (user, product) in &owned {
            let still_declared =
                listed.contains(user) && declared.iter().any(|l| &l.product == product);
            if still_declared || (deleting && !unassign) || claimed_elsewhere(user, product) {
                continue;
            }
            if listed.contains(user) && candidates.iter().any(|c| c.user.to_lowercase() == *user) {
                continue; // already removed by the listed user's own change
            }
            if org.user(user).is_some_and(|u| u.licence(product).is_some()) {
                dropped
                    .entry(user.clone())
                    .or_default()
                    .push(product.clone());
            }
        }
        for (user, remove) in dropped {
            let upn = org.user(&user).map_or(user.clone(), |u| u.upn.clone());
            candidates.push(Candidate {
                user: upn.clone(),
                change: UserChange {
                    user: upn,
                    add: vec![],
                    remove,
                },
                new_products: vec![],
                listed: false,
            });
        }

        // The removal limit: nothing is removed when too many users would lose a licence.
        let removing = candidates
            .iter()
            .filter(|c| !c.change.remove.is_empty())
            .count();
        let mut limit_block = None;
        if removing > self.options.max_removals && !d.meta.flags.allow_bulk_removal {
            let block = Block::new(
                BlockReason::RemovalLimitExceeded,
                format!(
                    "this change would remove licences from {removing} users, over the limit of {}: nothing was removed; if that is intended, annotate {ALLOW_BULK_REMOVAL_ANNOTATION}=\"true\"",
                    self.options.max_removals
                ),
            );
            candidates.retain_mut(|c| {
                if c.change.remove.is_empty() {
                    return true;
                }
                if replace || c.change.add.is_empty() {
                    if c.listed {
                        user_states
                            .insert(c.user.clone(), (UserState::Pending, Some(block.clone())));
                    }
                    return false;
                }
                c.change.remove.clear();
                true
            });
            limit_block = Some(block);
        }

        // Seats: oldest resource first; Replace moves nobody until everyone can move (R26).
        let mut accepted: Vec<UserChange> = vec![];
        if replace {
            let mut need: BTreeMap<&str, u32> = BTreeMap::new();
            for c in &candidates {
                for p in &c.new_products {
                    *need.entry(p.as_str()).or_default() += 1;
                }
            }
            let short = need
                .iter()
                .find(|(p, n)| self.pool(organization, p).available() < **n);
            if let Some((p, n)) = short {
                let available = self.pool(organization, p).available();
                let block = Block::from(Refusal::InsufficientSeats {
                    product: p.to_string(),
                    needed: *n,
                    available,
                });
                let block = Block::new(
                    block.reason,
                    format!(
                        "{n} users still have to move to {p} but only {available} licences are free: buy at least {} more seats; nobody moves until all can",
                        n - available
                    ),
                );
                for c in &candidates {
                    if c.listed {
                        user_states
                            .insert(c.user.clone(), (UserState::Pending, Some(block.clone())));
                    }
                }
                candidates.retain(|c| !c.listed);
            }
        }
        for c in candidates {
            let fits = c
                .new_products
                .iter()
                .all(|p| self.pool(organization, p).available() >= 1);
            if !fits {
                let p = c
                    .new_products
                    .iter()
                    .find(|p| self.pool(organization, p).available() == 0)
                    .expect("one does not fit");
                let block = Block::from(Refusal::InsufficientSeats {
                    product: p.clone(),
                    needed: 1,
                    available: 0,
                });
                user_states.insert(c.user.clone(), (UserState::Pending, Some(block)));
                continue;
            }
            if !outcome.paused {
                for p in &c.new_products {
                    self.pool_mut(organization, p).consumed += 1;
                }
                for p in &c.change.remove {
                    let pool = self.pool_mut(organization, p);
                    pool.consumed = pool.consumed.saturating_sub(1);
                }
            }
            if c.listed {
                user_states.insert(c.user.clone(), (UserState::Pending, None));
            }
            if let Some(user) = org.user(&c.change.user) {
                let after = licences_after(
                    &self.planned_user(organization, user),
                    &c.change.add,
                    &c.change.remove,
                );
                self.plan_licences(organization, user, after);
            }
            accepted.push(c.change);
        }
        if !accepted.is_empty() {
            let adds = accepted.iter().filter(|c| !c.add.is_empty()).count();
            let removes = accepted.iter().filter(|c| !c.remove.is_empty()).count();
            outcome.progressing = Some(format!(
                "assigning licences to {adds} users, removing licences from {removes} users"
            ));
            if !outcome.paused {
                self.push(
                    &d.meta,
                    Kind::LicenseAssignment,
                    organization,
                    Op::AssignLicenses { users: accepted },
                    false,
                );
            }
        } else if deleting && limit_block.is_none() {
            self.deleted
                .push(super::ObjectRef::of(Kind::LicenseAssignment, &d.meta));
        }
        match limit_block {
            Some(b) => Err(b),
            None => Ok(()),
        }
    }
}

impl Planner<'_> {
    /// What `user` holds once this plan's changes so far are made.
    pub(super) fn plan_licences(&mut self, organization: &str, user: &User, after: Vec<Licence>) {
        let key = (organization.to_lowercase(), user.upn.to_lowercase());
        self.planned_licences.insert(key, after);
    }
}

/// Users in spec order, each once (UPNs compare case-insensitively).
fn unique(users: &[String]) -> Vec<&str> {
    let mut seen: std::collections::HashSet<Cow<str>> = std::collections::HashSet::new();
    users
        .iter()
        .filter(|u| {
            seen.insert(
                if u.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
                    Cow::Owned(u.to_lowercase())
                } else {
                    Cow::Borrowed(u.as_str())
                },
            )
        })
        .map(String::as_str)
        .collect()
}

/// The ownership entries after a user's change succeeded.
pub fn record_owned(owned: &mut Vec<OwnedLicence>, change: &UserChange, newly_added: &[String]) {
    owned.retain(|o| {
        !(o.user.eq_ignore_ascii_case(&change.user) && change.remove.contains(&o.product))
    });
    for p in newly_added {
        let o = OwnedLicence {
            user: change.user.clone(),
            product: p.clone(),
        };
        if !owned.contains(&o) {
            owned.push(o);
        }
    }
    owned.sort();
}

impl<'a> Planner<'a> {
    /// The user as this plan leaves them so far.
    pub(super) fn planned_user(&self, organization: &str, user: &'a User) -> Cow<'a, User> {
        let key = (organization.to_lowercase(), user.upn.to_lowercase());
        match self.planned_licences.get(&key) {
            Some(licences) => Cow::Owned(User {
                licenses: licences.clone(),
                ..user.clone()
            }),
            None => Cow::Borrowed(user),
        }
    }
}
