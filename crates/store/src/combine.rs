//! Writes of many callers committed together, without a task of their
//! own: each caller queues its item and waits for its answer or for the
//! leader's turn, whichever comes first; the caller that gets the turn
//! commits everything queued (its own item and those of the callers
//! still waiting) in one transaction and answers each. On SQLite, where
//! one writer commits at a time, thirty deployments moving at once cost
//! one writer's turn and two trips instead of thirty of each.
//!
//! A leader cancelled half-way (its task aborted at shutdown) drops the
//! answers it held: those callers get `Dropped` and may try again (the
//! transaction was rolled back, or it committed and a retry finds the
//! row moved on).

use std::sync::Mutex;

use tokio::sync::oneshot;

/// Items committed together at most; the rest wait for the next group.
const GROUP: usize = 64;

pub(crate) struct Combine<T, R> {
    queue: Mutex<Vec<(T, oneshot::Sender<R>)>>,
    turn: tokio::sync::Mutex<()>,
}

impl<T, R> Default for Combine<T, R> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

/// The leader that held a caller's item went away without answering.
#[derive(Debug)]
pub(crate) struct Dropped;

impl Dropped {
    /// The store's error for `what` whose group was cancelled: the caller
    /// may try again.
    pub(crate) fn error(self, what: &str) -> crate::StoreError {
        crate::StoreError::Unavailable(sqlx::Error::Protocol(format!(
            "the commit of {what}'s group was cancelled"
        )))
    }
}

impl<T, R> Combine<T, R> {
    /// Queues `item` and waits until it is committed, leading a group when
    /// the turn comes first: `commit` gets the queued items (the first
    /// `GROUP` of them), in the order they were queued, and returns one
    /// answer for each.
    pub(crate) async fn run<F, Fut>(&self, item: T, commit: F) -> Result<R, Dropped>
    where
        F: Fn(Vec<T>) -> Fut,
        Fut: std::future::Future<Output = Vec<R>>,
    {
        let (tx, mut answer) = oneshot::channel();
        self.lock().push((item, tx));
        loop {
            tokio::select! {
                biased;
                answered = &mut answer => return answered.map_err(|_| Dropped),
                turn = self.turn.lock() => {
                    let group: Vec<_> = {
                        let mut queue = self.lock();
                        let n = queue.len().min(GROUP);
                        queue.drain(..n).collect()
                    };
                    if group.is_empty() {
                        // Committed by a leader before: answered.
                        drop(turn);
                        continue;
                    }
                    let (items, answers): (Vec<T>, Vec<_>) = group.into_iter().unzip();
                    // Boxed: a caller's future holds the commit's state
                    // only while it leads. Inline, every follower (a
                    // storm queues thousands) carried the room for it,
                    // kilobytes each.
                    let results = Box::pin(commit(items)).await;
                    for (answer, result) in answers.into_iter().zip(results) {
                        let _ = answer.send(result);
                    }
                    drop(turn);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(T, oneshot::Sender<R>)>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_caller_gets_its_own_answer_and_groups_form() {
        let combine: Arc<Combine<u32, u32>> = Arc::default();
        let commits = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200u32 {
            let combine = combine.clone();
            let commits = commits.clone();
            tasks.spawn(async move {
                let got = combine
                    .run(i, |items| {
                        let commits = commits.clone();
                        async move {
                            commits.fetch_add(1, Ordering::Relaxed);
                            // A commit takes a while: others queue meanwhile.
                            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                            items.into_iter().map(|x| x * 10).collect()
                        }
                    })
                    .await
                    .unwrap();
                assert_eq!(got, i * 10);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let commits = commits.load(Ordering::Relaxed);
        assert!(
            commits < 200,
            "{commits} commits for 200 items: no group formed"
        );
    }

    #[tokio::test]
    async fn a_cancelled_leader_leaves_its_followers_an_error_not_a_hang() {
        let combine: Arc<Combine<u32, u32>> = Arc::default();
        // Both queue while the turn is held; the first to get it leads
        // both and never finishes.
        let held = combine.turn.lock().await;
        let spawn = |item: u32| {
            let combine = combine.clone();
            tokio::spawn(async move {
                combine
                    .run(item, |_| std::future::pending::<Vec<u32>>())
                    .await
            })
        };
        let leader = spawn(1);
        tokio::task::yield_now().await;
        let follower = spawn(2);
        tokio::task::yield_now().await;
        assert_eq!(combine.lock().len(), 2);
        drop(held);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(combine.lock().is_empty(), "the leader took both");
        leader.abort();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), follower)
            .await
            .expect("the follower is answered")
            .unwrap();
        assert!(matches!(got, Err(Dropped)), "{got:?}");
    }
}
