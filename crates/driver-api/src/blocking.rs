//! Running blocking work (syscalls, C libraries) off the async workers, with a cap on how
//! many such calls run at once (Distribution's `maxthreads` regulator).

use std::sync::Arc;

use tokio::sync::Semaphore;

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
    /// thread, so nothing else waits for it; on other runtimes it is [`BlockingPool::run`].
    pub async fn run_brief<F, T>(&self, f: F) -> Result<T, BlockingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread {
            return self.run(f).await;
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| BlockingError(e.to_string()))?;
        Ok(tokio::task::block_in_place(f))
    }
}
