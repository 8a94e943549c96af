//! Every reason seatkeeper gives for a resource or a user that cannot converge, with its wire
//! string (the `reason` of the `Blocked` condition, `status.blockedReason`, Event reasons).
//! Wire strings are part of the contract: never rename one.

use std::fmt;

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Why something cannot converge.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum BlockReason {
            $($(#[$doc])* $name,)*
        }

        impl BlockReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [BlockReason] = &[$(BlockReason::$name,)*];

            /// The wire string.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(BlockReason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    /// R03.
    CreditCheckPending,
    /// R04.
    Prepaid,
    /// R05.
    ResellerManaged,
    /// R06.
    Trial,
    /// R07.
    SeatsInUse,
    /// R09.
    SelfServicePurchase,
    /// R26: the subscription belongs to another organization.
    OrganizationMismatch,
    ProductUnknown,
    /// R27.
    NotActiveYet,
    /// R10, informational.
    CancellationWindowClosed,
    /// R16.
    InsufficientSeats,
    /// R14.
    ConflictingServices,
    MissingDependency,
    UserNotFound,
    UsageLocationMissing,
    DuplicateAssignment,
    SelfServiceOnly,
    /// R28.
    DowngradeNotAcknowledged,
    RemovalLimitExceeded,
    /// R21.
    NotAvailable,
    BaseSubscriptionNotReady,
    /// R22.
    BaseSubscriptionCanceled,
    /// R23.
    RemovalRequiresSupport,
    OrganizationNotPermitted,
    DuplicateSubscription,
    PurchaseLimitExceeded,
    OrganizationNotFound,
    /// The tenant lacks group-based licensing (Microsoft Entra ID P1).
    GroupLicensingUnavailable,
    /// A group named in `spec.groups` or `userSelector.memberOf` is not in the directory.
    GroupNotFound,
    /// The service could not give a group's licence to a member for a reason seatkeeper
    /// has no other name for (Graph's `UniquenessViolation`, `Other`).
    GroupLicenceFailed,
    SubscriptionNotFound,
    ProductMismatch,
    SubscriptionCanceled,
    SubscriptionSuspended,
    AddOnExists,
    AddOnNotFound,
    /// The service does not know what was named (a backend answer, not a planner finding).
    NotFound,
    /// More users in one licence call than the service takes (R12).
    BatchTooLarge,
    /// Seats can no longer be removed: the reduction window has closed.
    ReductionWindowClosed,
    /// Seats of a subscription billed directly by the vendor change only in its admin center.
    SeatChangeNotSupported,
    /// The credentials for the licensing service were refused.
    CredentialsInvalid,
    /// The application lacks a permission the change needs.
    PermissionDenied,
    /// A licence inherited from a group is never removed from the user directly.
    LicenseAssignedByGroup,
    /// The catalog sells no offer for the product with the term and billing asked.
    OfferNotFound,
    /// The catalog sells several offers for the product: `spec.offer` chooses one.
    OfferAmbiguous,
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for BlockReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::BlockReason;

    #[test]
    fn wire_strings_are_the_variant_names_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for r in BlockReason::ALL {
            assert_eq!(format!("{r:?}"), r.as_str());
            assert!(seen.insert(r.as_str()));
        }
        assert_eq!(BlockReason::SeatsInUse.as_str(), "SeatsInUse");
    }
}
