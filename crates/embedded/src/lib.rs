//! The embedded backend: the tenant simulator kept in one YAML file (with its journal for
//! large tenants), enforcing the core's rules; and the YAML reading it shares with the
//! command line.

pub mod embedded;
pub mod journal;
pub mod yaml;

// The core under the names this crate was written with.
pub(crate) use seatkeeper_core::backend::*;
pub(crate) use seatkeeper_core::{clock, domain};
