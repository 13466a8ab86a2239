//! The conformance suite every storage driver runs, and the shared benchmarks.
//!
//! A driver crate adds this crate as a dev-dependency and writes one line in a test file:
//!
//! ```text
//! // tests/conformance.rs
//! driver_testsuite::conformance_tests!(|root: String| async move {
//!     // Build a driver whose whole namespace lives under `root` (a fresh, unique name per
//!     // case), e.g. a temporary directory or a key prefix.
//!     my_driver::MyDriver::for_tests(&root).await
//! });
//! ```
//!
//! The macro expands to one `#[test]` per case (`cargo test` names each failing case). Each
//! case runs on its own multi-threaded tokio runtime, against its own driver rooted at its
//! own random prefix, so cases run in parallel on one backend, and it deletes what it wrote
//! when done. The constructor may be called more than once per case with the same `root`
//! (to check that a second instance sees the first one's uploads).
//!
//! The cases cover Distribution's `testsuites.go` and `walk_test.go` and our additions; see
//! [`cases`] and `docs/architecture.md`. A case a driver cannot run (per its
//! [`Capabilities`](driver_api::Capabilities)) passes with a printed `SKIP` line and, when
//! `DRIVER_TESTSUITE_SKIP_LOG` names a file, a line appended there.
//!
//! Sizes: by default the heaviest cases use sizes that still cross every chunk and part
//! boundary (large stream 256 MiB); `DRIVER_TESTSUITE_FULL=1` switches to Distribution's
//! full sizes (5 GiB large stream, 128 MiB concurrent reads, 32 × 32 MiB streams).
//!
//! Benchmarks mirroring Distribution's live in [`bench`].

// A failing assertion is how a case fails: panics are this crate's job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bench;
pub mod cases;
pub mod data;

use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use driver_api::{Driver, StorageError};
use futures::future::BoxFuture;
use futures::FutureExt;

/// Re-exported for the macro's expansion.
#[doc(hidden)]
pub use driver_api as __api;

/// The constructor of the driver under test: a fresh driver rooted at the given token.
pub type DriverFactoryFn =
    dyn Fn(String) -> BoxFuture<'static, Result<Driver, StorageError>> + Send + Sync;

/// Why a case did not pass.
#[derive(Debug)]
pub enum CaseError {
    /// The driver opted out of what the case checks; the reason is printed.
    Skipped(String),
    /// A driver call failed where it should not have.
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for CaseError {
    fn from(e: E) -> Self {
        CaseError::Failed(Box::new(e))
    }
}

/// What a case returns.
pub type CaseResult = Result<(), CaseError>;

/// Everything a case gets: the driver under test and a way to make another instance.
#[derive(Clone)]
pub struct Ctx {
    /// The driver under test, rooted at this case's own prefix.
    pub driver: Driver,
    root: String,
    factory: Arc<DriverFactoryFn>,
    /// Sizes for the heavy cases.
    pub sizes: Sizes,
}

impl Ctx {
    /// A second, independent driver instance on the same root.
    pub async fn new_instance(&self) -> Result<Driver, StorageError> {
        (self.factory)(self.root.clone()).await
    }

    /// The driver's name.
    pub fn name(&self) -> &str {
        self.driver.name()
    }

    /// Ends the case as skipped, with `reason`.
    pub fn skip(&self, reason: impl Into<String>) -> CaseResult {
        Err(CaseError::Skipped(reason.into()))
    }
}

/// Sizes of the heavy cases (see the crate docs).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Bytes in `write_read_large_streams`.
    pub large_stream: u64,
    /// Bytes of the file in `concurrent_stream_reads`.
    pub concurrent_read_file: usize,
    /// Number of streams in `concurrent_file_streams`.
    pub concurrent_streams: usize,
    /// Bytes per stream in `concurrent_file_streams`.
    pub concurrent_stream_size: usize,
}

impl Sizes {
    /// From `DRIVER_TESTSUITE_FULL` and `DRIVER_TESTSUITE_LARGE_STREAM_MIB`.
    pub fn from_env() -> Self {
        let full = std::env::var("DRIVER_TESTSUITE_FULL").is_ok_and(|v| v == "1" || v == "true");
        let mut s = if full {
            Sizes {
                large_stream: 5 << 30,
                concurrent_read_file: 128 << 20,
                concurrent_streams: 32,
                concurrent_stream_size: 32 << 20,
            }
        } else {
            Sizes {
                large_stream: 256 << 20,
                concurrent_read_file: 32 << 20,
                concurrent_streams: 8,
                concurrent_stream_size: 12 << 20,
            }
        };
        if let Some(mib) = std::env::var("DRIVER_TESTSUITE_LARGE_STREAM_MIB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            s.large_stream = mib << 20;
        }
        s
    }
}

