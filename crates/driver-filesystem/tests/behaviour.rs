//! Filesystem-specific behaviour beyond the shared suite: confinement to the root,
//! parameters, and keeping blocking syscalls off the async workers.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use driver_api::{factory, Parameters, StorageError};
use driver_filesystem::FilesystemDriver;

fn files_outside(base: &std::path::Path, root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.starts_with(root) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn nothing_is_written_outside_the_root() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let d = driver_api::Driver::new(FilesystemDriver::new(&root, 25));
    // Valid but suspicious names stay inside; traversal is rejected before any I/O.
    for p in [
        "/...",
        "/d/.../...",
        "/..a",
        "/a..",
        "/-",
        "/.hidden/..x",
        "/_/./../x",
    ] {
        match d.put_content(p, "x").await {
            Ok(()) => assert!(root.join(&p[1..]).exists(), "{p} lands inside the root"),
            Err(StorageError::InvalidPath { .. }) => {}
            Err(e) => panic!("{p}: {e}"),
        }
    }
    for p in ["/../x", "/a/../../x", "/..", "/a/../.."] {
        assert!(matches!(
            d.put_content(p, "x").await,
            Err(StorageError::InvalidPath { .. })
        ));
        assert!(matches!(
            d.writer(p, false).await,
            Err(StorageError::InvalidPath { .. })
        ));
        assert!(matches!(
            d.rename("/...", p).await,
            Err(StorageError::InvalidPath { .. })
        ));
    }
    // Below a file: a conflict, reported as a backend error, not as a missing path.
    match d.put_content("/.../below", "x").await {
        Err(StorageError::Backend { driver, .. }) => assert_eq!(driver, "filesystem"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    let mut w = d.writer("/up/load", false).await.unwrap();
    w.write("x").await.unwrap();
    w.commit().await.unwrap();
    d.rename("/up/load", "/moved/here").await.unwrap();
    assert_eq!(
        files_outside(base.path(), &root),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn root_and_its_parents_are_created_on_first_write() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("not/yet/there");
    let d = driver_api::Driver::new(FilesystemDriver::new(&root, 25));
    assert!(
        d.list("/").await.unwrap().is_empty(),
        "a missing root lists empty"
    );
    d.put_content("/a/b", "x").await.unwrap();
    assert_eq!(std::fs::read(root.join("a/b")).unwrap(), b"x");
}

#[test]
fn blocking_io_stays_off_the_runtime() {
    // One worker thread: if a syscall ran on it, the ticker below would stall for as long
    // as the 256 MiB write and fsync take.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = driver_api::Driver::new(FilesystemDriver::new(dir.path(), 25));
    rt.block_on(async {
        let big = bytes::Bytes::from(vec![7u8; 256 << 20]);
        let ticker = tokio::spawn(async {
            let mut worst = Duration::ZERO;
            let mut last = Instant::now();
            for _ in 0..200 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                worst = worst.max(last.elapsed());
                last = Instant::now();
            }
            worst
        });
        let t = Instant::now();
        d.put_content("/big", big.clone()).await.unwrap();
        assert_eq!(d.get_content("/big").await.unwrap().len(), big.len());
        let io_time = t.elapsed();
        let worst = ticker.await.unwrap();
        assert!(
            worst < Duration::from_millis(100) && worst < io_time,
            "the runtime thread stalled {worst:?} while I/O took {io_time:?}"
        );
    });
}

#[tokio::test]
async fn parameters_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_string_lossy().into_owned();
    // Loose types: numbers as strings.
    factory::create(
        "filesystem",
        Parameters::new()
            .with("rootdirectory", root.clone())
            .with("maxthreads", "30"),
    )
    .await
    .unwrap();
    // Below the minimum is raised (Distribution's behaviour), not rejected.
    let d = FilesystemDriver::from_parameters(
        Parameters::new()
            .with("rootdirectory", root.clone())
            .with("maxthreads", 3),
    )
    .unwrap();
    assert_eq!(d.root(), dir.path());
    for (key, value, expect) in [
        ("maxthreads", serde_json::json!("many"), "maxthreads"),
        ("maxthreads", serde_json::json!(-5), "maxthreads"),
        ("rootdirectory", serde_json::json!(["a"]), "rootdirectory"),
        ("rootdir", serde_json::json!("/x"), "rootdir"),
    ] {
        let err = factory::create("filesystem", Parameters::new().with(key, value))
            .await
            .unwrap_err();
        match &err {
            StorageError::InvalidParameter { driver, key, .. } => {
                assert_eq!(driver, "filesystem");
                assert_eq!(key, expect);
            }
            other => panic!("expected InvalidParameter, got {other:?}"),
        }
        assert!(err.to_string().starts_with("filesystem: "), "{err}");
    }
    match factory::create("filesytem", Parameters::new()).await {
        Err(StorageError::InvalidStorageDriver { name, registered }) => {
            assert_eq!(name, "filesytem");
            assert!(
                registered.contains(&"filesystem".to_string()),
                "{registered:?}"
            );
        }
        other => panic!("expected InvalidStorageDriver, got {:?}", other.map(|_| ())),
    }
}

/// Sets a directory's modification time (as a clock skew, or a hostile process, could).
fn set_dir_mtime(dir: &std::path::Path, t: std::time::SystemTime) {
    std::fs::File::open(dir)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(t))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_listings_follow_changes_from_other_processes() {
    let base = tempfile::tempdir().unwrap();
    let a = driver_api::Driver::new(FilesystemDriver::new(base.path(), 25));
    // Another instance stands for another process: it shares nothing with `a`.
    let b = driver_api::Driver::new(FilesystemDriver::new(base.path(), 25));
    for i in 0..5 {
        a.put_content(&format!("/d/f{i}"), "x").await.unwrap();
    }
    let dir = base.path().join("d");
    let names =
        |v: Vec<driver_api::StoragePath>| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    // Settle the directory so its listing is cached.
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    set_dir_mtime(&dir, old);
    let first = names(a.list("/d").await.unwrap());
    assert_eq!(first.len(), 5);
    assert_eq!(
        names(a.list("/d").await.unwrap()),
        first,
        "served again (from the cache)"
    );

    // A change by the other instance shows at once.
    b.put_content("/d/new", "x").await.unwrap();
    assert!(names(a.list("/d").await.unwrap()).contains(&"/d/new".to_string()));

    // Even if the directory's mtime is forced back to the cached value: ctime moved.
    set_dir_mtime(&dir, old);
    let _ = a.list("/d").await.unwrap();
    b.delete("/d/f0").await.unwrap();
    set_dir_mtime(&dir, old);
    let now = names(a.list("/d").await.unwrap());
    assert!(!now.contains(&"/d/f0".to_string()), "removal seen: {now:?}");
    assert_eq!(now.len(), 5);

    // And a freshly changed directory is never served stale, cache or not.
    for i in 0..20 {
        b.put_content(&format!("/d/g{i}"), "x").await.unwrap();
        assert_eq!(a.list("/d").await.unwrap().len(), 6 + i);
    }
}

/// `purge_upload` removes only an upload or temporary file of the leftover's own path:
/// an id that names anything else (another path, a committed file, a way out of the
/// root) is refused and nothing is removed.
#[tokio::test]
async fn purge_removes_only_what_uploads_reported() {
    use driver_api::{Leftover, LeftoverKind, StoragePath};
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let d = driver_api::Driver::new(FilesystemDriver::new(&root, 4));
    d.put_content("/a/b", "committed").await.unwrap();
    std::fs::write(base.path().join("outside"), b"x").unwrap();
    let forged = |kind, id: &str| Leftover {
        path: StoragePath::new("/a/b").unwrap(),
        kind,
        id: id.to_owned(),
        modified: None,
        size: None,
    };
    for (kind, id) in [
        (LeftoverKind::TempFile, "a/b"),
        (LeftoverKind::Parked, "a/b"),
        (LeftoverKind::TempFile, "a/b#tmp.1/../../../outside"),
        (LeftoverKind::Parked, "a/c#upload"),
        (LeftoverKind::TempFile, "../outside"),
    ] {
        let res = d.purge_upload(&forged(kind, id)).await;
        assert!(res.is_err(), "{kind} {id} was accepted");
    }
    assert_eq!(d.get_content("/a/b").await.unwrap(), "committed");
    assert!(base.path().join("outside").exists());

    let mut w = d.writer("/a/b", false).await.unwrap();
    w.write("resumable").await.unwrap();
    w.close().await.unwrap();
    let found = d.uploads("/a").await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, LeftoverKind::Parked);
    assert_eq!(found[0].id, "a/b#upload");
    assert_eq!(d.uploads("/a/b").await.unwrap(), found);
    assert!(d.uploads("/elsewhere").await.unwrap().is_empty());
    d.purge_upload(&found[0]).await.unwrap();
    d.purge_upload(&found[0]).await.unwrap(); // gone already: fine
    assert!(d.uploads("/").await.unwrap().is_empty());
    assert_eq!(d.get_content("/a/b").await.unwrap(), "committed");
}
