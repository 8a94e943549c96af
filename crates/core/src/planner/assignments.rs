//! LicenseAssignments: who gets which licence, in a deterministic order, never removing what
//! the declared state does not ask to remove.

use super::conditions::{Block, Outcome};
use super::resources::{
    ALLOW_BULK_REMOVAL_ANNOTATION, AssignmentDeletionPolicy, AssignmentIntent, AssignmentMode,
    LicenseAssignmentStatus, OwnedLicence, UserState, UserStatus,
};
use super::{Declared, Kind, Op, Planner, UserChange};
use crate::domain::BlockReason;
use crate::domain::rules::{
    check_data_kept, check_downgrade, check_free_seats, check_user_change, licences_after,
};
use crate::domain::{Licence, Organization, Refusal, User, counted, lowercase};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

type Assignment = Declared<AssignmentIntent, LicenseAssignmentStatus>;

/// lowercase user → (product, the oldest resource declaring it), borrowed from the declared
/// state (built for every declared user of every pass).
type OrgClaims<'d> = HashMap<Cow<'d, str>, Vec<(&'d str, usize)>>;

/// organization → its claims.
type Claims<'d> = HashMap<&'d str, OrgClaims<'d>>;

/// One user's change before seats are allocated.
struct Candidate {
    user: String,
    change: UserChange,
    /// Products this change takes a new seat of.
    new_products: Vec<String>,
    /// The user is listed in spec (not only dropped from it).
    listed: bool,
}

impl<'a> Planner<'a> {
    /// Step 4: every LicenseAssignment's licences, oldest claim first; their statuses.
    pub(super) fn plan_assignments(&mut self) -> Vec<LicenseAssignmentStatus> {
        let desired = self.inp.desired;
        let mut order: Vec<usize> = (0..desired.assignments.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&desired.assignments[a].meta, &desired.assignments[b].meta);
            (a.created_at, &a.namespace, &a.name).cmp(&(b.created_at, &b.namespace, &b.name))
        });
        // Each resource's users, selected once per pass (a selector reads the whole directory).
        let declared: Vec<Declaring> = desired
            .assignments
            .iter()
            .map(|d| self.declared_users(d))
            .collect();
        // Claims: (organization, user, product) → the oldest resource declaring it, with its plans.
        let mut claims: Claims = HashMap::new();
        for &i in &order {
            let d = &desired.assignments[i];
            if d.meta.deleting || self.inp.gate(&d.meta, &d.spec.organization).is_err() {
                continue;
            }
            let of_org = claims.entry(d.spec.organization.as_str()).or_default();
            for &u in &declared[i].0 {
                let of_user = of_org.entry(lowercase(u)).or_default();
                for l in &d.spec.licenses {
                    if !of_user.iter().any(|(p, _)| *p == l.product) {
                        of_user.push((&l.product, i));
                    }
                }
            }
        }
        self.decided.held = self.held(&claims);
        let mut statuses: Vec<Option<LicenseAssignmentStatus>> =
            vec![None; desired.assignments.len()];
        for &i in &order {
            let (users, matched, stop) = &declared[i];
            statuses[i] = Some(self.plan_assignment(
                i,
                &desired.assignments[i],
                users,
                *matched,
                stop.clone(),
                &claims,
            ));
        }
        statuses
            .into_iter()
            .map(|s| s.expect("every assignment planned"))
            .collect()
    }

    /// Showback: the licences users hold now, each counted once against the resource whose
    /// claim it is (a group's members against the resource naming the group, unless a
    /// listed or selected user's claim came first).
    fn held(&self, claims: &Claims) -> Vec<super::Held> {
        let desired = self.inp.desired;
        let mut counts: BTreeMap<(usize, &str), u32> = BTreeMap::new();
        for (org_name, of_org) in claims {
            let Some(org) = self.inp.observed.organizations.get(*org_name) else {
                continue;
            };
            for (user, products) in of_org {
                let Some(u) = org.user(user) else { continue };
                for (product, i) in products {
                    if u.licence(product).is_some() {
                        *counts.entry((*i, product)).or_default() += 1;
                    }
                }
            }
        }
        let mut counted_members: HashSet<(String, &str, String)> = HashSet::new();
        for (i, d) in desired.assignments.iter().enumerate() {
            if d.spec.groups.is_empty() || d.meta.deleting {
                continue;
            }
            let Some(org) = self.inp.observed.organizations.get(&d.spec.organization) else {
                continue;
            };
            let directly = claims.get(d.spec.organization.as_str());
            for name in &d.spec.groups {
                let Ok(g) = org.group(name) else { continue };
                for m in &g.members {
                    let key = lowercase(m);
                    let Some(u) = org.user(m) else { continue };
                    for l in &d.spec.licenses {
                        let claimed = directly
                            .and_then(|o| o.get(&key))
                            .is_some_and(|ps| ps.iter().any(|(p, _)| *p == l.product));
                        let holds = u.licence(&l.product).is_some_and(|h| h.by_group);
                        if claimed || !holds {
                            continue;
                        }
                        let first = counted_members.insert((
                            d.spec.organization.clone(),
                            l.product.as_str(),
                            key.to_string(),
                        ));
                        if first {
                            *counts.entry((i, &l.product)).or_default() += 1;
                        }
                    }
                }
            }
        }
        counts
            .into_iter()
            .map(|((assignment, product), users)| super::Held {
                assignment,
                product: product.to_string(),
                users,
            })
            .collect()
    }

    fn plan_assignment(
        &mut self,
        index: usize,
        d: &'a Assignment,
        users: &[&'a str],
        matched: Option<i64>,
        stop: Option<Block>,
        claims: &Claims,
    ) -> LicenseAssignmentStatus {
        let mut outcome = Outcome {
            paused: d.meta.flags.paused,
            ..Default::default()
        };
        let mut seen = Seen::default();
        if let Some(block) = stop {
            outcome.blocked = Some(block);
        } else if let Err(block) =
            self.assignment_steps(index, d, claims, users, &mut seen, &mut outcome)
        {
            outcome.blocked = Some(block);
        }
        let Seen {
            mut states,
            groups,
            group_waiting,
        } = seen;
        self.note_refusals(d, users, &mut states, &mut outcome);
        let mut status = LicenseAssignmentStatus {
            observed_generation: d.meta.generation,
            desired_users: users.len() as i64,
            matched,
            removals: d.status.removals.clone(),
            owned: d.status.owned.clone(),
            owned_groups: d.status.owned_groups.clone(),
            groups,
            ..Default::default()
        };
        status.users.reserve_exact(users.len());
        for u in users {
            let (state, block) = states
                .get(*u)
                .cloned()
                .unwrap_or((UserState::Pending, outcome.blocked.clone()));
            match state {
                UserState::Assigned => status.assigned += 1,
                UserState::Pending => status.pending += 1,
                UserState::Blocked => status.blocked += 1,
            }
            status.users.push(UserStatus {
                user: u.to_string(),
                state,
                reason: block.as_ref().map(|b| b.reason.to_string()),
                message: block.map(|b| b.message),
            });
        }
        if outcome.blocked.is_none() {
            outcome.blocked = summary_block(users, &states).or(group_waiting);
        }
        if d.meta.flags.adopt_licences && !d.meta.deleting && !d.meta.flags.paused {
            let assigned: Vec<&str> = users
                .iter()
                .copied()
                .filter(|u| matches!(states.get(*u), Some((UserState::Assigned, _))))
                .collect();
            self.adopt_held(d, &assigned, &mut status.owned);
        }
        status.conditions =
            outcome.conditions(&d.status.conditions, d.meta.generation, self.inp.now);
        status.blocked_reason = outcome.blocked_reason();
        status
    }

    /// `seatkeeper.dev/adopt-licences`: each declared licence a listed user holds directly,
    /// with the declared plans, is owned from now on (of users it holds as Assigned: never a
    /// licence another resource claims). Never one inherited from a group.
    fn adopt_held(&self, d: &Assignment, users: &[&str], owned: &mut Vec<OwnedLicence>) {
        let Ok(org) = self.inp.gate(&d.meta, &d.spec.organization) else {
            return;
        };
        let before = owned.len();
        for upn in users {
            let Some(user) = org.user(upn) else { continue };
            for l in &d.spec.licenses {
                let declared = Licence::new(&l.product, &l.disabled_plans);
                let held = user.licence(&l.product);
                if held.is_some_and(|h| !h.by_group && h.same_plans(&declared))
                    && !owned
                        .iter()
                        .any(|o| o.user.eq_ignore_ascii_case(upn) && o.product == l.product)
                {
                    owned.push(OwnedLicence {
                        user: upn.to_string(),
                        product: l.product.clone(),
                    });
                }
            }
        }
        if owned.len() != before {
            owned.sort();
        }
    }

    /// Candidates (listed users, then licences dropped from the spec) → the removal limit →
    /// seats → the moves to make.
    fn assignment_steps(
        &mut self,
        index: usize,
        d: &Assignment,
        claims: &Claims,
        users: &[&str],
        seen: &mut Seen,
        outcome: &mut Outcome,
    ) -> Result<(), Block> {
        let Seen {
            states,
            groups: group_statuses,
            group_waiting,
        } = seen;
        let deleting = d.meta.deleting;
        if deleting && super::deletion::of_assignment(d).is_some() {
            // Nothing it owns to remove, it keeps them, or it is abandoned: no gate, no catalog.
            self.decided
                .deleted
                .push(super::ObjectRef::of(Kind::LicenseAssignment, &d.meta));
            return Ok(());
        }
        let as_deletion = |b: Block| {
            if deleting {
                super::deletion::blocked(b)
            } else {
                b
            }
        };
        let scope = self.scope(index, d, claims).map_err(as_deletion)?;
        let mut groups = self.plan_groups(d, scope.org, outcome.paused);
        let mut candidates = vec![];
        if !scope.deleting {
            for &u in users {
                match self.candidate(&scope, d, u, &groups.losing_users) {
                    Ok(Some(c)) => candidates.push(c),
                    Ok(None) => {
                        states.insert(u.to_string(), (UserState::Assigned, None));
                    }
                    Err(b) => {
                        states.insert(u.to_string(), (UserState::Blocked, Some(b)));
                    }
                }
            }
        }
        for c in &candidates {
            for l in &c.change.add {
                groups.kept_directly(&c.user, &l.product);
            }
        }
        let (dropped, kept) = self.dropped(&scope, d, users, &candidates);
        candidates.extend(dropped);
        // Removals that would delete a user's data wait for an acknowledgement (R28): a
        // listed user shows it, and the resource (a deletion included) is Blocked until then.
        let more = kept.len().saturating_sub(1);
        let kept = kept
            .into_iter()
            .fold(None, |first: Option<Block>, (user, block)| {
                if let Some(u) = users.iter().find(|u| u.eq_ignore_ascii_case(&user)) {
                    states.insert(u.to_string(), (UserState::Blocked, Some(block.clone())));
                }
                first.or(Some(block))
            })
            .map(|mut b| {
                if more > 0 {
                    b.message += &format!(" (and {} more)", counted(more, "user", "users"));
                }
                b
            });
        let limit = self.removal_limit(&scope, d, &mut candidates, states, groups.losing);
        if limit.is_some() {
            Self::hold_group_removals(&mut groups);
        }
        if scope.replace {
            self.all_or_nothing(&scope, &mut candidates, states, outcome.paused);
        }
        let accepted = self.seats(&scope, candidates, states, outcome.paused);
        *group_statuses = std::mem::take(&mut groups.statuses);
        let group_changes = std::mem::take(&mut groups.changes);
        if !group_changes.is_empty() {
            outcome.progressing = Some(format!(
                "changing the licences of {}",
                counted(group_changes.len(), "group", "groups")
            ));
            if !outcome.paused {
                self.push_group_changes(d, group_changes);
            }
        } else if !groups.processing.is_empty() {
            outcome.progressing = Some(format!(
                "the licensing service is still processing group {}",
                groups.processing.join(", ")
            ));
        } else if outcome.blocked.is_none()
            && let Some(w) = groups.waiting.take()
        {
            *group_waiting = Some(w);
        }
        if !accepted.is_empty() {
            let adds = accepted.iter().filter(|c| !c.add.is_empty()).count();
            let removes = accepted.iter().filter(|c| !c.remove.is_empty()).count();
            let users = |n| counted(n, "user", "users");
            outcome.progressing = Some(format!(
                "assigning licences to {}, removing licences from {}",
                users(adds),
                users(removes)
            ));
            if !outcome.paused {
                let op = Op::AssignLicenses { users: accepted };
                self.push(
                    &d.meta,
                    Kind::LicenseAssignment,
                    scope.organization,
                    op,
                    false,
                );
            }
        } else if scope.deleting
            && limit.is_none()
            && kept.is_none()
            && groups.block.is_none()
            && outcome.progressing.is_none()
        {
            self.decided
                .deleted
                .push(super::ObjectRef::of(Kind::LicenseAssignment, &d.meta));
        }
        match limit.or(kept).or(groups.block) {
            Some(block) => Err(as_deletion(block)),
            None => Ok(()),
        }
    }

    /// Users (and the resource) the service refused earlier in this run stay Blocked.
    fn note_refusals(
        &self,
        d: &Assignment,
        users: &[&str],
        states: &mut UserStates,
        outcome: &mut Outcome,
    ) {
        let me = super::ObjectRef::of(Kind::LicenseAssignment, &d.meta);
        let Some(block) = self.inp.refusals.resources.get(&me) else {
            return;
        };
        for ((r, user), b) in &self.inp.refusals.users {
            if *r != me {
                continue;
            }
            if let Some(u) = users.iter().find(|u| u.eq_ignore_ascii_case(user)) {
                states.insert(u.to_string(), (UserState::Blocked, Some(b.clone())));
            }
        }
        outcome.refused(block);
    }

    /// What this resource plans with; Blocked when its namespace may not act for the
    /// organization or a product is unknown.
    fn scope<'s>(
        &self,
        index: usize,
        d: &'s Assignment,
        claims: &'s Claims<'s>,
    ) -> Result<Scope<'a, 's>, Block> {
        let org = self.inp.gate(&d.meta, &d.spec.organization)?;
        let catalog = self.inp.observed.catalog.clone();
        // A deletion removes what the status owns, whatever products the spec names now.
        if !d.meta.deleting
            && let Some(l) = d
                .spec
                .licenses
                .iter()
                .find(|l| catalog.product(&l.product).is_none())
        {
            return Err(Refusal::ProductUnknown {
                product: l.product.clone(),
            }
            .into());
        }
        let deleting = d.meta.deleting;
        Ok(Scope {
            index,
            org,
            catalog,
            organization: &d.spec.organization,
            claims: claims.get(d.spec.organization.as_str()),
            declared: d
                .spec
                .licenses
                .iter()
                .map(|l| Licence::new(&l.product, &l.disabled_plans))
                .collect(),
            owned: d
                .status
                .owned
                .iter()
                .map(|o| (o.user.to_lowercase(), o.product.clone()))
                .collect(),
            replace: d.spec.mode == AssignmentMode::Replace,
            deleting,
            unassign: deleting && d.spec.deletion_policy == AssignmentDeletionPolicy::Unassign,
        })
    }

    /// A listed user's change: None when the user already holds what is declared; Err when a
    /// rule stops it (another resource's claim, the directory, R13–R17, R28).
    fn candidate(
        &self,
        scope: &Scope<'a, '_>,
        d: &Assignment,
        u: &str,
        losing_by_group: &BTreeSet<(String, String)>,
    ) -> Result<Option<Candidate>, Block> {
        let lower = lowercase(u);
        if let Some((l, owner)) = scope.declared.iter().find_map(|l| {
            scope
                .claim(&lower, &l.product)
                .filter(|&owner| owner != scope.index && !self.declared_plans(owner, l))
                .map(|owner| (l, owner))
        }) {
            let other = &self.inp.desired.assignments[owner].meta;
            return Err(Block::new(
                BlockReason::DuplicateAssignment,
                format!(
                    "LicenseAssignment {}/{} already assigns {} to this user with other disabled plans; the older claim wins: make the plans agree or drop one",
                    other.namespace, other.name, l.product
                ),
            ));
        }
        let user = scope
            .org
            .user(u)
            .ok_or_else(|| Refusal::UserNotFound { user: u.into() })?;
        let user = &*self.planned_user(user);
        // A licence held only through a group this resource takes it from is assigned
        // directly first (make-before-break).
        let losing = |p: &str| losing_by_group.contains(&(lower.to_string(), p.to_string()));
        let add: Vec<Licence> = scope
            .declared
            .iter()
            .filter(|l| {
                user.licence(&l.product)
                    .is_none_or(|h| !h.same_plans(l) || (h.by_group && losing(&l.product)))
            })
            .cloned()
            .collect();
        let plans_only = add
            .iter()
            .filter(|l| user.licence(&l.product).is_some())
            .map(|l| l.product.clone())
            .collect();
        let remove: Vec<String> = user
            .licenses
            .iter()
            .map(|l| &l.product)
            .filter(|p| !scope.declared.iter().any(|l| &l.product == *p))
            .filter(|p| !scope.claimed_elsewhere(&lower, p))
            .filter(|p| scope.replace || scope.owned.contains(&(lower.to_string(), (*p).clone())))
            .cloned()
            .collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(None);
        }
        let checked =
            check_user_change(scope.org, &scope.catalog, user, &add, &remove, self.inp.now)?;
        let acknowledged = d.meta.flags.acknowledge_downgrade;
        check_data_kept(
            &scope.catalog,
            user,
            &checked.after,
            &remove,
            acknowledged,
            self.inp.now,
        )?;
        if scope.replace {
            check_downgrade(&scope.catalog, user, &checked.after, &remove, acknowledged)?;
        }
        Ok(Some(Candidate {
            user: u.to_string(),
            change: UserChange {
                user: user.upn.clone(),
                add,
                remove,
                plans_only,
            },
            new_products: checked.new_products,
            listed: true,
        }))
    }

    /// Licences this resource owns that the spec no longer asks for (all of them when
    /// deleting with Unassign), as removals; and the users whose removal would delete their
    /// data without an acknowledgement (R28), kept back with the reason.
    fn dropped(
        &self,
        scope: &Scope<'a, '_>,
        d: &Assignment,
        users: &[&str],
        listed: &[Candidate],
    ) -> (Vec<Candidate>, Vec<(String, Block)>) {
        let spec_users: BTreeSet<String> = if scope.deleting {
            BTreeSet::new()
        } else {
            users.iter().map(|u| u.to_lowercase()).collect()
        };
        let mut dropped: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (user, product) in &scope.owned {
            let in_spec = spec_users.contains(user);
            let still_declared = in_spec && scope.declared.iter().any(|l| &l.product == product);
            if still_declared
                || (scope.deleting && !scope.unassign)
                || scope.claimed_elsewhere(user, product)
                // already removed by the listed user's own change
                || (in_spec && listed.iter().any(|c| c.user.to_lowercase() == *user))
            {
                continue;
            }
            if scope
                .org
                .user(user)
                .is_some_and(|u| u.licence(product).is_some_and(|l| !l.by_group))
            // a group's: never removed directly
            {
                dropped
                    .entry(user.clone())
                    .or_default()
                    .push(product.clone());
            }
        }
        let acknowledged = d.meta.flags.acknowledge_downgrade;
        let mut kept = vec![];
        let candidates = dropped
            .into_iter()
            .filter_map(|(user, remove)| {
                let found = scope.org.user(&user);
                if let Some(u) = found {
                    let u = &*self.planned_user(u);
                    let after = licences_after(u, &[], &remove);
                    let check = check_data_kept(
                        &scope.catalog,
                        u,
                        &after,
                        &remove,
                        acknowledged,
                        self.inp.now,
                    );
                    if let Err(refusal) = check {
                        kept.push((u.upn.clone(), Block::from(refusal)));
                        return None;
                    }
                }
                let upn = found.map_or(user, |u| u.upn.clone());
                Some(Candidate {
                    user: upn.clone(),
                    change: UserChange {
                        user: upn,
                        add: vec![],
                        remove,
                        plans_only: vec![],
                    },
                    new_products: vec![],
                    listed: false,
                })
            })
            .collect();
        (candidates, kept)
    }

    /// The removal limit: nothing is removed when too many users would lose a licence.
    fn removal_limit(
        &self,
        scope: &Scope<'a, '_>,
        d: &Assignment,
        candidates: &mut Vec<Candidate>,
        states: &mut UserStates,
        group_members_losing: usize,
    ) -> Option<Block> {
        let removing = candidates
            .iter()
            .filter(|c| !c.change.remove.is_empty())
            .count()
            + group_members_losing;
        let max = self.inp.options.max_removals_for(scope.organization);
        if removing <= max || d.meta.flags.allow_bulk_removal {
            return None;
        }
        let block = Block::new(
            BlockReason::RemovalLimitExceeded,
            format!(
                "this change would remove licences from {}, over the limit of {max}: nothing was removed; if that is intended, annotate {ALLOW_BULK_REMOVAL_ANNOTATION}=\"true\"",
                counted(removing, "user", "users")
            ),
        );
        candidates.retain_mut(|c| {
            if c.change.remove.is_empty() {
                return true;
            }
            if scope.replace || c.change.add.is_empty() {
                if c.listed {
                    states.insert(c.user.clone(), (UserState::Pending, Some(block.clone())));
                }
                return false;
            }
            c.change.remove.clear();
            true
        });
        Some(block)
    }

    /// R26: in Replace mode nobody moves until every user still to move has a free licence.
    fn all_or_nothing(
        &mut self,
        scope: &Scope<'a, '_>,
        candidates: &mut Vec<Candidate>,
        states: &mut UserStates,
        paused: bool,
    ) {
        let mut need: BTreeMap<&str, u32> = BTreeMap::new();
        for p in candidates.iter().flat_map(|c| &c.new_products) {
            *need.entry(p.as_str()).or_default() += 1;
        }
        let short = need.iter().find_map(|(p, n)| {
            let available = self.pool(scope.organization, p).available();
            check_free_seats(p, *n, available)
                .err()
                .map(|_| (*p, *n, available))
        });
        let Some((p, n, available)) = short else {
            return;
        };
        let block = Block::new(
            BlockReason::InsufficientSeats,
            format!(
                "{} to move to {p} but only {} free: buy at least {} more; nobody moves until all can",
                counted(n, "user still has", "users still have"),
                counted(available, "licence is", "licences are"),
                counted(n - available, "seat", "seats")
            ),
        );
        let block = self.with_autoscale_cap(scope.organization, p, block);
        for c in candidates.iter().filter(|c| c.listed) {
            states.insert(c.user.clone(), (UserState::Pending, Some(block.clone())));
            if !paused {
                self.demand.want(scope.organization, &c.new_products);
            }
        }
        candidates.retain(|c| !c.listed);
    }

    /// Seats: candidates in order (oldest resource first) take free licences (R16); those
    /// that find none wait.
    fn seats(
        &mut self,
        scope: &Scope<'a, '_>,
        candidates: Vec<Candidate>,
        states: &mut UserStates,
        paused: bool,
    ) -> Vec<UserChange> {
        let organization = scope.organization;
        let mut accepted = vec![];
        for c in candidates {
            if !paused {
                // Wanted whether or not a seat is free now: what autoscaling provides for.
                self.demand.want(organization, &c.new_products);
            }
            let short = c.new_products.iter().find_map(|p| {
                check_free_seats(p, 1, self.pool(organization, p).available())
                    .err()
                    .map(|r| (p, r))
            });
            if let Some((product, refusal)) = short {
                let block = self.with_autoscale_cap(organization, product, refusal.into());
                states.insert(c.user.clone(), (UserState::Pending, Some(block)));
                continue;
            }
            if !paused {
                for p in &c.new_products {
                    self.pool_mut(organization, p).consumed += 1;
                }
                for p in &c.change.remove {
                    let pool = self.pool_mut(organization, p);
                    pool.consumed = pool.consumed.saturating_sub(1);
                }
                self.demand.leave(organization, &c.change.remove);
            }
            if c.listed {
                states.insert(c.user, (UserState::Pending, None));
            }
            if let Some(user) = scope.org.user(&c.change.user) {
                let held = self.planned_user(user);
                let after = licences_after(&held, &c.change.add, &c.change.remove);
                self.plan_licences(user, after);
            }
            accepted.push(c.change);
        }
        accepted
    }
}