fn case_timeout() -> Duration {
    Duration::from_secs(
        std::env::var("DRIVER_TESTSUITE_CASE_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    )
}

fn record_skip(driver: &str, case: &str, reason: &str) {
    eprintln!("SKIP {driver}::{case}: {reason}");
    if let Ok(path) = std::env::var("DRIVER_TESTSUITE_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{driver}\t{case}\t{reason}");
        }
    }
}

/// Removes everything below the driver's root (best effort).
async fn cleanup(driver: &Driver) {
    if let Ok(children) = driver.list("/").await {
        for c in children {
            let _ = driver.delete(c.as_str()).await;
        }
    }
}

/// Runs one case: builds a runtime and a driver at a fresh root, runs `case`, cleans up,
/// and panics (failing the test) if the case failed. Called by [`conformance_tests!`].
pub fn run_case<F, Fut, C, CFut>(case_name: &str, factory: F, case: C)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Driver, StorageError>> + Send + 'static,
    C: FnOnce(Ctx) -> CFut,
    CFut: Future<Output = CaseResult> + Send,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime");
    let factory: Arc<DriverFactoryFn> = Arc::new(move |root| Box::pin(factory(root)));
    rt.block_on(async move {
        let root = format!("{}-{}", case_name.replace('_', "-"), data::random_name(12));
        let driver = factory(root.clone())
            .await
            .unwrap_or_else(|e| panic!("{case_name}: creating the driver failed: {e}"));
        let ctx = Ctx {
            driver: driver.clone(),
            root,
            factory,
            sizes: Sizes::from_env(),
        };
        let outcome =
            tokio::time::timeout(case_timeout(), AssertUnwindSafe(case(ctx)).catch_unwind()).await;
        cleanup(&driver).await;
        match outcome {
            Err(_) => panic!("{case_name}: timed out after {:?}", case_timeout()),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(CaseError::Skipped(reason)))) => {
                record_skip(driver.name(), case_name, &reason)
            }
            Ok(Ok(Err(CaseError::Failed(e)))) => panic!("{case_name}: {e}"),
        }
    });
}

/// Expands to one `#[test]` per conformance case for the driver built by `$factory`, an
/// expression of type `Fn(String) -> impl Future<Output = Result<Driver, StorageError>>`
/// (cloneable, `Send + Sync + 'static`). See the crate docs.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__for_each_case!($crate::__conformance_case, $factory);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case {
    ($factory:expr, $case:ident) => {
        #[test]
        fn $case() {
            $crate::run_case(stringify!($case), $factory, $crate::cases::$case);
        }
    };
}

/// Invokes `$cb!($arg, case)` for every case in [`cases`], in one place so the list
/// cannot drift.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_case {
    ($cb:path, $arg:expr) => {
        $crate::__for_each_case!(@list $cb, $arg;
            // Distribution's testsuites.go
            root_exists, valid_paths, invalid_paths,
            write_read1, write_read2, write_read3, write_read4, write_read_non_utf8,
            truncate, read_nonexistent,
            write_read_streams1, write_read_streams2, write_read_streams3, write_read_streams4,
            write_read_streams_non_utf8, write_read_large_streams, reader_with_offset,
            continue_stream_append_large, continue_stream_append_small, read_nonexistent_stream,
            write_zero_byte_stream_then_append, write_zero_byte_content_then_append,
            list, move_file, move_overwrite, move_nonexistent, move_invalid,
            delete, redirect_url, delete_nonexistent, delete_folder,
            delete_only_deletes_subpaths, stat_call, put_content_multiple_times,
            concurrent_stream_reads, concurrent_file_streams,
            // Distribution's walk_test.go
            walk_order, walk_skip_dir, walk_skip_dir_on_file, walk_stop,
            walk_start_after_hint, walk_start_after_hint_deep, walk_file_removed,
            walk_missing_root,
            // ours
            traversal_paths_rejected, root_rejected_for_file_ops,
            writer_misuse_after_commit, writer_misuse_after_cancel, writer_misuse_after_close,
            resume_from_new_instance, cancel_leaves_nothing, uncommitted_upload_invisible,
            append_to_missing_path, append_to_committed_content, errors_name_driver,
            implicit_directories, concurrent_put_content_never_torn, cancellation_safety,
            async_adapters, list_root_of_fresh_driver, list_many_files, same_name_nesting
        );
    };
    (@list $cb:path, $arg:expr; $($case:ident),* $(,)?) => {
        $( $cb!($arg, $case); )*
    };
}
