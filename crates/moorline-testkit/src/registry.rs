//! The registry of open connections every server of the test kit keeps, so that tests can
//! close, reset or freeze connections from outside their tasks, count them and wait for
//! changes: one entry per connection task, removed when the task ends or is aborted.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::sync::lock;

/// Open connections by id (`E`: what a server keeps per connection, at least the task's
/// [`AbortHandle`]), and a notifier for "something changed" (here or in the server's counters).
pub(crate) struct Registry<K, E> {
    next_id: AtomicU64,
    entries: Mutex<HashMap<K, E>>,
    changed: Notify,
}

impl<K, E> Registry<K, E>
where
    K: Copy + Eq + Hash + Send + 'static,
    E: Send + 'static,
{
    /// An empty registry; ids start at 1.
    pub(crate) fn new() -> Self {
        Self { next_id: AtomicU64::new(1), entries: Mutex::new(HashMap::new()), changed: Notify::new() }
    }

    /// A fresh id (never reused by this registry).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// The entries, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<K, E>> {
        lock(&self.entries)
    }

    /// Spawns `task` for connection `id` and registers `entry(its abort handle)`.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        id: K,
        task: impl Future<Output = ()> + Send + 'static,
        entry: impl FnOnce(AbortHandle) -> E,
    ) {
        let mut entries = self.lock();
        self.spawn_locked(&mut entries, id, task, entry);
        drop(entries);
        self.notify();
    }

    /// [`spawn`](Self::spawn) with the entries already locked (by [`lock`](Self::lock)), for
    /// callers that decide under the same lock; notifies nobody.
    pub(crate) fn spawn_locked(
        self: &Arc<Self>,
        entries: &mut HashMap<K, E>,
        id: K,
        task: impl Future<Output = ()> + Send + 'static,
        entry: impl FnOnce(AbortHandle) -> E,
    ) {
        // The lock is held across spawn and insert, so the task's guard cannot try to
        // deregister before the entry exists.
        let guard = Deregister { registry: Arc::clone(self), id };
        let handle = tokio::spawn(async move {
            let _guard = guard;
            task.await;
        });
        entries.insert(id, entry(handle.abort_handle()));
    }

    /// Removes connection `id`'s entry (its task is not aborted).
    pub(crate) fn remove(&self, id: K) -> Option<E> {
        self.lock().remove(&id)
    }

    /// Removes every entry (their tasks are not aborted).
    pub(crate) fn take_all(&self) -> Vec<E> {
        self.lock().drain().map(|(_, e)| e).collect()
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Wakes every [`wait_until`](Self::wait_until).
    pub(crate) fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Waits until `cond` holds (checked now and after each [`notify`](Self::notify)) or
    /// `timeout` elapses; returns the final value of `cond`.
    pub(crate) async fn wait_until(&self, timeout: Duration, cond: impl Fn() -> bool) -> bool {
        // A timeout too long to add ("forever") waits without a deadline.
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond() {
                return true;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return cond();
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// Removes a connection's entry when its task ends (or is aborted).
struct Deregister<K: Copy + Eq + Hash, E> {
    registry: Arc<Registry<K, E>>,
    id: K,
}

impl<K: Copy + Eq + Hash, E> Drop for Deregister<K, E> {
    fn drop(&mut self) {
        let removed = lock(&self.registry.entries).remove(&self.id);
        drop(removed);
        self.registry.changed.notify_waiters();
    }
}
