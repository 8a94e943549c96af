//! The rule suite (tests/suites/rules.rs) on the Microsoft backend: every run talks real HTTP
//! to `seatkeeper emulate` serving the same tenant file, through an Organization document.

mod backend {
    pub const MICROSOFT: bool = true;
}

#[path = "support/cli.rs"]
mod cli;

#[path = "suites/rules.rs"]
mod suite;
