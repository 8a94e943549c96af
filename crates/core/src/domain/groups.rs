//! Group-based licensing, as the service processes it: a group's licences pass to its direct
//! members while seats allow; a member who cannot have one is in error instead (Graph's
//! `licenseAssignmentStates`). Written once: the simulator processes groups with it after
//! every change, and the planner asks it who a group licence would give a seat to or take
//! one from.

use super::catalog::Catalog;
use super::rules::{Refusal, check_licence_set, check_user_assignable};
use super::tenant::{Group, GroupLicenceError, Licence, LicenceError, Organization, User};
use super::{Instant, lowercase};
use std::collections::{BTreeSet, HashMap};

/// lowercase member → the positions of the groups with licences they belong to, in order.
fn memberships(org: &Organization) -> HashMap<String, Vec<usize>> {
    let mut of: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, g) in org.groups.iter().enumerate() {
        if g.licenses.is_empty() {
            continue;
        }
        for m in &g.members {
            let groups = of.entry(lowercase(m).into_owned()).or_default();
            if !groups.contains(&i) {
                groups.push(i);
            }
        }
    }
    of
}

/// The group that gives `product` to a member of `groups` (the first, in the directory's
/// order: its disabled plans are the ones held).
fn granting<'o>(org: &'o Organization, groups: &[usize], product: &str) -> Option<&'o Group> {
    groups
        .iter()
        .map(|&i| &org.groups[i])
        .find(|g| g.licence(product).is_some())
}

/// The service's processing of every group: members gain the licences of their groups when
/// seats allow (in the order of groups, then members), lose inherited licences no group of
/// theirs gives any more, and the rest are in error with the reason. A licence a member
/// also holds directly takes no second seat. A tenant without groups is left as it is (its
/// `byGroup` licences come from groups the file does not describe). Returns the users whose
/// licences changed.
pub fn process(org: &mut Organization, catalog: &Catalog, now: Instant) -> Vec<String> {
    if org.groups.is_empty() {
        return vec![];
    }
    let of = memberships(org);
    let mut changed = BTreeSet::new();
    // Inherited licences no group gives any more, or with other plans than the group's.
    let mut updates = vec![];
    for u in &org.users {
        if !u.licenses.iter().any(|l| l.by_group) && u.license_errors.is_empty() {
            continue;
        }
        let groups = of
            .get(lowercase(&u.upn).as_ref())
            .map_or(&[][..], Vec::as_slice);
        let kept: Vec<Licence> = u
            .licenses
            .iter()
            .filter_map(|l| {
                if !l.by_group {
                    return Some(l.clone());
                }
                let g = granting(org, groups, &l.product)?;
                let mut now_held = g.licence(&l.product).expect("granting").clone();
                now_held.by_group = true;
                Some(now_held)
            })
            .collect();
        updates.push((u.upn.clone(), kept != u.licenses, kept));
    }
    for (upn, differs, kept) in updates {
        if differs {
            org.set_licences(&upn, kept);
            changed.insert(upn.clone());
        }
        org.set_licence_errors(&upn, vec![]);
    }
    // New inherited licences, seats allowing.
    let mut errors: HashMap<String, Vec<LicenceError>> = HashMap::new();
    for gi in 0..org.groups.len() {
        for mi in 0..org.groups[gi].members.len() {
            for li in 0..org.groups[gi].licenses.len() {
                let group = &org.groups[gi];
                let (member, licence) = (&group.members[mi], &group.licenses[li]);
                let Some(user) = org.user(member) else {
                    continue;
                };
                if user.licence(&licence.product).is_some() {
                    continue;
                }
                let groups = of
                    .get(lowercase(&user.upn).as_ref())
                    .map_or(&[][..], Vec::as_slice);
                if granting(org, groups, &licence.product).map(Group::key) != Some(group.key()) {
                    continue; // an earlier group of theirs gives it
                }
                let mut inherited = Licence::new(&licence.product, &licence.disabled_plans);
                inherited.by_group = true;
                match inherit(org, catalog, user, &inherited, now) {
                    Ok(after) => {
                        let upn = user.upn.clone();
                        org.set_licences(&upn, after);
                        changed.insert(upn);
                    }
                    Err(error) => errors
                        .entry(user.upn.clone())
                        .or_default()
                        .push(LicenceError {
                            product: licence.product.clone(),
                            group: group.key().to_string(),
                            error,
                        }),
                }
            }
        }
    }
    for (upn, e) in errors {
        org.set_licence_errors(&upn, e);
    }
    changed.into_iter().collect()
}

