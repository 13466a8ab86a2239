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
//! Benchmarks mirroring Distribution's live in [`bench`](mod@bench).

// A failing assertion is how a case fails: panics are this crate's job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bench;
pub mod cases;
pub mod checks;
pub mod data;
pub mod faults;
pub mod proxy;
pub mod quickbench;

/// A plain HTTP client for fetching redirect URLs in tests (no driver code involved).
///
/// Where the workspace builds `reqwest` without a bundled TLS provider (the REST drivers
/// bring rustls on `ring`), this installs `ring` as the process default first, unless a
/// provider is already installed.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

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
    /// Bytes of the large files in `move_large_file`, `overwrite_and_move_onto_large` and
    /// `walk_sizes_and_times_match_stat`: above the part, segment and multipart-copy
    /// thresholds a driver's harness sets (12 MiB by default; a harness lowers its
    /// driver's thresholds below it, as s3's sets `multipartcopythresholdsize` to 5 MiB).
    pub large_object: usize,
}

impl Sizes {
    /// Distribution's full sizes (`DRIVER_TESTSUITE_FULL=1`, `storagectl check --full`),
    /// and 64 MiB large files (above every default part and copy threshold).
    pub fn full() -> Self {
        Sizes {
            large_stream: 5 << 30,
            concurrent_read_file: 128 << 20,
            concurrent_streams: 32,
            concurrent_stream_size: 32 << 20,
            large_object: 64 << 20,
        }
    }

    /// From `DRIVER_TESTSUITE_FULL`, `DRIVER_TESTSUITE_LARGE_STREAM_MIB` and
    /// `DRIVER_TESTSUITE_LARGE_OBJECT_MIB`.
    pub fn from_env() -> Self {
        let full = std::env::var("DRIVER_TESTSUITE_FULL").is_ok_and(|v| v == "1" || v == "true");
        let mut s = if full {
            Sizes::full()
        } else {
            Sizes {
                large_stream: 256 << 20,
                concurrent_read_file: 32 << 20,
                concurrent_streams: 8,
                concurrent_stream_size: 12 << 20,
                large_object: 12 << 20,
            }
        };
        if let Some(mib) = std::env::var("DRIVER_TESTSUITE_LARGE_STREAM_MIB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            s.large_stream = mib << 20;
        }
        if let Some(mib) = std::env::var("DRIVER_TESTSUITE_LARGE_OBJECT_MIB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            s.large_object = mib << 20;
        }
        s
    }
}

