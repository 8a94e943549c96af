//! A LicenseAssignment's groups: group-based licensing. The resource gives each group of
//! `spec.groups` its licences (members inherit them, as the service processes the group:
//! `domain::groups`) and takes away those it gave a group it no longer names. The same
//! guards as for users: a group's licence is assigned once every member who needs a seat has
//! one; a removal counts every member losing the licence against the removal limit, and
//! waits for an acknowledgement when a member would lose their data (R28; R19 records each).

use super::conditions::Block;
use super::resources::{GroupStatus, OwnedGroupLicence, UserState, UserStatus};
use super::{Declared, Kind, Op, Planner};
use crate::domain::groups::reach;
use crate::domain::rules::{check_data_kept, licences_after};
use crate::domain::{BlockReason, Licence, Organization, Refusal, counted, lowercase};
use std::collections::BTreeSet;

type Assignment = Declared<super::AssignmentIntent, super::LicenseAssignmentStatus>;

/// The first members in error a group's status names.
pub const MAX_GROUP_ERRORS_LISTED: usize = 10;

/// What one LicenseAssignment's groups come to in this pass.
#[derive(Default)]
pub(super) struct GroupPlan {
    pub statuses: Vec<GroupStatus>,
    /// Changes to make, each with the members losing a licence.
    pub changes: Vec<Op>,
    /// Stops the whole resource (no group licensing, an unknown group, R28).
    pub block: Option<Block>,
    /// Why a group's licences are not all there yet (seats, members in error).
    pub waiting: Option<Block>,
    /// Members who would lose a licence: counted against the removal limit.
    pub losing: usize,
    /// Groups whose licences the service is still passing to their members.
    pub processing: Vec<String>,
    /// (lowercase member, product) losing a licence with a group's removal: a member the
    /// resource also declares gets it directly first (make-before-break).
    pub losing_users: BTreeSet<(String, String)>,
}

impl GroupPlan {
    /// Members given `product` directly in this pass keep it: they lose nothing.
    pub(super) fn kept_directly(&mut self, user: &str, product: &str) {
        let key = (lowercase(user).into_owned(), product.to_string());
        if !self.losing_users.remove(&key) {
            return;
        }
        self.losing = self.losing.saturating_sub(1);
        for op in &mut self.changes {
            if let Op::AssignGroupLicences {
                remove,
                members_losing,
                ..
            } = op
                && remove.iter().any(|p| p == product)
            {
                members_losing.retain(|m| !m.eq_ignore_ascii_case(user));
            }
        }
    }
}

