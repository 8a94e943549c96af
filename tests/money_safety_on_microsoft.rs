//! The money-safety suite (tests/suites/money_safety.rs) on the Microsoft backend, through
//! the emulator.

mod backend {
    pub const MICROSOFT: bool = true;
}

#[path = "support/cli.rs"]
mod cli;

#[path = "suites/money_safety.rs"]
mod suite;
