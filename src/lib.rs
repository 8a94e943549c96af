//! seatkeeper: SaaS seat licensing as declared state.
//!
//! - [`domain`]: the licensing rules and tenant model (pure, no Kubernetes types);
//! - [`planner`]: desired state + observed tenant + clock → actions and statuses (pure);
//! - [`backend`]: the licensing service behind one trait, with the embedded tenant simulator;
//! - [`executor`]: applies a plan through a backend, safely and in batches;
//! - [`api`]: the resource types and their CRDs; [`intents`]: Kubernetes objects → the
//!   planner's declared resources (the one intent builder);
//! - [`wording`]: how actions read for people (the CLI's output and the cluster's Events);
//! - [`cli`]: the `seatkeeper` command line.

// The core (no Kubernetes, no JSON, no HTTP): its own crate, `crates/core`, so the compiler
// keeps the fence. Re-exported under the names the rest of the house uses.
pub use seatkeeper_core::{clock, domain, executor, guid, planner, report};
// The emulator and the YAML reading: crates of their own too (`crates/emulator`,
// `crates/embedded`).
pub use seatkeeper_embedded::yaml;
pub use seatkeeper_emulator as emulator;

pub mod api;
pub mod backend;
pub mod cli;
pub mod controller;
pub mod crdgen;
pub mod intents;
pub mod organizations;
pub mod wording;
