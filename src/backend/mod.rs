//! The licensing service: the `Backend` trait and its wrappers come from the core crate
//! (`seatkeeper_core::backend`); the backends are crates of their own, re-exported here (the
//! embedded simulator with its tenant file and journal, Microsoft Graph + Partner Center);
//! what lives here is the lock on the tenant file and the router that sends each
//! organization to its own backend.

pub use seatkeeper_core::backend::*;
pub use seatkeeper_embedded::{embedded, journal};
pub use seatkeeper_microsoft as microsoft;

pub mod lock;
pub mod routed;