/// Each listed user's state and what stops them.
type UserStates = BTreeMap<String, (UserState, Option<Block>)>;

/// What planning one LicenseAssignment found: its users' states, its groups' statuses, and
/// why a group's licences are not all there yet.
#[derive(Default)]
struct Seen {
    states: UserStates,
    groups: Vec<super::resources::GroupStatus>,
    group_waiting: Option<Block>,
}

/// What one LicenseAssignment plans with.
struct Scope<'a, 's> {
    index: usize,
    org: &'a Organization,
    catalog: std::sync::Arc<crate::domain::Catalog>,
    organization: &'s str,
    /// The organization's claims: lowercase user → (product, (oldest resource, its plans)).
    claims: Option<&'s OrgClaims<'s>>,
    declared: Vec<Licence>,
    /// (lowercase user, product) this resource assigned.
    owned: BTreeSet<(String, String)>,
    replace: bool,
    deleting: bool,
    unassign: bool,
}

impl Scope<'_, '_> {
    /// The oldest resource declaring `product` for `user` (lowercase).
    fn claim(&self, user: &str, product: &str) -> Option<usize> {
        self.claims
            .and_then(|o| o.get(user))
            .and_then(|c| c.iter().find(|(p, _)| *p == product))
            .map(|&(_, owner)| owner)
    }