/// One member taking one group licence: their licences afterwards, or the error.
fn inherit(
    org: &Organization,
    catalog: &Catalog,
    user: &User,
    licence: &Licence,
    now: Instant,
) -> Result<Vec<Licence>, GroupLicenceError> {
    if check_user_assignable(org, &user.upn).is_err() {
        return Err(GroupLicenceError::ProhibitedInUsageLocationViolation);
    }
    let mut after = user.licenses.clone();
    after.push(licence.clone());
    match check_licence_set(catalog, &after) {
        Ok(()) => {}
        Err(Refusal::ConflictingServices { .. }) => {
            return Err(GroupLicenceError::MutuallyExclusiveViolation);
        }
        Err(Refusal::MissingDependency { .. }) => {
            return Err(GroupLicenceError::DependencyViolation);
        }
        Err(_) => return Err(GroupLicenceError::Other),
    }
    let free = org
        .pool(&licence.product, now)
        .saturating_sub(org.consumed(&licence.product));
    if free == 0 || org.self_service_only(&licence.product, now) {
        return Err(GroupLicenceError::CountViolation);
    }
    Ok(after)
}

/// What giving or taking one group licence does to its members.
#[derive(Clone, Debug, Default)]
pub struct Reach<'o> {
    /// Members who would take a new seat (they hold the product in no way yet).
    pub gaining: Vec<&'o User>,
    /// Members who would lose the product: they hold it only through this group.
    pub losing: Vec<&'o User>,
}

