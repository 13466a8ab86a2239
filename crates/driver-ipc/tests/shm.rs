//! The shared-memory data path (protocol 1.1) against the real `registry-storage-*`
//! executables: it is used, it gives every byte back, it falls back to the pipes when its
//! region is full without losing a byte, and a child that misuses it is stopped with a
//! clear error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use driver_api::Driver;
use driver_ipc::client::{IpcDriver, IpcOptions};
use futures::StreamExt;

fn filesystem(dir: &std::path::Path, shared_memory: bool) -> IpcOptions {
    let mut o = IpcOptions::new(
        "filesystem",
        env!("CARGO_BIN_EXE_registry-storage-filesystem"),
        serde_json::json!({ "rootdirectory": dir.to_string_lossy() }),
    );
    o.shared_memory = shared_memory;
    o
}

/// Distinct bytes at every offset, so a misplaced range cannot go unseen.
/// A filesystem child using shared memory, as its client and as a `Driver`.
async fn shared_child(dir: &std::path::Path) -> (IpcDriver, Driver) {
    let ipc = IpcDriver::spawn(filesystem(dir, true)).await.unwrap();
    let d = Driver::new(ipc.clone());
    (ipc, d)
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1] ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

/// Waits until every lent range has come back (the `RELEASE`s travel on their own).
async fn all_given_back(ipc: &IpcDriver) -> driver_ipc::shm::ShmStats {
    let started = Instant::now();
    loop {
        let s = ipc.shm_stats().await.expect("shared memory in use");
        if s.lent_bytes == 0 || started.elapsed() > Duration::from_secs(5) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn streams_go_through_shared_memory_and_every_range_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (ipc, d) = shared_child(dir.path()).await;
    // One window exactly (one frame), and sizes that cross frame and region boundaries.
    for (i, len) in [1 << 20, (1 << 20) + 1, 9 << 20, 20 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pattern(len, i as u8);
        let path = format!("/s/{i}");
        d.put_content(&path, data.clone()).await.unwrap();
        assert_eq!(d.get_content(&path).await.unwrap(), data, "{len}");
        // A writer in pieces that do not line up with frames, and a reader from inside.
        let mut w = d.writer(&format!("/w/{i}"), false).await.unwrap();
        for piece in data.chunks(700_001) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        w.commit().await.unwrap();
        let from = len as u64 / 3;
        let mut s = d.reader(&format!("/w/{i}"), from).await.unwrap();
        let mut got = Vec::new();
        while let Some(b) = s.next().await {
            got.extend_from_slice(&b.unwrap());
        }
        assert_eq!(&got[..], &data[from as usize..], "{len} from {from}");
    }
    let s = all_given_back(&ipc).await;
    let moved: u64 = [1u64 << 20, (1 << 20) + 1, 9 << 20, 20 << 20].iter().sum();
    // Each object went out twice (put, writer) and came back twice (get, reader from a
    // third): nearly all of it through shared memory.
    assert!(s.sent_bytes >= 2 * moved - (1 << 20), "{s:?}");
    assert!(
        s.received_bytes >= moved + moved * 2 / 3 - (1 << 20),
        "{s:?}"
    );
    assert_eq!(s.lent_bytes, 0, "every range given back: {s:?}");
}

/// A reader's consumer that keeps every chunk: chunks are lent from the child's region
/// until the host holds half of it, then copied, so the child never runs out of space for
/// long; everything arrives in order, and dropping the chunks gives every range back.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_consumer_that_keeps_reader_chunks_holds_at_most_half_the_region() {
    let dir = tempfile::tempdir().unwrap();
    let (ipc, d) = shared_child(dir.path()).await;
    let len = 20 << 20;
    let data = pattern(len, 9);
    d.put_content("/keep", data.clone()).await.unwrap();
    let before = ipc.shm_stats().await.unwrap();
    let mut s = d.reader("/keep", 0).await.unwrap();
    let mut kept = Vec::new();
    let mut most_held = 0;
    while let Some(b) = s.next().await {
        kept.push(b.unwrap());
        most_held = most_held.max(ipc.shm_stats().await.unwrap().held_bytes);
    }
    let got: Vec<u8> = kept.iter().flat_map(|b| b.iter().copied()).collect();
    assert!(got == data, "the kept chunks are the object, in order");
    let region = driver_ipc::shm::REGION as u64;
    assert!(most_held > 0, "chunks were lent, not only copied");
    // Lending stops once half the region is held; the frame that crossed the line is
    // at most one window.
    assert!(most_held <= region / 2 + (1 << 20), "held {most_held}");
    let during = ipc.shm_stats().await.unwrap();
    assert!(
        during.received_bytes - before.received_bytes >= len as u64 / 2,
        "most of it still came through shared memory: {during:?}"
    );
    drop(kept);
    let started = Instant::now();
    while ipc.shm_stats().await.unwrap().held_bytes > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "chunks dropped, still held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The child got its space back: the next read goes through shared memory again.
    let before = ipc.shm_stats().await.unwrap();
    assert_eq!(d.get_content("/keep").await.unwrap(), data);
    let after = ipc.shm_stats().await.unwrap();
    assert!(
        after.received_bytes - before.received_bytes >= len as u64 - (1 << 20),
        "{after:?}"
    );
}

