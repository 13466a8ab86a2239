//! Running blocking work (syscalls, C libraries) off the async workers, with a cap on how
//! many such calls run at once (Distribution's `maxthreads` regulator).

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// A brief call run in place that takes longer than this turns in-place running off.
const SLOW_BRIEF_CALL: Duration = Duration::from_millis(2);
/// For how long, after such a slow call, brief calls go to the blocking pool again.
const SLOW_COOLDOWN: Duration = Duration::from_secs(30);

/// Whether [`BlockingPool::run_brief`] may run in place on this thread's current-thread
/// runtime, and until when it must not (after a slow call).
#[derive(Clone, Copy)]
enum InPlace {
    Never,
    Allowed,
    PausedUntil(Instant),
}

thread_local! {
    static IN_PLACE: Cell<InPlace> = const { Cell::new(InPlace::Never) };
}

/// Lets [`BlockingPool::run_brief`] run brief calls in place, with no thread hand-off,
/// when this thread drives a current-thread runtime.
///
/// Meant for a process whose one runtime thread does nothing but serve storage requests
/// (`driver-ipc`'s child executables): there a hand-off to the blocking pool and back costs
/// two thread wake-ups, tens of microseconds on a small VM, for a syscall of a few. The
/// price is that other tasks on the thread wait while the call runs, so the thread guards
/// itself: a call that takes longer than 2 ms (a slow or network disk) sends brief calls
/// back to the pool for the next 30 s. Threads that never call this keep the hand-off.
///
/// ```
/// driver_api::blocking::allow_brief_calls_in_place();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let pool = driver_api::blocking::BlockingPool::new(4);
/// let n = rt.block_on(pool.run_brief(|| 40 + 2)).unwrap();
/// assert_eq!(n, 42);
/// ```
pub fn allow_brief_calls_in_place() {
    IN_PLACE.with(|c| c.set(InPlace::Allowed));
}

/// Whether a brief call may run in place on this thread now.
fn in_place_now() -> bool {
    IN_PLACE.with(|c| match c.get() {
        InPlace::Never => false,
        InPlace::Allowed => true,
        InPlace::PausedUntil(t) if Instant::now() >= t => {
            c.set(InPlace::Allowed);
            true
        }
        InPlace::PausedUntil(_) => false,
    })
}

/// Notes how long an in-place brief call took; a slow one pauses in-place running.
fn note_in_place(took: Duration) {
    if took > SLOW_BRIEF_CALL {
        tracing::debug!(
            took_us = took.as_micros() as u64,
            "a brief blocking call was slow; brief calls go to the blocking pool for {}s",
            SLOW_COOLDOWN.as_secs()
        );
        IN_PLACE.with(|c| c.set(InPlace::PausedUntil(Instant::now() + SLOW_COOLDOWN)));
    }
}

/// A bounded gateway to [`tokio::task::spawn_blocking`].
///
/// The limit applies per call, never across a stream the caller drives, so a slow consumer
/// cannot starve other operations.
#[derive(Debug, Clone)]
pub struct BlockingPool {
    permits: Arc<Semaphore>,
    limit: usize,
}

/// The blocking task panicked or the runtime is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("blocking task failed: {0}")]
pub struct BlockingError(String);

impl BlockingPool {
    /// A pool letting at most `limit` (at least 1) blocking calls run at once.
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// The concurrency limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Runs `f` on tokio's blocking thread pool once a slot is free.
    pub async fn run<F, T>(&self, f: F) -> Result<T, BlockingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| BlockingError(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|e| BlockingError(e.to_string()))
    }

    /// Runs a brief blocking call (a metadata syscall such as `readdir` or `stat`) without a
    /// thread hand-off where that is safe: on a multi-threaded runtime it runs in place under
    /// [`tokio::task::block_in_place`], which first moves this worker's other tasks to another
    /// thread, so nothing else waits for it; on a current-thread runtime whose thread
    /// opted in with [`allow_brief_calls_in_place`] it runs in place too; elsewhere it is
    /// [`BlockingPool::run`].
    pub async fn run_brief<F, T>(&self, f: F) -> Result<T, BlockingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        use tokio::runtime::RuntimeFlavor;
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        let multi_thread = match flavor {
            Ok(RuntimeFlavor::MultiThread) => true,
            Ok(RuntimeFlavor::CurrentThread) if in_place_now() => false,
            _ => return self.run(f).await,
        };
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| BlockingError(e.to_string()))?;
        if multi_thread {
            return Ok(tokio::task::block_in_place(f));
        }
        let start = Instant::now();
        let out = f();
        note_in_place(start.elapsed());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::{self, ThreadId};

    fn current_thread_rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    /// Runs `f` as a brief call from a fresh thread (thread-locals start clean), after
    /// `setup` on that thread; returns the runtime thread's id and the ids `f` ran on.
    fn on_fresh_thread(setup: fn(), calls: Vec<Duration>) -> (ThreadId, Vec<ThreadId>) {
        thread::spawn(move || {
            setup();
            let rt = current_thread_rt();
            let pool = BlockingPool::new(2);
            let ran = rt.block_on(async {
                let mut ran = Vec::new();
                for d in calls {
                    let id = pool
                        .run_brief(move || {
                            thread::sleep(d);
                            thread::current().id()
                        })
                        .await
                        .unwrap_or_else(|e| panic!("brief call: {e}"));
                    ran.push(id);
                }
                ran
            });
            (thread::current().id(), ran)
        })
        .join()
        .unwrap_or_else(|_| panic!("test thread panicked"))
    }

    #[test]
    fn current_thread_runtimes_hand_brief_calls_off_unless_allowed() {
        let (me, ran) = on_fresh_thread(|| {}, vec![Duration::ZERO; 3]);
        assert!(
            ran.iter().all(|t| *t != me),
            "ran in place without opting in"
        );
    }

    #[test]
    fn allowed_threads_run_brief_calls_in_place() {
        let (me, ran) = on_fresh_thread(allow_brief_calls_in_place, vec![Duration::ZERO; 3]);
        assert!(ran.iter().all(|t| *t == me), "handed off although allowed");
    }

    #[test]
    fn a_slow_brief_call_sends_the_next_ones_to_the_pool() {
        let calls = vec![
            Duration::ZERO,
            SLOW_BRIEF_CALL * 2,
            Duration::ZERO,
            Duration::ZERO,
        ];
        let (me, ran) = on_fresh_thread(allow_brief_calls_in_place, calls);
        assert_eq!(ran[0], me, "the first call runs in place");
        assert_eq!(ran[1], me, "the slow call itself ran in place");
        assert!(
            ran[2..].iter().all(|t| *t != me),
            "in place again right after a slow call"
        );
    }

    #[test]
    fn multi_thread_runtimes_run_brief_calls_in_place() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let pool = BlockingPool::new(2);
        let same = rt.block_on(async {
            tokio::spawn(async move {
                let me = thread::current().id();
                let ran = pool.run_brief(|| thread::current().id()).await;
                ran.map(|t| t == me)
            })
            .await
        });
        assert!(
            matches!(same, Ok(Ok(true))),
            "block_in_place runs on the calling worker"
        );
    }
}