    fn claimed_elsewhere(&self, user: &str, product: &str) -> bool {
        self.claim(user, product).is_some_and(|o| o != self.index)
    }
}

/// The resource's Blocked reason when no step blocked it as a whole: the first blocked
/// user's, else the first waiting one's, with how many more share it.
fn summary_block(users: &[&str], states: &UserStates) -> Option<Block> {
    let of = |state: Option<UserState>| {
        users.iter().find_map(|u| {
            let (s, b) = states.get(*u)?;
            b.as_ref()
                .filter(|_| state.is_none_or(|want| *s == want))
                .map(|b| (*u, b))
        })
    };
    let (user, b) = of(Some(UserState::Blocked)).or_else(|| of(None))?;
    let others = users
        .iter()
        .filter_map(|u| states.get(*u)?.1.as_ref())
        .filter(|x| x.reason == b.reason)
        .count()
        .saturating_sub(1);
    let others = match others {
        0 => String::new(),
        1 => " (and 1 more user)".to_string(),
        n => format!(" (and {n} more users)"),
    };
    // The user named once: most messages already name them.
    let message = if b.message.contains(user) {
        format!("{}{others}", b.message)
    } else {
        format!("{user}: {}{others}", b.message)
    };
    Some(Block::new(b.reason, message))
}

