//! One lock per row id, shared by everything that acts on a row: the build and delete workers hold
//! it for a whole job, an upload for its "move files in + requeue" step, reconciliation while it
//! looks at or removes what belongs to the row. Reconciliation only ever *tries* it and skips a
//! busy row, so it never touches an object of a row that is being worked on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Held while acting on one row; dropping it releases the row.
pub type RowGuard = OwnedMutexGuard<()>;

#[derive(Default)]
pub struct RowLocks {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl RowLocks {
    fn lock_for(&self, id: &str) -> Arc<AsyncMutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = locks.get(id).and_then(Weak::upgrade) {
            return lock;
        }
        // Forget the entries nobody holds any more, so the map stays as small as the work in flight.
        locks.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(AsyncMutex::new(()));
        locks.insert(id.to_string(), Arc::downgrade(&lock));
        lock
    }

    /// The row's lock if nobody holds it now.
    pub fn try_lock(&self, id: &str) -> Option<RowGuard> {
        self.lock_for(id).try_lock_owned().ok()
    }

    /// The row's lock, waiting at most `wait`.
    pub async fn lock_within(&self, id: &str, wait: Duration) -> Option<RowGuard> {
        tokio::time::timeout(wait, self.lock_for(id).lock_owned()).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_row() {
        let locks = RowLocks::default();
        let a = locks.try_lock("a").unwrap();
        assert!(locks.try_lock("a").is_none());
        let b = locks.try_lock("b");
        assert!(b.is_some());
        assert!(locks.lock_within("a", Duration::from_millis(20)).await.is_none());
        drop(a);
        assert!(locks.lock_within("a", Duration::from_millis(20)).await.is_some());
    }
}
