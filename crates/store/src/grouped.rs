//! Reads of many keys made together: a look-up that finds another under
//! way waits for it, and the next read takes every key that waited
//! meanwhile in one query. Under a flood of requests (a rack of machines
//! the boot index has never seen, each asking DHCP) one query answers tens
//! of them, where each was a trip to the database of its own; alone, a
//! look-up reads at once, as before.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

pub(crate) struct Grouped<K, V> {
    waiting: Mutex<Vec<(K, oneshot::Sender<V>)>>,
    /// Held by the look-up reading for the group.
    reading: tokio::sync::Mutex<()>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(Vec::new()),
            reading: tokio::sync::Mutex::new(()),
        }
    }
}

impl<K: Clone, V> Grouped<K, V> {
    /// `key`'s value, read by `read` together with the keys waiting with
    /// it; `read` gives the values in its keys' order, or None when it
    /// failed. None: the group's read failed (or its task was dropped),
    /// and the caller reads alone.
    pub(crate) async fn get<F, Fut>(&self, key: K, read: F) -> Option<V>
    where
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = Option<Vec<V>>>,
    {
        let (sender, mut answer) = oneshot::channel();
        self.lock().push((key, sender));
        let _reading = self.reading.lock().await;
        match answer.try_recv() {
            Ok(value) => return Some(value),
            Err(TryRecvError::Closed) => return None,
            // Not taken by a read before: it is still waiting, with the
            // keys that came after it.
            Err(TryRecvError::Empty) => {}
        }
        let group = std::mem::take(&mut *self.lock());
        let keys = group.iter().map(|(k, _)| k.clone()).collect();
        if let Some(values) = read(keys).await {
            for ((_, sender), value) in group.into_iter().zip(values) {
                let _ = sender.send(value);
            }
        }
        answer.try_recv().ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(K, oneshot::Sender<V>)>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Look-ups that arrive while a read is under way are answered by the
    /// next read, all at once, each with its own key's value.
    #[tokio::test]
    async fn waiting_lookups_are_read_together() {
        let grouped: Arc<Grouped<u32, u32>> = Arc::default();
        let reads = Arc::new(AtomicUsize::new(0));
        let (release, held) = tokio::sync::watch::channel(false);
        let read = |reads: Arc<AtomicUsize>, mut held: tokio::sync::watch::Receiver<bool>| {
            move |keys: Vec<u32>| async move {
                reads.fetch_add(1, Ordering::SeqCst);
                let _ = held.wait_for(|go| *go).await;
                Some(keys.iter().map(|k| k * 10).collect())
            }
        };
        let first = {
            let (g, r, h) = (grouped.clone(), reads.clone(), held.clone());
            tokio::spawn(async move { g.get(1, read(r, h)).await })
        };
        while reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=20)
            .map(|k| {
                let (g, r, h) = (grouped.clone(), reads.clone(), held.clone());
                tokio::spawn(async move { g.get(k, read(r, h)).await })
            })
            .collect();
        while grouped.lock().len() < 19 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some(10));
        for (k, task) in (2..=20).zip(rest) {
            assert_eq!(task.await.unwrap(), Some(k * 10));
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "one read for the first, one for the rest"
        );
    }

    /// A read that fails leaves each of its keys to be read alone.
    #[tokio::test]
    async fn a_failed_read_answers_none() {
        let grouped: Grouped<u32, u32> = Grouped::default();
        assert_eq!(grouped.get(1, |_| async { None }).await, None);
        assert_eq!(
            grouped
                .get(2, |k| async move { Some(vec![k[0] + 1]) })
                .await,
            Some(3)
        );
    }
}