/// A user of the observed tenant, by identity: the planner borrows the tenant unchanged for its
/// whole life, so a user's address names them in every organization (and spares lowercasing two
/// strings on each of a user's lookups).
fn user_key(user: &User) -> usize {
    std::ptr::from_ref(user).addr()
}

impl<'a> Planner<'a> {
    /// What `user` holds once this plan's changes so far are made.
    pub(super) fn plan_licences(&mut self, user: &'a User, after: Vec<Licence>) {
        self.seats.licences.insert(user_key(user), after);
    }
}

impl Planner<'_> {
    /// Whether LicenseAssignment `owner` declares `l`'s product with the same plans.
    fn declared_plans(&self, owner: usize, l: &Licence) -> bool {
        self.inp.desired.assignments[owner]
            .spec
            .licenses
            .iter()
            .find(|theirs| theirs.product == l.product)
            .is_some_and(|theirs| {
                Licence::new(&theirs.product, &theirs.disabled_plans).same_plans(l)
            })
    }
}

/// Users in spec order, each once (UPNs compare case-insensitively).
impl<'a> Planner<'a> {
    /// The users a LicenseAssignment declares: those it lists, then those of the tenant (as
    /// this pass observed it) its `userSelector` selects, each once; and how many the selector
    /// selected.
    fn declared_users(&self, d: &'a Assignment) -> Declaring<'a> {
        let mut users = unique(&d.spec.users);
        let Some(selector) = &d.spec.user_selector else {
            return (users, None, None);
        };
        let Some(org) = self.inp.observed.organizations.get(&d.spec.organization) else {
            return (users, Some(0), None);
        };
        // memberOf: the members of those groups, each group found or nothing is selected.
        let mut members: Option<HashSet<Cow<str>>> = None;
        for name in &selector.member_of {
            match org.group(name) {
                Ok(g) => members
                    .get_or_insert_with(HashSet::new)
                    .extend(g.members.iter().map(|m| lowercase(m))),
                Err(detail) => {
                    let refusal = Refusal::GroupNotFound {
                        group: name.clone(),
                        detail: format!("spec.userSelector.memberOf: {detail}"),
                    };
                    return (users, None, Some(refusal.into()));
                }
            }
        }
        let listed: std::collections::HashSet<Cow<str>> =
            users.iter().map(|u| lowercase(u)).collect();
        let mut matched = 0;
        let member = |u: &User| {
            members
                .as_ref()
                .is_none_or(|m| m.contains(&lowercase(&u.upn)))
        };
        for u in org
            .users
            .iter()
            .filter(|u| member(u) && selector.matches(u))
        {
            matched += 1;
            if !listed.contains(&lowercase(&u.upn)) {
                users.push(&u.upn);
            }
        }
        (users, Some(matched), None)
    }
}

/// A LicenseAssignment's users (listed, then selected), how many its selector selected, and
/// what stops the selection (a `memberOf` group not found: nothing is selected then).
type Declaring<'a> = (Vec<&'a str>, Option<i64>, Option<Block>);