/// Who group `group`'s licence of `product` reaches: for an assignment, the members it
/// would give a seat; for a removal, those who would lose the product.
pub fn reach<'o>(org: &'o Organization, group: &Group, product: &str) -> Reach<'o> {
    let of = memberships(org);
    let mut reach = Reach::default();
    let mut seen = BTreeSet::new();
    for m in &group.members {
        let Some(user) = org.user(m) else { continue };
        if !seen.insert(lowercase(&user.upn).into_owned()) {
            continue;
        }
        match user.licence(product) {
            None => reach.gaining.push(user),
            Some(l) if l.by_group => {
                let groups = of
                    .get(lowercase(&user.upn).as_ref())
                    .map_or(&[][..], Vec::as_slice);
                let others = groups
                    .iter()
                    .map(|&i| &org.groups[i])
                    .any(|g| g.key() != group.key() && g.licence(product).is_some());
                if !others {
                    reach.losing.push(user);
                }
            }
            Some(_) => {} // held directly as well: kept
        }
    }
    reach
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Subscription, SubscriptionState};

    fn now() -> Instant {
        "2026-11-21T09:00:00Z".parse().unwrap()
    }

    fn org(seats: u32, members: &[&str]) -> Organization {
        let mut o = Organization::default();
        o.domain = "contoso.com".into();
        for m in members {
            o.users.push(User {
                upn: m.to_string(),
                usage_location: Some("NL".into()),
                ..Default::default()
            });
        }
        o.subscriptions.push(Subscription {
            id: "s1".into(),
            product: "SPE_E3".into(),
            seats,
            status: SubscriptionState::Active,
            ..Default::default()
        });
        o.groups.push(Group {
            id: Some("g1".into()),
            name: "sales".into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            licenses: vec![Licence::new("SPE_E3", &["SWAY".into()])],
            processing: false,
        });
        o
    }

    #[test]
    fn members_inherit_a_group_licence_while_seats_allow_and_the_rest_are_in_count_violation() {
        let mut o = org(2, &["a@contoso.com", "b@contoso.com", "c@contoso.com"]);
        let changed = process(&mut o, &Catalog::builtin(), now());
        assert_eq!(changed, ["a@contoso.com", "b@contoso.com"]);
        let held = o.user("a@contoso.com").unwrap().licence("SPE_E3").unwrap();
        assert!(held.by_group);
        assert_eq!(held.disabled_plans, ["SWAY"]);
        let c = o.user("c@contoso.com").unwrap();
        assert!(c.licenses.is_empty());
        assert_eq!(c.license_errors[0].error, GroupLicenceError::CountViolation);
        assert_eq!(c.license_errors[0].group, "g1");
        // Processing again changes nothing: nobody's seat moves.
        assert!(process(&mut o, &Catalog::builtin(), now()).is_empty());
        assert_eq!(o.consumed("SPE_E3"), 2);
    }

    #[test]
    fn a_member_who_leaves_the_group_loses_the_inherited_licence_and_frees_the_seat_for_another() {
        let mut o = org(1, &["a@contoso.com", "b@contoso.com"]);
        process(&mut o, &Catalog::builtin(), now());
        o.groups[0].members.remove(0);
        let changed = process(&mut o, &Catalog::builtin(), now());
        assert_eq!(changed, ["a@contoso.com", "b@contoso.com"]);
        assert!(o.user("a@contoso.com").unwrap().licenses.is_empty());
        assert!(o.user("b@contoso.com").unwrap().licence("SPE_E3").is_some());
        assert!(o.user("b@contoso.com").unwrap().license_errors.is_empty());
    }

    #[test]
    fn a_direct_licence_and_an_inherited_one_of_one_product_take_one_seat() {
        let mut o = org(1, &["a@contoso.com"]);
        o.set_licences("a@contoso.com", vec![Licence::new("SPE_E3", &[])]);
        assert!(process(&mut o, &Catalog::builtin(), now()).is_empty());
        assert_eq!(o.consumed("SPE_E3"), 1);
        let r = reach(&o, &o.groups[0].clone(), "SPE_E3");
        assert!(r.gaining.is_empty() && r.losing.is_empty(), "{r:?}");
    }

    #[test]
    fn a_member_without_usage_location_is_in_error_not_licensed() {
        let mut o = org(5, &["a@contoso.com"]);
        o.users[0].usage_location = None;
        process(&mut o, &Catalog::builtin(), now());
        let a = o.user("a@contoso.com").unwrap();
        assert_eq!(
            a.license_errors[0].error,
            GroupLicenceError::ProhibitedInUsageLocationViolation
        );
        assert_eq!(
            a.license_errors[0].error.reason(),
            crate::domain::BlockReason::UsageLocationMissing
        );
    }

    #[test]
    fn removing_a_group_licence_reaches_only_members_holding_it_through_that_group_alone() {
        let mut o = org(5, &["a@contoso.com", "b@contoso.com", "c@contoso.com"]);
        o.groups.push(Group {
            id: Some("g2".into()),
            name: "all".into(),
            members: vec!["b@contoso.com".into()],
            licenses: vec![Licence::new("SPE_E3", &[])],
            processing: false,
        });
        process(&mut o, &Catalog::builtin(), now());
        o.set_licences(
            "c@contoso.com",
            vec![Licence::new("SPE_E3", &["SWAY".into()])],
        );
        let g = o.groups[0].clone();
        let r = reach(&o, &g, "SPE_E3");
        let losing: Vec<&str> = r.losing.iter().map(|u| u.upn.as_str()).collect();
        assert_eq!(losing, ["a@contoso.com"]);
    }
}