/// The per-case timeout: `DRIVER_TESTSUITE_CASE_TIMEOUT_SECS`, default 600 s.
pub fn case_timeout() -> Duration {
    Duration::from_secs(
        std::env::var("DRIVER_TESTSUITE_CASE_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    )
}

/// Records that the plain test `test` of `driver`'s crate skips, and why.
///
/// Call it just before returning early from a test that cannot run here (a variable
/// not set, a setup only the local emulator has). It prints `SKIP driver::test: reason`
/// and, under `cargo xtask test-all` (`DRIVER_TESTSUITE_SKIP_LOG`), appends a line to
/// the skip log, so the test counts as skipped, with its reason, not as passed.
/// Conformance cases do this through [`Ctx::skip`].
///
/// ```
/// // tests/mydriver.rs, a `#[test]`:
/// fn needs_a_key() {
///     let Ok(key) = std::env::var("MY_DRIVER_KEY") else {
///         driver_testsuite::skip_test("mydriver", "needs_a_key", "MY_DRIVER_KEY is not set");
///         return;
///     };
///     // … the test proper, with `key`
/// #   let _ = key;
/// }
/// ```
pub fn skip_test(driver: &str, test: &str, reason: &str) {
    record_skip(driver, test, reason);
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

/// One conformance case, for running the suite outside `cargo test` (see [`all_cases`]).
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name (its function in [`cases`]).
    pub name: &'static str,
    run: fn(Ctx) -> BoxFuture<'static, CaseResult>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

impl Case {
    #[doc(hidden)]
    pub const fn __new(name: &'static str, run: fn(Ctx) -> BoxFuture<'static, CaseResult>) -> Self {
        Self { name, run }
    }
}

/// Every case of the suite, in the order `conformance_tests!` declares them: for tools that
/// run the suite against a configured backend (`storagectl check`) with [`run_case_async`].
pub fn all_cases() -> Vec<Case> {
    let mut v = Vec::new();
    __for_each_case!(__push_case, v);
    v
}

#[doc(hidden)]
#[macro_export]
macro_rules! __push_case {
    ($v:expr, $case:ident) => {
        $v.push($crate::Case::__new(stringify!($case), |ctx| {
            ::std::boxed::Box::pin($crate::cases::$case(ctx))
        }));
    };
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// The driver opted out; the reason.
    Skipped(String),
    /// A check or a driver call failed; the message.
    Failed(String),
}

/// One case's result, from [`run_case_async`].
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case's name.
    pub name: &'static str,
    /// The driver's name (empty if it could not be created).
    pub driver: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time, including creating the driver and cleaning up.
    pub elapsed: Duration,
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "panicked".to_owned()
    }
}

/// Runs `case` against a driver built by `factory` at a fresh random root (the token
/// passed to `factory`), with the given sizes and timeout, then removes what the case
/// left behind. Never panics: a failed assertion becomes [`Outcome::Failed`] (the panic
/// hook still runs; install a quiet one to keep the terminal clean).
pub async fn run_case_async(
    case: Case,
    factory: Arc<DriverFactoryFn>,
    sizes: Sizes,
    timeout: Duration,
) -> CaseReport {
    let started = std::time::Instant::now();
    let root = format!("{}-{}", case.name.replace('_', "-"), data::random_name(12));
    let mut driver_name = String::new();
    let outcome = match factory(root.clone()).await {
        Err(e) => Outcome::Failed(format!("creating the driver failed: {e}")),
        Ok(driver) => {
            driver_name = driver.name().to_owned();
            let ctx = Ctx {
                driver: driver.clone(),
                root,
                factory,
                sizes,
            };
            let res =
                tokio::time::timeout(timeout, AssertUnwindSafe((case.run)(ctx)).catch_unwind())
                    .await;
            cleanup(&driver).await;
            match res {
                Err(_) => Outcome::Failed(format!("timed out after {timeout:?}")),
                Ok(Err(panic)) => Outcome::Failed(panic_message(&*panic)),
                Ok(Ok(Ok(()))) => Outcome::Passed,
                Ok(Ok(Err(CaseError::Skipped(reason)))) => Outcome::Skipped(reason),
                Ok(Ok(Err(CaseError::Failed(e)))) => Outcome::Failed(e.to_string()),
            }
        }
    };
    CaseReport {
        name: case.name,
        driver: driver_name,
        outcome,
        elapsed: started.elapsed(),
    }
}

/// The runtime the suite's cases, the drivers' own tests and the benchmarks run on:
/// multi-threaded with two workers (CI's machine has two cores), I/O and timers enabled.
///
/// ```
/// let rt = driver_testsuite::runtime();
/// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
/// ```
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// Runs one case on a runtime of its own (see [`run_case_async`]) and panics, failing the
/// test, if it failed; a skip is printed and logged. Called by [`conformance_tests!`].
pub fn run_case<F, Fut>(case: Case, factory: F)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Driver, StorageError>> + Send + 'static,
{
    let rt = runtime();
    let factory: Arc<DriverFactoryFn> = Arc::new(move |root| Box::pin(factory(root)));
    let report = rt.block_on(run_case_async(
        case,
        factory,
        Sizes::from_env(),
        case_timeout(),
    ));
    match report.outcome {
        Outcome::Passed => {}
        Outcome::Skipped(reason) => record_skip(&report.driver, case.name, &reason),
        Outcome::Failed(message) => panic!("{}: {message}", case.name),
    }
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
            $crate::run_case(
                $crate::Case::__new(stringify!($case), |ctx| {
                    ::std::boxed::Box::pin($crate::cases::$case(ctx))
                }),
                $factory,
            );
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
            writer_cancel_after_failed_commit,
            resume_from_new_instance, resume_twice_from_new_instances, cancel_leaves_nothing,
            uncommitted_upload_invisible, uploads_listed_and_purged,
            append_to_missing_path, append_to_committed_content, errors_name_driver,
            implicit_directories, files_and_directories_not_confused,
            concurrent_put_content_never_torn, cancellation_safety,
            async_adapters, list_root_of_fresh_driver, list_many_files, same_name_nesting,
            move_large_file, overwrite_and_move_onto_large, walk_sizes_and_times_match_stat
        );
    };
    (@list $cb:path, $arg:expr; $($case:ident),* $(,)?) => {
        $( $cb!($arg, $case); )*
    };
}