fn unique(users: &[String]) -> Vec<&str> {
    let mut seen: std::collections::HashSet<Cow<str>> = std::collections::HashSet::new();
    users
        .iter()
        .filter(|u| seen.insert(lowercase(u)))
        .map(String::as_str)
        .collect()
}

/// The ownership entries after users' changes succeeded (each user once): removals drop what
/// they owned of those products, new licences are owned; sorted once, whatever the count.
pub fn record_owned<'c>(
    owned: &mut Vec<OwnedLicence>,
    changes: impl IntoIterator<Item = (&'c UserChange, &'c Vec<String>)> + Clone,
) {
    let removed: HashSet<(String, &str)> = changes
        .clone()
        .into_iter()
        .flat_map(|(c, _)| c.remove.iter().map(|p| (c.user.to_lowercase(), p.as_str())))
        .collect();
    if !removed.is_empty() {
        owned.retain(|o| !removed.contains(&(o.user.to_lowercase(), o.product.as_str())));
    }
    for (change, newly_added) in changes {
        owned.extend(newly_added.iter().map(|p| OwnedLicence {
            user: change.user.clone(),
            product: p.clone(),
        }));
    }
    owned.sort();
    owned.dedup();
}

impl<'a> Planner<'a> {
    /// The user as this plan leaves them so far.
    pub(super) fn planned_user(&self, user: &'a User) -> Cow<'a, User> {
        match self.seats.licences.get(&user_key(user)) {
            Some(licences) => Cow::Owned(User {
                licenses: licences.clone(),
                ..user.clone()
            }),
            None => Cow::Borrowed(user),
        }
    }
}
