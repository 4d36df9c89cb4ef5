//! Live pings for `GET /monitor`, shared between the requests that arrive together.
//!
//! The contract answers every request with a ping sent "right now". One ping per request would
//! let clients multiply the worker's health traffic at will: 100 clients polling put 100 tasks
//! at a time next in the worker's queue, and each request waited behind the others'. Instead
//! one live ping is in flight at a time, and a request is answered by the first ping *sent
//! after it arrived*: the one about to be sent if there is one, else the one sent as soon as
//! the current one ends. Every answer is still live, a request waits at most two pings, and
//! whatever the number of clients the worker sees at most one request-driven ping at a time.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

type Slot<T> = watch::Sender<Option<Arc<T>>>;

/// One round of pings in flight at most, and the round the requests that came meanwhile await.
pub struct Shared<T> {
    state: Arc<Mutex<State<T>>>,
}

struct State<T> {
    running: bool,
    /// The next round: it is sent when the current one ends, for every request that joined it.
    next: Option<Slot<T>>,
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared {
            state: Arc::new(Mutex::new(State {
                running: false,
                next: None,
            })),
        }
    }
}

fn lock<T>(state: &Mutex<State<T>>) -> std::sync::MutexGuard<'_, State<T>> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Send + Sync + 'static> Shared<T> {
    /// The outcome of a round `round()` starts after this call: started at once if none is in
    /// flight, otherwise shared with every other caller waiting for the next. Rounds run in a
    /// task of their own, so a caller that goes away (a client hanging up) strands no one.
    pub async fn get<F, Fut>(&self, round: F) -> Arc<T>
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let mut rx = {
            let mut state = lock(&self.state);
            if state.running {
                state
                    .next
                    .get_or_insert_with(|| watch::channel(None).0)
                    .subscribe()
            } else {
                state.running = true;
                let (tx, rx) = watch::channel(None);
                tokio::spawn(rounds(self.state.clone(), tx, round.clone()));
                rx
            }
        };
        // An error: the rounds' task ended without this round (it panicked, or the runtime is
        // dropping it), so ping on our own.
        let shared = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|o| o.clone());
        match shared {
            Some(outcome) => outcome,
            None => Arc::new(round().await),
        }
    }
}

/// Runs rounds while requests keep joining the next one.
async fn rounds<T, F, Fut>(state: Arc<Mutex<State<T>>>, first: Slot<T>, round: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
{
    let mut guard = Reset {
        state: state.clone(),
        armed: true,
    };
    let mut slot = first;
    loop {
        slot.send_replace(Some(Arc::new(round().await)));
        let mut state = lock(&state);
        match state.next.take() {
            Some(next) => slot = next,
            None => {
                state.running = false;
                guard.armed = false;
                return;
            }
        }
    }
}

/// If the rounds end any other way (a round panicked, the runtime is dropping the task), the
/// next round's callers are let go (they ping on their own) and the next caller starts afresh,
/// rather than all waiting for a round that will never run.
struct Reset<T> {
    state: Arc<Mutex<State<T>>>,
    armed: bool,
}

impl<T> Drop for Reset<T> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = lock(&self.state);
            state.running = false;
            state.next = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::Shared;

    /// Callers that come while a round is in flight share the next round, which starts only
    /// after all of them came; a caller after that gets a round of its own.
    #[tokio::test]
    async fn callers_share_the_first_round_started_after_they_came() {
        let shared: Arc<Shared<usize>> = Arc::default();
        let started = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let round = {
            let (started, release) = (started.clone(), release.clone());
            move || {
                let (started, release) = (started.clone(), release.clone());
                async move {
                    let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                    release.notified().await;
                    n
                }
            }
        };
        let first = tokio::spawn({
            let (s, r) = (shared.clone(), round.clone());
            async move { *s.get(r).await }
        });
        while started.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // Round 1 is in flight: these five join round 2.
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let (s, r) = (shared.clone(), round.clone());
                tokio::spawn(async move { *s.get(r).await })
            })
            .collect();
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(started.load(Ordering::SeqCst), 1, "no round for them yet");
        release.notify_one();
        assert_eq!(first.await.unwrap(), 1);
        while started.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        for w in waiting {
            assert_eq!(w.await.unwrap(), 2, "all five got round 2");
        }
        assert_eq!(started.load(Ordering::SeqCst), 2, "one round for the five");
        // Nothing in flight now: the next caller starts round 3 at once.
        let later = tokio::spawn({
            let (s, r) = (shared.clone(), round.clone());
            async move { *s.get(r).await }
        });
        while started.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        let got = tokio::time::timeout(Duration::from_secs(10), later).await;
        assert_eq!(got.unwrap().unwrap(), 3);
    }

    /// A round that panics strands no one: its callers and the next round's ping on their own,
    /// and later callers get rounds again.
    #[tokio::test]
    async fn a_round_that_panics_strands_no_one() {
        let shared: Arc<Shared<usize>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let round = {
            let calls = calls.clone();
            move || {
                let calls = calls.clone();
                async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    // The first call is the shared round, and it fails.
                    assert!(n != 1, "round {n} fails");
                    n
                }
            }
        };
        let got = tokio::time::timeout(Duration::from_secs(10), shared.get(round.clone())).await;
        assert_eq!(*got.expect("answered"), 2, "pinged on its own");
        let got = tokio::time::timeout(Duration::from_secs(10), shared.get(round)).await;
        assert_eq!(*got.expect("answered"), 3, "a fresh round");
    }
}
