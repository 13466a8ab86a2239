//! Children that fail: killed mid-stream, writing garbage, never answering, speaking an
//! incompatible version. Each must give a clear error, quickly, without hanging or
//! panicking the host; the next operation starts a new child.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use driver_api::{Driver, StorageError};
use driver_ipc::client::{IpcDriver, IpcOptions};
use futures::StreamExt;

fn fixture() -> String {
    format!(
        "{}/tests/fixtures/misbehaving-driver",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn opts(mode: &str) -> IpcOptions {
    let mut o = IpcOptions::new(
        "misbehaving",
        fixture(),
        serde_json::json!({ "mode": mode }),
    );
    o.hello_timeout = Duration::from_secs(2);
    o.timeout = Duration::from_secs(2);
    o
}

async fn spawn_err(mode: &str) -> StorageError {
    let started = Instant::now();
    let e = IpcDriver::spawn(opts(mode)).await.map(drop).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{mode}: took {:?}",
        started.elapsed()
    );
    e
}

#[tokio::test]
async fn a_child_that_never_says_hello_times_out() {
    let e = spawn_err("silent").await;
    assert!(e.to_string().contains("no HELLO within"), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn a_child_that_writes_garbage_is_refused() {
    let e = spawn_err("garbage").await;
    let text = e.to_string();
    assert!(text.contains("not a frame"), "{text}");
    assert!(text.contains("print to stdout"), "says why: {text}");
}

#[tokio::test]
async fn incompatible_versions_are_refused_with_both_versions_named() {
    let e = spawn_err("old_protocol").await;
    assert!(matches!(e, StorageError::Config { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("\"2.0\"") && text.contains("1.0"), "{text}");
    let e = spawn_err("old_api").await;
    assert!(
        e.to_string().contains("incompatible storage API version"),
        "{e}"
    );
}

#[tokio::test]
async fn a_creation_error_in_hello_is_the_creation_error() {
    let e = spawn_err("create_error").await;
    match &e {
        StorageError::InvalidParameter { driver, key, .. } => {
            assert_eq!(driver, "misbehaving");
            assert_eq!(key, "root");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_child_that_stops_answering_times_out_and_is_replaced() {
    let d = Driver::new(IpcDriver::spawn(opts("mute")).await.unwrap());
    let started = Instant::now();
    let e = d.stat("/a").await.unwrap_err();
    assert!(e.to_string().contains("sent nothing for"), "{e}");
    assert!(e.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // The next operation runs on a new child (mute again: the same error, not a hang).
    let e = d.get_content("/a").await.unwrap_err();
    assert!(e.to_string().contains("sent nothing for"), "{e}");
}

#[tokio::test]
async fn garbage_mid_session_fails_the_operation_and_the_child_is_replaced() {
    let ipc = IpcDriver::spawn(opts("garbage_later")).await.unwrap();
    let first = ipc.pid().await.unwrap();
    let d = Driver::new(ipc.clone());
    let e = d.stat("/a").await.unwrap_err();
    assert!(e.to_string().contains("protocol error"), "{e}");
    assert!(e.to_string().contains("not a frame"), "{e}");
    // A new child answers the next operation (and misbehaves in its turn).
    let e = d.stat("/a").await.unwrap_err();
    assert!(e.to_string().contains("protocol error"), "{e}");
    let second = ipc.pid().await;
    assert_ne!(second, Some(first), "a new process");
}

#[tokio::test]
async fn a_child_that_exits_fails_in_flight_operations_with_its_status() {
    let d = Driver::new(IpcDriver::spawn(opts("exit_later")).await.unwrap());
    let e = d.list("/").await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("exited") && text.contains("3"), "{text}");
    assert!(text.starts_with("misbehaving:"), "names the driver: {text}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn a_child_killed_mid_stream_ends_the_stream_with_an_error_and_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let o = IpcOptions::new(
        "filesystem",
        env!("CARGO_BIN_EXE_registry-storage-filesystem"),
        serde_json::json!({ "rootdirectory": dir.path().to_string_lossy() }),
    );
    let ipc = IpcDriver::spawn(o).await.unwrap();
    let d = Driver::new(ipc.clone());
    let size = 32usize << 20;
    d.put_content("/big", vec![7u8; size]).await.unwrap();
    let mut s = d.reader("/big", 0).await.unwrap();
    let first = s.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    let pid = ipc.pid().await.unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let mut read = first.len();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
            Ok(Some(Ok(b))) => read += b.len(),
            Ok(Some(Err(e))) => break e,
            Ok(None) => panic!("the stream ended cleanly after {read} bytes of {size}"),
            Err(_) => panic!("the stream hung"),
        }
    };
    assert!(read < size);
    let text = err.to_string();
    assert!(
        text.contains("exited") && text.contains("signal: 9"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The next operation starts a new child; the data is still there (filesystem).
    assert_eq!(d.stat("/big").await.unwrap().size, size as u64);
    assert_ne!(ipc.pid().await, Some(pid));
}

#[tokio::test]
async fn a_missing_executable_is_a_config_error() {
    let e = IpcDriver::spawn(IpcOptions::new(
        "nope",
        "/nonexistent/registry-storage-nope",
        serde_json::json!({}),
    ))
    .await
    .map(drop)
    .unwrap_err();
    assert!(matches!(e, StorageError::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("cannot start"), "{e}");
}

/// A fresh upload is returned without waiting for the child (one round trip less); one
/// the child cannot open (its parent is a file) fails at the first write that finds the
/// child's error there, or at commit, with that error, and leaves nothing behind.
#[tokio::test]
async fn a_fresh_upload_the_child_cannot_open_fails_by_commit() {
    let dir = tempfile::tempdir().unwrap();
    let o = IpcOptions::new(
        "filesystem",
        env!("CARGO_BIN_EXE_registry-storage-filesystem"),
        serde_json::json!({ "rootdirectory": dir.path().to_string_lossy() }),
    );
    let d = Driver::new(IpcDriver::spawn(o).await.unwrap());
    d.put_content("/file", "x").await.unwrap();
    let mut w = d.writer("/file/below", false).await.unwrap();
    assert_eq!(w.size(), 0);
    let mut failed = None;
    for _ in 0..3 {
        if let Err(e) = w.write(bytes::Bytes::from(vec![1u8; 100 << 10])).await {
            failed = Some(e);
            break;
        }
    }
    let e = match failed {
        Some(e) => e,
        None => w.commit().await.unwrap_err(),
    };
    assert!(e.to_string().starts_with("filesystem:"), "{e}");
    assert!(d.stat("/file/below").await.unwrap_err().is_not_found());
    assert_eq!(d.get_content("/file").await.unwrap(), "x");
}

/// A driver write that fails in the middle of an upload (here the disk is full: the upload
/// file is `/dev/full`) while the child is still taking chunks in ahead of it: the upload
/// fails with the driver's error by commit, nothing hangs, nothing is committed, and the
/// same child goes on serving. Through shared memory and through the pipes alone.
#[tokio::test]
async fn a_driver_write_that_fails_mid_upload_fails_the_upload_and_the_child_goes_on() {
    for shm in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("up")).unwrap();
        // The filesystem driver writes an upload to `<path>#upload`.
        std::os::unix::fs::symlink("/dev/full", dir.path().join("up/blob#upload")).unwrap();
        let mut o = IpcOptions::new(
            "filesystem",
            env!("CARGO_BIN_EXE_registry-storage-filesystem"),
            serde_json::json!({ "rootdirectory": dir.path().to_string_lossy() }),
        );
        o.shared_memory = shm;
        o.timeout = Duration::from_secs(5);
        let ipc = IpcDriver::spawn(o).await.unwrap();
        let pid = ipc.pid().await;
        let d = Driver::new(ipc.clone());
        let started = Instant::now();
        let upload = async {
            let mut w = d.writer("/up/blob", false).await.unwrap();
            // Each write is one frame; the driver writes to the file once more than
            // 1 MiB is pending, so the failure comes while later chunks are on their way.
            for i in 0..12 {
                if let Err(e) = w.write(bytes::Bytes::from(vec![i as u8; 512 << 10])).await {
                    return (e, i);
                }
            }
            (w.commit().await.unwrap_err(), 12)
        };
        let (e, at) = tokio::time::timeout(Duration::from_secs(10), upload)
            .await
            .expect("the failed upload hung");
        let text = e.to_string();
        assert!(
            text.starts_with("filesystem: ")
                && text.contains("/up/blob: No space left")
                && text.matches("filesystem").count() == 1,
            "shm={shm}, failed at write {at}: {text}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(d.stat("/up/blob").await.unwrap_err().is_not_found());
        // The same child serves the next operations.
        d.put_content("/after", "ok").await.unwrap();
        assert_eq!(d.get_content("/after").await.unwrap(), "ok");
        assert_eq!(ipc.pid().await, pid, "shm={shm}: the child was replaced");
    }
}
