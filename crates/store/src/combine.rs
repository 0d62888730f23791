//! Writes of many callers committed together, without a task of their
//! own: each caller queues its item and waits for its answer or for the
//! leader's turn, whichever comes first; the caller that gets the turn
//! commits everything queued (its own item and those of the callers
//! still waiting) in one transaction and answers each. On SQLite, where
//! one writer commits at a time, thirty deployments moving at once cost
//! one writer's turn and two trips instead of thirty of each.
//!
//! A steady stream of callers that each come alone (a light storm's
//! deployments, one transition each every few milliseconds) would still
//! cost a turn each, and on SQLite every turn is trips to the
//! connection's thread and back, wake-ups on both sides. So a combine may
//! linger (`Linger`): while items of different callers keep coming, a
//! leader with a small group waits `LINGER` for more before it commits.
//! One deployment's transitions, which come one after another, each
//! waiting for the commit before it, never wait.
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
    /// `None`: a leader commits what is queued at once (starts: an API
    /// client that posts one at a time would wait at every one).
    linger: Option<Lingering<T>>,
}

/// A combine's `Linger`, and what names an item's caller.
type Lingering<T> = (Mutex<Linger<i64>>, fn(&T) -> i64);

impl<T, R> Default for Combine<T, R> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
            linger: None,
        }
    }
}

impl<T, R> Combine<T, R> {
    /// A combine whose leaders wait a little for more while items of
    /// different callers keep coming (`Linger`); `caller` names an item's
    /// caller (a deployment's id).
    pub(crate) fn lingering(caller: fn(&T) -> i64) -> Self {
        Self {
            linger: Some((Mutex::new(Linger::default()), caller)),
            ..Self::default()
        }
    }
}

/// How long a leader waits for more items while a stream comes.
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);
/// A group committed less than this before the next item makes a stream.
const STREAM: std::time::Duration = std::time::Duration::from_millis(50);
/// Queued items that make a group worth committing without waiting.
const ENOUGH: usize = 16;

/// Whether the leader of a small group waits `LINGER` for more items
/// before it commits: when the group before it was committed less than
/// `STREAM` ago and came from other callers (it held more than one item,
/// or its caller was another). A caller whose items come one after
/// another, each after the commit of the one before (one deployment's
/// transitions), forms groups of its own and never waits; nor does an
/// item after a pause.
#[derive(Debug)]
pub struct Linger<K> {
    /// When the last group was taken, how many items it held, whose was
    /// its last one.
    last: Option<(tokio::time::Instant, usize, K)>,
}

impl<K> Default for Linger<K> {
    fn default() -> Self {
        Self { last: None }
    }
}

impl<K: PartialEq> Linger<K> {
    /// How long to wait, `queued` items being there now, the first of
    /// them `caller`'s.
    pub fn wait(
        &self,
        now: tokio::time::Instant,
        queued: usize,
        caller: &K,
    ) -> Option<std::time::Duration> {
        let (at, len, last) = self.last.as_ref()?;
        let stream = now.saturating_duration_since(*at) < STREAM
            && (*len > 1 || queued > 1 || last != caller);
        (stream && queued < ENOUGH).then_some(LINGER)
    }

