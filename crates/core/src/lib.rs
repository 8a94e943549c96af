//! seatkeeper's core, with no Kubernetes, no JSON and no HTTP in it:
//!
//! - [`domain`]: the licensing rules and tenant model;
//! - [`planner`]: desired state + observed tenant + clock → actions and statuses;
//! - [`executor`]: applies a plan through a backend, safely and in batches;
//! - [`backend`]: the licensing service behind one trait (the backends themselves are crates
//!   of their own: `seatkeeper-embedded`, `seatkeeper-microsoft`);
//! - [`clock`]: the time, injected; [`guid`]: stable GUIDs from names.

pub mod backend;
pub mod clock;
pub mod domain;
pub mod executor;
pub mod guid;
pub mod planner;
pub mod report;
