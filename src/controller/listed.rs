//! Whether each watch has listed its objects once.
//!
//! kube-runtime's `Store::wait_until_ready` keeps a single waker (a futures oneshot): of
//! several tasks waiting on one store at once, only the last to poll is woken and the others
//! wait for ever. A reconcile that waited beside another never finished, and since
//! kube-runtime runs one reconcile per object at a time, no later change of that object (a
//! rotated Secret, an Organization edited) was reconciled either. So seatkeeper never waits on
//! a store itself (kube-runtime's own applier is each store's one waiter): every watch
//! raises one of these flags at its first complete list, and a tokio watch channel wakes
//! every waiter.

use kube::runtime::watcher;
use tokio::sync::watch;

/// Raised by a watch stream at its first complete list.
pub struct Lister(watch::Sender<bool>);

/// What waits for a [`Lister`]: cheap to clone, any number of waiters.
#[derive(Clone, Debug)]
pub struct Listed(watch::Receiver<bool>);

/// A new flag, down.
pub fn flag() -> (Lister, Listed) {
    let (tx, rx) = watch::channel(false);
    (Lister(tx), Listed(rx))
}

impl Lister {
    /// Looks at one watcher event: the end of a list raises the flag.
    pub fn note<K>(&self, event: &watcher::Event<K>) {
        if matches!(event, watcher::Event::InitDone) && !*self.0.borrow() {
            self.0.send_replace(true);
        }
    }
}

impl Listed {
    /// Returns once the watch has listed everything (or is gone: then nothing will come).
    pub async fn wait(&self) {
        let _ = self.0.clone().wait_for(|listed| *listed).await;
    }

    pub fn is_listed(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_is_woken_when_the_list_is_complete() {
        let (lister, listed) = flag();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let l = listed.clone();
                tokio::spawn(async move { l.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!listed.is_listed());
        lister.note::<()>(&watcher::Event::Init);
        assert!(!listed.is_listed(), "a list that has only begun");
        lister.note::<()>(&watcher::Event::InitDone);
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("every waiter woken")
                .unwrap();
        }
    }
}
