//! What the client and the listener share: the reply partitions this replica owns, and the
//! requests waiting for a reply.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kafkube_core::Shutdown;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::{Producer, Record};

/// The reply partitions this replica owns, shared with the rebalance callback.
#[derive(Debug, Default)]
pub(super) struct Routes {
    pub(super) partitions: RwLock<Vec<i32>>,
    pub(super) next: AtomicUsize,
    /// Woken whenever the owned partitions change, for requests waiting for a first one.
    pub(super) changed: tokio::sync::Notify,
}

impl Routes {
    pub(super) fn update(&self, f: impl FnOnce(&mut BTreeSet<i32>)) -> Vec<i32> {
        let mut guard = self
            .partitions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut set: BTreeSet<i32> = guard.iter().copied().collect();
        f(&mut set);
        *guard = set.into_iter().collect();
        metrics::gauge!("kafkube_rpc_reply_partitions").set(guard.len() as f64);
        self.changed.notify_waiters();
        guard.clone()
    }

    /// [`pick`](Self::pick), waiting until `until` for a partition when this replica owns none
    /// yet (it is joining its group, or a rebalance moved its partitions).
    pub(super) async fn pick_or_wait(&self, until: Instant) -> Option<i32> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so an assignment between the two is not missed.
            changed.as_mut().enable();
            if let Some(p) = self.pick() {
                return Some(p);
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(until) => return self.pick(),
            }
        }
    }

    /// The next owned partition, round robin.
    pub(super) fn pick(&self) -> Option<i32> {
        let guard = self
            .partitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % guard.len();
        Some(guard[i])
    }

    pub(super) fn snapshot(&self) -> Vec<i32> {
        self.partitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A request waiting for its reply: where the reply goes to and who waits for it.
pub(super) struct Waiter {
    pub(super) partition: i32,
    pub(super) tx: oneshot::Sender<Record>,
}

pub(super) type Pending = Mutex<HashMap<String, Waiter>>;

/// How long a request waits for this replica's first reply partition before it is refused.
pub(super) const START_WAIT: Duration = Duration::from_secs(5);

pub(super) struct Inner {
    pub(super) producer: Producer,
    pub(super) reply_topic: String,
    pub(super) pending: Pending,
    pub(super) routes: Arc<Routes>,
    pub(super) shutdown: Shutdown,
}

impl Inner {
    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes a pending entry. The gauge moves by one per entry (not `set`), so it stays right
    /// with several clients in one process.
    pub(super) fn take(&self, id: &str) -> Option<oneshot::Sender<Record>> {
        let taken = self.pending().remove(id);
        if taken.is_some() {
            metrics::gauge!("kafkube_rpc_pending").decrement(1.0);
        }
        taken.map(|w| w.tx)
    }

    /// Is any request still waiting for a reply on `partition`?
    pub(super) fn waits_on(&self, partition: i32) -> bool {
        self.pending().values().any(|w| w.partition == partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_robin_over_owned_partitions() {
        let routes = Routes::default();
        assert_eq!(routes.pick(), None);
        routes.update(|s| s.extend([4, 1]));
        let picks: Vec<_> = (0..4).filter_map(|_| routes.pick()).collect();
        assert_eq!(picks, vec![1, 4, 1, 4]);
        routes.update(|s| s.retain(|p| *p != 1));
        assert_eq!(routes.pick(), Some(4));
    }
}
