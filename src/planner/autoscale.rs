//! Seat autoscaling: a Subscription (or standalone AddOn) with `spec.autoscale` follows the
//! demand for its product, between `spec.seats` (the floor) and `maxSeats`.
//!
//! target = min(maxSeats, max(seats, demand + headroom − others)), where demand is the
//! licences of the product assigned in the organization plus those its LicenseAssignments
//! still wait for, and others the seats of the product's other usable subscriptions (R11: one
//! pool). The target then goes through exactly the same steps as a declared seat count (the
//! purchase guard, R07, every Blocked reason), except that a reduction outside the reduction
//! window waits instead of being Blocked.

use std::collections::HashSet;

use super::Planner;
use super::conditions::Block;
use super::resources::{Autoscale, AutoscaleStatus};
use super::subscriptions::PurchaseInput;
use crate::domain::BlockReason;
use crate::domain::{Organization, Subscription};

impl Planner<'_> {
    /// Licences of `product` assigned in the organization (by anyone, as observed, less those
    /// this pass removes) plus the users its LicenseAssignments list for it who exist and do
    /// not hold it yet.
    pub(super) fn demand(&self, org: &Organization, organization: &str, product: &str) -> u32 {
        let leaving = self
            .leaving
            .get(&(organization.to_string(), product.to_string()))
            .copied()
            .unwrap_or(0);
        let assigned = self
            .observed_pool(organization, product)
            .consumed
            .saturating_sub(leaving);
        let mut waiting: HashSet<String> = HashSet::new();
        for d in &self.desired.assignments {
            if d.meta.deleting
                || d.spec.organization != organization
                || !d.spec.licenses.iter().any(|l| l.product == product)
            {
                continue;
            }
            for upn in &d.spec.users {
                if let Some(u) = org.user(upn)
                    && u.licence(product).is_none()
                {
                    waiting.insert(u.upn.to_ascii_lowercase());
                }
            }
        }
        assigned + waiting.len() as u32
    }

    /// The seat count autoscaling aims at for a resource whose floor is `floor` and whose
    /// subscription (if bought) is `bound`: `p.seats` is the floor. A target capped by maxSeats below demand is
    /// remembered, so that the users left waiting are told why.
    pub(super) fn autoscale_target(
        &mut self,
        org: &Organization,
        p: &PurchaseInput,
        bound: Option<&Subscription>,
        a: &Autoscale,
    ) -> AutoscaleStatus {
        let (organization, product, floor) = (p.organization, p.product, p.seats);
        let resource = format!("{} {}/{}", p.kind, p.meta.namespace, p.meta.name);
        let demand = self.demand(org, organization, product);
        let own = bound
            .filter(|s| s.is_usable(self.now) && s.is_admin_manageable())
            .map_or(0, Subscription::assignable_seats);
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