impl<'a> Planner<'a> {
    /// Step 4b: the groups of one LicenseAssignment.
    pub(super) fn plan_groups(
        &mut self,
        d: &Assignment,
        org: &'a Organization,
        paused: bool,
    ) -> GroupPlan {
        let mut plan = GroupPlan::default();
        let declared_groups: Vec<&str> = if d.meta.deleting {
            vec![]
        } else {
            let mut seen = BTreeSet::new();
            d.spec
                .groups
                .iter()
                .filter(|g| seen.insert(lowercase(g).into_owned()))
                .map(String::as_str)
                .collect()
        };
        if declared_groups.is_empty() && d.status.owned_groups.is_empty() {
            return plan;
        }
        let catalog = self.inp.observed.catalog.clone();
        let organization = d.spec.organization.as_str();
        let declared: Vec<Licence> = d
            .spec
            .licenses
            .iter()
            .map(|l| Licence::new(&l.product, &l.disabled_plans))
            .collect();
        if !declared_groups.is_empty() && !org.group_licensing(&catalog, self.inp.now) {
            let block = Block::from(Refusal::GroupLicensingUnavailable {
                organization: org.domain.clone(),
            });
            for g in &declared_groups {
                let members = org.group(g).map_or(0, |g| g.members.len() as i64);
                plan.statuses.push(GroupStatus {
                    group: g.to_string(),
                    members,
                    blocked: members,
                    reason: Some(block.reason.to_string()),
                    message: Some(block.message.clone()),
                    ..Default::default()
                });
            }
            plan.block = Some(block);
            return plan;
        }
        // Groups named in spec: their licences, and who is licensed.
        let mut declared_keys = BTreeSet::new();
        for name in &declared_groups {
            let group = match org.group(name) {
                Ok(g) => g,
                Err(detail) => {
                    let block = Block::from(Refusal::GroupNotFound {
                        group: name.to_string(),
                        detail,
                    });
                    plan.statuses.push(GroupStatus {
                        group: name.to_string(),
                        reason: Some(block.reason.to_string()),
                        message: Some(block.message.clone()),
                        ..Default::default()
                    });
                    plan.block.get_or_insert(block);
                    continue;
                }
            };
            declared_keys.insert(group.key().to_string());
            let mut status = group_status(org, name, group, &declared);
            if group.processing {
                // Members are not all there yet: nothing to decide from them until it is done.
                status.message = Some(
                    "the licensing service is still giving the group's licences to its members"
                        .into(),
                );
                plan.processing.push(name.to_string());
                plan.statuses.push(status);
                continue;
            }
            let add: Vec<Licence> = declared
                .iter()
                .filter(|l| group.licence(&l.product).is_none_or(|h| !h.same_plans(l)))
                .cloned()
                .collect();
            // Members who take a new seat, per new product: all of them or none (a licence
            // the service could give only some members would leave the others in error).
            let mut gaining = 0u32;
            let mut short = None;
            for l in add.iter().filter(|l| group.licence(&l.product).is_none()) {
                let needing = reach(org, group, &l.product).gaining.len() as u32;
                if !paused {
                    for _ in 0..needing {
                        self.demand
                            .want(organization, std::slice::from_ref(&l.product));
                    }
                }
                let available = self.pool(organization, &l.product).available();
                if needing > available && short.is_none() {
                    short = Some(Block::new(
                        BlockReason::InsufficientSeats,
                        format!(
                            "group {name}: {} without {} and only {} free: buy at least {} more; the group gets the licence once all members can",
                            counted(needing, "member is", "members are"),
                            l.product,
                            counted(available, "licence is", "licences are"),
                            counted(needing - available, "seat", "seats")
                        ),
                    ));
                    short = short.map(|b| self.with_autoscale_cap(organization, &l.product, b));
                }
                gaining = gaining.max(needing);
            }
            // Members in error already count as wanting a seat (autoscaling provides it).
            if !paused {
                for u in group_members(org, group) {
                    for e in u.license_errors.iter().filter(|e| e.group == group.key()) {
                        if e.error == crate::domain::GroupLicenceError::CountViolation
                            && declared.iter().any(|l| l.product == e.product)
                        {
                            self.demand
                                .want(organization, std::slice::from_ref(&e.product));
                        }
                    }
                }
            }
            if let Some(block) = short {
                status.reason = Some(block.reason.to_string());
                status.message = Some(block.message.clone());
                plan.waiting.get_or_insert(block);
            } else if !add.is_empty() {
                for l in add.iter().filter(|l| group.licence(&l.product).is_none()) {
                    let needing = reach(org, group, &l.product).gaining.len() as u32;
                    if !paused {
                        self.pool_mut(organization, &l.product).consumed += needing;
                    }
                }
                plan.changes.push(Op::AssignGroupLicences {
                    group: group.key().to_string(),
                    name: name.to_string(),
                    add,
                    remove: vec![],
                    members_gaining: gaining,
                    members_losing: vec![],
                });
            } else if let Some(b) = status_block(&status) {
                plan.waiting.get_or_insert(b);
            }
            plan.statuses.push(status);
        }
        if plan.block.is_some() {
            // A group it cannot find: nothing is removed from any group until it is found.
            plan.changes.clear();
            return plan;
        }
        // Licences it gave groups it no longer names (or products it no longer declares).
        let unassign = !d.meta.deleting
            || d.spec.deletion_policy == super::resources::AssignmentDeletionPolicy::Unassign;
        if !unassign {
            return plan;
        }
        let acknowledged = d.meta.flags.acknowledge_downgrade;
        let mut by_group: Vec<(String, Vec<String>)> = vec![];
        for OwnedGroupLicence { group, product } in &d.status.owned_groups {
            let still =
                declared_keys.contains(group) && declared.iter().any(|l| &l.product == product);
            if still {
                continue;
            }
            match by_group.iter_mut().find(|(g, _)| g == group) {
                Some((_, products)) => products.push(product.clone()),
                None => by_group.push((group.clone(), vec![product.clone()])),
            }
        }
        for (key, products) in by_group {
            let Ok(group) = org.group(&key) else {
                continue; // the group is gone, and its licences with it
            };
            let remove: Vec<String> = products
                .into_iter()
                .filter(|p| group.licence(p).is_some())
                .collect();
            if remove.is_empty() {
                continue;
            }
            let mut losing: Vec<String> = vec![];
            let mut kept = None;
            for product in &remove {
                for user in reach(org, group, product).losing {
                    let user = &*self.planned_user(user);
                    let products = vec![product.clone()];
                    let after = licences_after(user, &[], &products);
                    if let Err(r) = check_data_kept(
                        &catalog,
                        user,
                        &after,
                        &products,
                        acknowledged,
                        self.inp.now,
                    ) {
                        kept.get_or_insert(Block::from(r));
                    }
                    if !losing.contains(&user.upn) {
                        losing.push(user.upn.clone());
                    }
                    plan.losing_users
                        .insert((lowercase(&user.upn).into_owned(), product.clone()));
                }
            }
            if let Some(mut b) = kept {
                b.message = format!("group {}: {}", group.name, b.message);
                plan.block.get_or_insert(b);
                continue;
            }
            plan.losing += losing.len();
            if !paused {
                for p in &remove {
                    let n = reach(org, group, p).losing.len() as u32;
                    let pool = self.pool_mut(organization, p);
                    pool.consumed = pool.consumed.saturating_sub(n);
                    for _ in 0..n {
                        self.demand.leave(organization, std::slice::from_ref(p));
                    }
                }
            }
            plan.changes.push(Op::AssignGroupLicences {
                group: group.key().to_string(),
                name: group.name.clone(),
                add: vec![],
                remove,
                members_gaining: 0,
                members_losing: losing,
            });
        }
        if plan.block.is_some() {
            plan.changes.retain(
                |op| !matches!(op, Op::AssignGroupLicences { remove, .. } if !remove.is_empty()),
            );
        }
        plan
    }

