//! One backend per organization: organizations declared with a Microsoft backend go to their
//! own tenant; every other organization to the default backend (the embedded simulator).

use super::microsoft::Microsoft;
use super::{Backend, Result};
use std::collections::BTreeMap;

pub struct Routed<D, M = Microsoft> {
    pub default: D,
    /// lowercase domain → its tenant.
    pub microsoft: BTreeMap<String, M>,
}

impl<D, M> Routed<D, M> {
    pub fn new(default: D) -> Routed<D, M> {
        Routed {
            default,
            microsoft: BTreeMap::new(),
        }
    }
}

impl<D: Backend, M: Backend> Backend for Routed<D, M> {
    async fn checkpoint(&self) -> Result<()> {
        self.default.checkpoint().await?;
        for m in self.microsoft.values() {
            m.checkpoint().await?;
        }
        Ok(())
    }
    seatkeeper_core::forward_operations!(route);
}

/// Calls the organization's backend.
macro_rules! route {
    ($s:ident, $o:ident, $op:literal, $items:expr, $m:ident($($a:expr),*)) => {
        match $s.microsoft.get(&$o.to_lowercase()) {
            Some(m) => m.$m($o $(, $a)*).await,
            None => $s.default.$m($o $(, $a)*).await,
        }
    };
}
use route;
