//! Checks driver-specific tests share: walk order and the walk options, on a tree the test
//! built (object-store drivers prove their one-pass walk with these), and how a driver
//! fails when its backend is down.

use std::future::Future;
use std::time::{Duration, Instant};

use driver_api::{Driver, FileInfo, StorageError, WalkControl, WalkOptions};

/// A local TCP port nothing listens on (bound, then let go), for a backend that is down.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Runs `op` (creating a driver, or an operation of one) against a backend that is down
/// and returns its error, after asserting that it came within `within`, says it may be
/// retried, and names `driver`.
///
/// ```no_run
/// # async fn f() {
/// use std::time::Duration;
/// use driver_api::{factory, Parameters};
/// let port = driver_testsuite::checks::closed_port();
/// let params = Parameters::new().with("endpoint", format!("http://127.0.0.1:{port}"));
/// let d = factory::create("gcs", params.with("bucket", "b").with("anonymous", true))
///     .await
///     .unwrap();
/// let e = driver_testsuite::checks::down_backend_error("gcs", Duration::from_secs(20), d.stat("/x")).await;
/// assert!(e.to_string().contains("cannot connect"));
/// # }
/// ```
pub async fn down_backend_error<T>(
    driver: &str,
    within: Duration,
    op: impl Future<Output = Result<T, StorageError>>,
) -> StorageError {
    let started = Instant::now();
    let e = match tokio::time::timeout(within, op).await {
        Ok(Ok(_)) => panic!("{driver}: succeeded with its backend down"),
        Ok(Err(e)) => e,
        Err(_) => panic!("{driver}: still waiting after {within:?} with its backend down"),
    };
    assert!(e.is_retryable(), "{driver}: not retryable: {e:?}");
    assert!(e.to_string().starts_with(&format!("{driver}: ")), "{e}");
    eprintln!(
        "{driver}, backend down: {e} (after {:?})",
        started.elapsed()
    );
    e
}

/// Asserts that `walked` came in the walk's component order.
pub fn assert_walk_order(walked: &[FileInfo]) {
    let got: Vec<&str> = walked.iter().map(|f| f.path.as_str()).collect();
    let mut sorted = got.clone();
    sorted.sort_by(|a, b| driver_api::cmp_paths(a, b));
    assert_eq!(got, sorted, "walk order is component order");
}

/// Walks `root` from the start-after `hint`, answering SkipDir for the directory `skip`;
/// returns the paths reported, in order.
pub async fn walk_after_skipping(d: &Driver, root: &str, hint: &str, skip: &str) -> Vec<String> {
    let hint = d.path(hint).expect("a valid hint path");
    let mut seen = Vec::new();
    d.walk(root, &WalkOptions::start_after(hint), |fi| {
        seen.push(fi.path.as_str().to_owned());
        if fi.is_dir && fi.path.as_str() == skip {
            WalkControl::SkipDir
        } else {
            WalkControl::Continue
        }
    })
    .await
    .expect("walk");
    seen
}
