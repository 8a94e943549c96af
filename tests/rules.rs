//! The rule suite (tests/suites/rules.rs) on the embedded simulator.

mod backend {
    pub const MICROSOFT: bool = false;
}

#[path = "support/cli.rs"]
mod cli;

#[path = "suites/rules.rs"]
mod suite;
