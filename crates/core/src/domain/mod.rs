//! The licensing domain: the tenant model, the product catalog, and the vendor's rules.
//!
//! Pure data and pure functions, with no Kubernetes types. The rules in [`rules`] are the
//! single place each licensing rule (R01…R30, explained in docs/RULES.md) is written: the planner uses them to
//! predict and explain, the embedded backend uses them to enforce.

pub mod billing;
pub mod catalog;
pub mod groups;
pub mod reasons;
pub mod rules;
pub mod tenant;

pub use catalog::{Catalog, Product, ProductKind};
pub use reasons::BlockReason;
pub use rules::Refusal;
pub use tenant::{
    BillingFrequency, Channel, CreditCheck, Group, GroupLicenceError, Licence, LicenceError,
    Organization, PendingSeatChange, Subscription, SubscriptionState, Term, TraditionalAddOn, User,
    UserAttribute, UserChange,
};

/// Instants are UTC timestamps throughout; the clock is always passed in.
pub type Instant = jiff::Timestamp;

/// R19: mailbox data is kept this long after a licence is removed.
pub const DATA_RETENTION_DAYS: i64 = 30;

/// `s` in lowercase, copied only when it is not already (UPNs and names mostly are): for
/// case-insensitive lookups made once per user.
pub fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        std::borrow::Cow::Owned(s.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// `n` and the word for it, singular or plural: "1 user", "3 users".
pub fn counted<N>(n: N, one: &str, many: &str) -> String
where
    N: std::fmt::Display + PartialEq + From<u8>,
{
    format!("{n} {}", if n == N::from(1) { one } else { many })
}
