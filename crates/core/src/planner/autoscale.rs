//! Seat autoscaling: a Subscription (or standalone AddOn) with `spec.autoscale` follows the
//! demand for its product, between `spec.seats` (the floor) and `maxSeats`.
//!
//! target = min(maxSeats, max(seats, demand + headroom − others)), where demand is the
//! licences of the product assigned in the organization plus those its LicenseAssignments
//! still wait for, and others the seats of the product's other usable subscriptions (R11: one
//! pool). The target then goes through exactly the same steps as a declared seat count (the
//! purchase guard, R07, every Blocked reason), except that a reduction outside the reduction
//! window waits instead of being Blocked.

use std::collections::HashMap;

use super::Planner;
use super::conditions::Block;
use super::resources::{Autoscale, AutoscaleStatus};
use super::subscriptions::PurchaseInput;
use crate::domain::BlockReason;
use crate::domain::Subscription;

impl Planner<'_> {
    /// Licences of `product` assigned in the organization (by anyone, as observed), less
    /// those this pass removes, plus those LicenseAssignments want assigned (with a free seat
    /// or waiting for one), as the first plan of the pass found them.
    pub(super) fn demand(&self, organization: &str, product: &str) -> u32 {
        let assigned = self.inp.observed_pool(organization, product).consumed;
        let Some(first) = &self.inp.first_demand else {
            return assigned;
        };
        assigned.saturating_sub(first.leaving.count(organization, product))
            + first.wanting.count(organization, product)
    }

    /// The seat count autoscaling aims at for a resource whose floor is `floor` and whose
    /// subscription (if bought) is `bound`: `p.seats` is the floor. A target capped by maxSeats below demand is
    /// remembered, so that the users left waiting are told why.
    pub(super) fn autoscale_target(
        &mut self,
        p: &PurchaseInput,
        bound: Option<&Subscription>,
        a: &Autoscale,
    ) -> AutoscaleStatus {
        let (organization, product, floor) = (p.organization, p.product, p.seats);
        let resource = format!("{} {}/{}", p.kind, p.meta.namespace, p.meta.name);
        let demand = self.demand(organization, product);
        let own = bound.map_or(0, |s| s.pool_seats(self.inp.now));
        let others = self.pool(organization, product).seats.saturating_sub(own);
        let max = a.max_seats.max(0) as u32;
        let wanted = (demand + a.headroom.max(0) as u32).saturating_sub(others);
        let target = wanted.max(floor).min(max);
        if wanted > max && demand > others + max {
            self.autoscale_caps.insert(
                (organization.to_string(), product.to_string()),
                format!("autoscaling of {resource} stops at maxSeats {max}: raise spec.autoscale.maxSeats to let it buy more"),
            );
        }
        AutoscaleStatus {
            demand: demand as i64,
            target: target as i64,
            next_reduction_at: None,
            waiting: None,
        }
    }

    /// A user waiting for seats of a product whose autoscaling reached maxSeats is told so.
    pub(super) fn with_autoscale_cap(
        &self,
        organization: &str,
        product: &str,
        mut block: Block,
    ) -> Block {
        if block.reason != BlockReason::InsufficientSeats {
            return block;
        }
        let key = (organization.to_string(), product.to_string());
        if let Some(why) = self.autoscale_caps.get(&key) {
            block.message = format!("{}; {why}", block.message);
        }
        block
    }
}

/// What one pass's licence changes do to the demand for each (organization, product).
#[derive(Clone, Debug, Default)]
pub(super) struct Demand {
    /// Licences removed.
    leaving: Counts,
    /// Licences users are given, or wait for a seat to be given.
    wanting: Counts,
}

impl Demand {
    pub(super) fn want(&mut self, organization: &str, products: &[String]) {
        self.wanting.add(organization, products);
    }

    pub(super) fn leave(&mut self, organization: &str, products: &[String]) {
        self.leaving.add(organization, products);
    }
}

/// organization → product → count.
#[derive(Clone, Debug, Default)]
struct Counts(HashMap<String, HashMap<String, u32>>);

impl Counts {
    fn add(&mut self, organization: &str, products: &[String]) {
        for p in products {
            *super::entry_of(&mut self.0, organization, p) += 1;
        }
    }

    fn count(&self, organization: &str, product: &str) -> u32 {
        self.0
            .get(organization)
            .and_then(|o| o.get(product))
            .copied()
            .unwrap_or(0)
    }
}
