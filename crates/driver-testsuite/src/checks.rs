//! Checks driver-specific tests share: walk order and the walk options, on a tree the test
//! built (object-store drivers prove their one-pass walk with these), an upload resumed by
//! another instance, once or three times, at sizes the driver's tests choose (to cross its
//! own part, block or segment boundaries), and how a driver fails when its backend is down.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use driver_api::{Driver, FileInfo, StorageError, WalkControl, WalkOptions};

/// An upload of `first` bytes through `a`, closed, then resumed by `b` (another instance
/// on the same root) with `second` more, and committed. Asserts what every resumable
/// backend owes: the writer's size at each step; nothing visible before the commit (not
/// to `stat`, not in its directory's listing); the exact content and size after it; and
/// committed, non-empty content refusing to be appended to. Returns the bytes written.
pub async fn resume_from_new_instance(
    a: &Driver,
    b: &Driver,
    path: &str,
    first: usize,
    second: usize,
) -> Bytes {
    let data = crate::data::DataGen::random().bytes(first + second);
    let mut w = a.writer(path, false).await.expect("writer");
    w.write(data.slice(..first)).await.expect("write");
    assert_eq!(w.size(), first as u64, "size after the first write");
    w.close().await.expect("close");

    let e = a
        .stat(path)
        .await
        .map(drop)
        .expect_err("stat before commit");
    assert!(e.is_not_found(), "before commit: {e:?}");
    let parent = match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((p, _)) => p,
    };
    match a.list(parent).await {
        Ok(children) => assert!(
            children.iter().all(|c| c.as_str() != path),
            "listed before commit: {children:?}"
        ),
        Err(e) => assert!(e.is_not_found(), "listing {parent}: {e:?}"),
    }

    let mut w = b.writer(path, true).await.expect("resumed writer");
    assert_eq!(w.size(), first as u64, "resumed size");
    w.write(data.slice(first..))
        .await
        .expect("write after resume");
    assert_eq!(w.size(), data.len() as u64, "size after resume");
    w.commit().await.expect("commit");
    let got = b.get_content(path).await.expect("get_content");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "content after resume");
    assert_eq!(b.stat(path).await.expect("stat").size, data.len() as u64);
    if !data.is_empty() {
        let e = b.writer(path, true).await.map(drop).expect_err("append");
        assert!(
            matches!(e, StorageError::Unsupported { .. }),
            "appending to committed content: {e:?}"
        );
    }
    data
}

/// An upload closed with nothing written, then resumed and closed twice more, each time
/// by a new instance from `instance` (all on one root), then committed by a fourth:
/// `part` + 99 bytes, so the second resume starts mid-part and crosses a part boundary
/// when `part` is the driver's part, block or segment size. Asserts the writer's size at
/// each resume and the committed content; returns the instance that committed.
///
/// ```no_run
/// # async fn demo() {
/// let root = "resume-twice".to_owned();
/// let instance = || async {
///     driver_api::factory::create("inmemory", driver_api::Parameters::new()).await.unwrap()
/// };
/// let d = driver_testsuite::checks::resume_twice(instance, "/e", 5 << 20).await;
/// d.delete("/e").await.unwrap();
/// # }
/// ```
pub async fn resume_twice<F, Fut>(instance: F, path: &str, part: usize) -> Driver
where
    F: Fn() -> Fut,
    Fut: Future<Output = Driver>,
{
    let data = crate::data::DataGen::random().bytes(part + 99);
    let mut w = instance().await.writer(path, false).await.expect("writer");
    w.close().await.expect("close with nothing written");
    for (resume, at, more) in [
        ("first resume", 0, data.slice(..100)),
        ("second resume", 100, data.slice(100..)),
    ] {
        let mut w = instance().await.writer(path, true).await.expect(resume);
        assert_eq!(w.size(), at, "size at the {resume}");
        w.write(more).await.expect("write after a resume");
        w.close().await.expect("close");
    }
    let d = instance().await;
    let mut w = d.writer(path, true).await.expect("third resume");
    assert_eq!(w.size(), data.len() as u64, "size at the third resume");
    w.commit().await.expect("commit");
    let got = d.get_content(path).await.expect("get_content");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "content after three resumes");
    d
}

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

/// A tree delete across listing pages: `n` files below `<root>/d` (more than a page when
/// the driver's page is lowered, e.g. `ObjectStore::with_page_size`) and siblings that
/// share the name prefix (`<root>/dd`, `<root>/d-x/f`). After `delete(<root>/d)`, `fresh`
/// (another instance, so nothing is answered from the deleting one's state) must find
/// every file below it gone and both siblings intact, and a second delete must be
/// `PathNotFound`.
pub async fn tree_delete_across_pages(d: &Driver, fresh: &Driver, root: &str, n: usize) {
    use futures::StreamExt;
    let dir = format!("{root}/d");
    futures::stream::iter(0..n)
        .map(|i| {
            let p = format!("{dir}/{}/{i:05}", i % 3);
            async move { d.put_content(&p, Bytes::from(vec![b'x'; i % 7])).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .expect("write the tree");
    d.put_content(&format!("{root}/dd"), "sibling")
        .await
        .expect("sibling");
    d.put_content(&format!("{root}/d-x/f"), "other")
        .await
        .expect("prefix sibling");
    let walked = fresh.walk_collect(&dir).await.expect("walk before delete");
    assert_eq!(
        walked.iter().filter(|i| !i.is_dir).count(),
        n,
        "files written"
    );

    d.delete(&dir).await.expect("delete the tree");

    let e = fresh
        .walk_collect(&dir)
        .await
        .expect_err("walk after delete");
    assert!(e.is_not_found(), "walk after delete: {e:?}");
    let left: Vec<String> = fresh
        .walk_collect(root)
        .await
        .expect("walk the root")
        .into_iter()
        .filter(|i| !i.is_dir)
        .map(|i| i.path.to_string())
        .collect();
    assert_eq!(
        left,
        [format!("{root}/d-x/f"), format!("{root}/dd")],
        "only the siblings are left"
    );
    assert_eq!(
        fresh
            .get_content(&format!("{root}/dd"))
            .await
            .expect("sibling"),
        "sibling"
    );
    let e = d.delete(&dir).await.expect_err("delete again");
    assert!(e.is_not_found(), "second delete: {e:?}");
}