/// More streams at once than the region holds windows: senders that find it full go
/// through the pipe, and every byte still arrives in its place.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_full_region_falls_back_to_the_pipe_without_losing_a_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (ipc, d) = shared_child(dir.path()).await;
    let len = 6 << 20;
    let writers = (0..24u8).map(|i| {
        let d = d.clone();
        async move {
            let data = pattern(len, i);
            let mut w = d.writer(&format!("/many/{i}"), false).await.unwrap();
            for piece in data.chunks(1 << 20) {
                w.write(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            w.commit().await.unwrap();
        }
    });
    futures::future::join_all(writers).await;
    // And all read back at once, while each reader holds its stream open.
    let readers = (0..24u8).map(|i| {
        let d = d.clone();
        async move {
            let mut s = d.reader(&format!("/many/{i}"), 0).await.unwrap();
            let mut got = Vec::with_capacity(len);
            while let Some(b) = s.next().await {
                got.extend_from_slice(&b.unwrap());
                tokio::task::yield_now().await;
            }
            assert!(got == pattern(len, i), "stream {i} differs");
        }
    });
    futures::future::join_all(readers).await;
    let s = all_given_back(&ipc).await;
    assert!(s.region_full > 0, "the region never filled: {s:?}");
    assert!(s.sent_bytes > 0 && s.received_bytes > 0, "{s:?}");
    assert_eq!(s.lent_bytes, 0, "{s:?}");
}

#[tokio::test]
async fn switched_off_every_byte_goes_through_the_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let ipc = IpcDriver::spawn(filesystem(dir.path(), false))
        .await
        .unwrap();
    let d = Driver::new(ipc.clone());
    let data = pattern(3 << 20, 9);
    d.put_content("/p", data.clone()).await.unwrap();
    assert_eq!(d.get_content("/p").await.unwrap(), data);
    assert_eq!(ipc.shm_stats().await, None);
}

fn fixture(mode: &str) -> IpcOptions {
    let mut o = IpcOptions::new(
        "misbehaving",
        format!(
            "{}/tests/fixtures/misbehaving-driver",
            env!("CARGO_MANIFEST_DIR")
        ),
        serde_json::json!({ "mode": mode }),
    );
    o.hello_timeout = Duration::from_secs(2);
    o.timeout = Duration::from_secs(2);
    o
}

/// A child in another language (the Python fixture) sends bytes through shared memory as
/// docs/ipc-protocol.md says, and sees the host give the range back.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_python_child_uses_shared_memory_from_the_protocol_text() {
    let ipc = IpcDriver::spawn(fixture("shm_get")).await.unwrap();
    let d = Driver::new(ipc.clone());
    let got = d.get_content("/any").await.unwrap();
    let want: Vec<u8> = b"shared memory from python "
        .iter()
        .copied()
        .cycle()
        .take(300_000)
        .collect();
    assert!(got == want, "{} bytes, not the ones written", got.len());
    assert_eq!(ipc.shm_stats().await.unwrap().received_bytes, 300_000);
    // The child answers the next request with the RELEASE it saw.
    let e = d.stat("/any").await.unwrap_err();
    assert!(e.to_string().contains("released 65536:300000"), "{e}");
}

/// Children that misuse shared memory: each a protocol error naming the problem, the
/// child stopped, no panic, no hang.
#[tokio::test]
async fn misused_shared_memory_is_a_protocol_error() {
    let cases = [
        ("shm_out_of_range", "outside the"),
        ("shm_not_agreed", "which was not agreed"),
        ("shm_bad_release", "which were not lent"),
    ];
    for (mode, says) in cases {
        if mode != "shm_not_agreed" && !cfg!(target_os = "linux") {
            continue;
        }
        let d = Driver::new(IpcDriver::spawn(fixture(mode)).await.unwrap());
        let started = Instant::now();
        let e = d.get_content("/a").await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("protocol error") && text.contains(says),
            "{mode}: {text}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{mode}");
    }
}
