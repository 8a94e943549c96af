//! A backend wrapper that runs a hook around every call: a fixed latency (benchmarks,
//! realistic sandboxes), counting calls by operation (metrics), or faults (tests: throttling
//! before a call, a reply lost after the service made the change).

use super::{Backend, Result};
use std::future::Future;
use std::time::Duration;

pub trait Hook: Send + Sync {
    /// Runs before each backend call; `operation` names it (`snapshot`, `assignLicenses`, …).
    /// An error stops the call before it reaches the service.
    fn before(&self, operation: &'static str) -> impl Future<Output = Result<()>> + Send;
    /// Runs after a call the service carried out; an error stands for a lost reply.
    fn after(&self, _operation: &'static str) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// A call went through, changing `items` things (users for `assignLicenses`, else 1):
    /// for a progress display.
    fn done(&self, _operation: &'static str, _items: usize) {}
    /// What was done is being saved (a checkpoint): for a progress display.
    fn saving(&self) {}
}

pub struct Hooked<B, H> {
    pub inner: B,
    pub hook: H,
}

/// Every call takes this long, like a remote service.
pub struct Latency(pub Duration);

impl Hook for Latency {
    async fn before(&self, _: &'static str) -> Result<()> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

impl<B, H: Hook> Hooked<B, H> {
    /// The hook around a call changing `items` things.
    async fn around_n<T>(
        &self,
        operation: &'static str,
        items: usize,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.hook.before(operation).await?;
        let out = call.await?;
        self.hook.after(operation).await?;
        self.hook.done(operation, items);
        Ok(out)
    }
}

impl<B: Backend, H: Hook> Backend for Hooked<B, H> {
    async fn checkpoint(&self) -> Result<()> {
        self.hook.saving();
        self.inner.checkpoint().await
    }
    crate::forward_operations!(around);
}

/// The inner backend's call, with the hook around it.
macro_rules! around {
    ($s:ident, $o:ident, $op:literal, $items:expr, $m:ident($($a:expr),*)) => {
        $s.around_n($op, $items, $s.inner.$m($o $(, $a)*)).await
    };
}
use around;