    /// The removal limit reached: group removals wait with the users'.
    pub(super) fn hold_group_removals(plan: &mut GroupPlan) {
        plan.changes.retain(
            |op| !matches!(op, Op::AssignGroupLicences { remove, .. } if !remove.is_empty()),
        );
    }

    pub(super) fn push_group_changes(&mut self, d: &Assignment, changes: Vec<Op>) {
        for op in changes {
            self.push(
                &d.meta,
                Kind::LicenseAssignment,
                &d.spec.organization,
                op,
                false,
            );
        }
    }
}

/// The users among a group's members, each once.
fn group_members<'o>(
    org: &'o Organization,
    group: &'o crate::domain::Group,
) -> impl Iterator<Item = &'o crate::domain::User> {
    let mut seen = BTreeSet::new();
    group
        .members
        .iter()
        .filter_map(|m| org.user(m))
        .filter(move |u| seen.insert(lowercase(&u.upn).into_owned()))
}

/// A group as the tenant was read: members, those holding every declared licence, those in
/// error for one (the first few named, with the reason).
fn group_status(
    org: &Organization,
    name: &str,
    group: &crate::domain::Group,
    declared: &[Licence],
) -> GroupStatus {
    let mut status = GroupStatus {
        group: name.to_string(),
        ..Default::default()
    };
    for u in group_members(org, group) {
        status.members += 1;
        if declared.iter().all(|l| u.licence(&l.product).is_some()) {
            status.licensed += 1;
        }
        let error = u
            .license_errors
            .iter()
            .find(|e| e.group == group.key() && declared.iter().any(|l| l.product == e.product));
        if let Some(e) = error {
            status.blocked += 1;
            if status.errors.len() < MAX_GROUP_ERRORS_LISTED {
                status.errors.push(UserStatus {
                    user: u.upn.clone(),
                    state: UserState::Blocked,
                    reason: Some(e.error.reason().to_string()),
                    message: Some(format!(
                        "{} of group {name} is not assigned: {} ({})",
                        e.product,
                        e.error.describe(),
                        e.error.as_str()
                    )),
                });
            }
        }
    }
    status
}

/// The Blocked line of a group with members in error.
fn status_block(status: &GroupStatus) -> Option<Block> {
    let first = status.errors.first()?;
    let more = status.blocked.saturating_sub(1);
    let mut message = format!(
        "{}: {}",
        first.user,
        first.message.clone().unwrap_or_default()
    );
    if more > 0 {
        message += &format!(" (and {} more)", counted(more, "member", "members"));
    }
    Some(Block::new(
        first
            .reason
            .as_deref()
            .and_then(|r| BlockReason::ALL.iter().find(|b| b.as_str() == r).copied())
            .unwrap_or(BlockReason::GroupLicenceFailed),
        message,
    ))
}
