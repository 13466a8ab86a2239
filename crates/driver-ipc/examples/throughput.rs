//! Median times of `put_content` + `get_content` and of a streamed write + commit, in
//! process, over IPC with shared memory and over IPC through the pipes alone,
//! interleaved: a quick check next to the criterion bench.
//! `cargo run --release -p driver-ipc --example throughput -- path/to/registry-storage-filesystem [MiB]`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use std::time::{Duration, Instant};

use bytes::Bytes;
use driver_api::Driver;

async fn put_get(d: &Driver, path: &str, data: Bytes) {
    d.put_content(path, data.clone()).await.unwrap();
    assert_eq!(d.get_content(path).await.unwrap().len(), data.len());
}

async fn stream(d: &Driver, path: &str, data: Bytes) {
    let mut w = d.writer(path, false).await.unwrap();
    w.write(data).await.unwrap();
    w.commit().await.unwrap();
    w.close().await.unwrap();
    drop(d.reader(path, 0).await.unwrap());
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let program = std::env::args().nth(1).unwrap();
    let mib: usize = std::env::args().nth(2).map_or(16, |s| s.parse().unwrap());
    let inproc = Driver::new(driver_filesystem::FilesystemDriver::new(
        dir.path().join("a"),
        100,
    ));
    let params = serde_json::json!({ "rootdirectory": dir.path().join("b").to_string_lossy() });
    let opts = driver_ipc::client::IpcOptions::new("filesystem", &program, params);
    let ipc = Driver::new(driver_ipc::client::IpcDriver::spawn(opts).await.unwrap());
    let params = serde_json::json!({ "rootdirectory": dir.path().join("c").to_string_lossy() });
    let mut opts = driver_ipc::client::IpcOptions::new("filesystem", &program, params);
    opts.shared_memory = false;
    let pipes = Driver::new(driver_ipc::client::IpcDriver::spawn(opts).await.unwrap());
    let data = Bytes::from(
        (0..mib << 20)
            .map(|i| (i * 7 + i / 4093) as u8)
            .collect::<Vec<_>>(),
    );
    tokio::spawn(async move {
        for op in ["put_get", "stream"] {
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            let rounds: usize = std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
            for i in 0..rounds {
                for (d, times) in [(&inproc, &mut a), (&ipc, &mut b), (&pipes, &mut c)] {
                    let path = format!("/t/{op}{i}");
                    let t = Instant::now();
                    match op {
                        "put_get" => put_get(d, &path, data.clone()).await,
                        _ => stream(d, &path, data.clone()).await,
                    }
                    times.push(t.elapsed());
                    d.delete(&path).await.unwrap();
                }
            }
            let (a, b, c) = (median(a), median(b), median(c));
            let ratio = |x: Duration| x.as_secs_f64() / a.as_secs_f64();
            println!(
                "{op} {mib} MiB: in process {a:?}, IPC shared memory {b:?} ({:.2}x), IPC pipes {c:?} ({:.2}x)",
                ratio(b),
                ratio(c)
            );
        }
    })
    .await
    .unwrap();
}