    /// A group of `len` items, the last of them `caller`'s, is taken.
    pub fn took(&mut self, now: tokio::time::Instant, len: usize, caller: K) {
        self.last = Some((now, len, caller));
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
                    let (queued, first) = {
                        let queue = self.lock();
                        let first = queue.first().zip(self.linger.as_ref());
                        (queue.len(), first.map(|((item, _), (_, caller))| caller(item)))
                    };
                    if queued == 0 {
                        // Committed by a leader before: answered.
                        drop(turn);
                        continue;
                    }
                    if let (Some((linger, _)), Some(caller)) = (&self.linger, first) {
                        let wait = lock(linger).wait(tokio::time::Instant::now(), queued, &caller);
                        if let Some(wait) = wait {
                            tokio::time::sleep(wait).await;
                        }
                    }
                    let group: Vec<_> = {
                        let mut queue = self.lock();
                        let n = queue.len().min(GROUP);
                        queue.drain(..n).collect()
                    };
                    if let (Some((linger, caller)), Some((last, _))) = (&self.linger, group.last()) {
                        lock(linger).took(tokio::time::Instant::now(), group.len(), caller(last));
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
        lock(&self.queue)
    }
}

fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    #[test]
    fn a_leader_lingers_only_while_other_callers_keep_coming() {
        let t0 = tokio::time::Instant::now();
        let ms = std::time::Duration::from_millis;
        // (the group before: taken how long before, its size, its last
        // caller), queued now, the first queued item's caller -> waits
        let check = |before: Option<(u64, usize, i64)>, queued: usize, caller: i64| {
            let mut linger = Linger::default();
            if let Some((ago, len, last)) = before {
                linger.took(t0, len, last);
                linger.wait(t0 + ms(ago), queued, &caller).is_some()
            } else {
                linger.wait(t0, queued, &caller).is_some()
            }
        };
        let table = [
            (None, 1, 1, false, "nothing before"),
            (
                Some((5, 1, 1)),
                1,
                1,
                false,
                "one caller, one item after another",
            ),
            (
                Some((5, 1, 2)),
                1,
                1,
                true,
                "another caller's item just before",
            ),
            (Some((5, 3, 1)), 1, 1, true, "a group just before"),
            (Some((5, 1, 1)), 2, 1, true, "two queued already"),
            (Some((60, 3, 2)), 1, 1, false, "after a pause"),
            (Some((5, 3, 2)), ENOUGH, 1, false, "enough queued"),
        ];
        for (before, queued, caller, waits, why) in table {
            assert_eq!(check(before, queued, caller), waits, "{why}");
        }
    }

    /// `items`, each `(caller, when it comes in ms, or u64::MAX: after the
    /// answer to the one before)`, committed through `combine`: how many
    /// groups were committed, and the longest any caller waited for its
    /// answer (ms).
    async fn commits(combine: Combine<(i64, u64), i64>, items: &[(i64, u64)]) -> (usize, u128) {
        let combine = Arc::new(combine);
        let groups = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let mut waited = 0;
        let mut alone = 0;
        for &(caller, at) in items {
            let (combine, groups) = (combine.clone(), groups.clone());
            let run = async move {
                let came = tokio::time::Instant::now();
                let got = combine
                    .run((caller, at), |items| {
                        groups.fetch_add(1, Ordering::Relaxed);
                        async move {
                            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                            items.into_iter().map(|(c, _)| c).collect()
                        }
                    })
                    .await
                    .unwrap();
                assert_eq!(got, caller);
                came.elapsed().as_millis()
            };
            if at == u64::MAX {
                // One after another: each waits for the answer before.
                alone = alone.max(run.await);
            } else {
                tasks.spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(at)).await;
                    run.await
                });
            }
        }
        while let Some(done) = tasks.join_next().await {
            waited = waited.max(done.unwrap());
        }
        (groups.load(Ordering::Relaxed), waited.max(alone))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_of_callers_is_committed_in_groups_and_one_caller_never_waits() {
        // Twenty deployments, one item each, 5 ms apart.
        let stream: Vec<(i64, u64)> = (0..20).map(|i| (i, i as u64 * 5)).collect();
        let (groups, waited) = commits(Combine::lingering(|x: &(i64, u64)| x.0), &stream).await;
        assert!(groups <= 10, "{groups} groups for 20 items in a stream");
        assert!(waited <= 25, "an item waited {waited} ms");
        let (groups, _) = commits(Combine::default(), &stream).await;
        assert_eq!(groups, 20, "without lingering each item is its own group");
        // One deployment's items, each after the answer to the one before.
        let alone = [(7, u64::MAX); 5];
        let (groups, waited) = commits(Combine::lingering(|x: &(i64, u64)| x.0), &alone).await;
        assert_eq!(groups, 5);
        assert!(waited <= 1, "a lone caller waited {waited} ms");
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
