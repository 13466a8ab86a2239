//! Where a `stream` operation's time goes, step by step (writer, write, commit, close,
//! reader opened, reader dropped), and a reader read to the end (`drained`), in process
//! and over IPC, interleaved; medians in µs.
//! `ROUNDS=400 cargo run --release -p driver-ipc --example steps -- path/to/registry-storage-filesystem [KiB]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]
use std::time::{Duration, Instant};

use bytes::Bytes;
use driver_api::Driver;

const STEPS: [&str; 6] = ["writer", "write", "commit", "close", "reader", "drop"];

async fn stream(d: &Driver, path: &str, data: Bytes) -> [Duration; 6] {
    let mut t = Instant::now();
    let mut lap = || {
        let e = t.elapsed();
        t = Instant::now();
        e
    };
    let mut w = d.writer(path, false).await.unwrap();
    let a = lap();
    w.write(data).await.unwrap();
    let b = lap();
    w.commit().await.unwrap();
    let c = lap();
    w.close().await.unwrap();
    let e = lap();
    let r = d.reader(path, 0).await.unwrap();
    let f = lap();
    drop(r);
    [a, b, c, e, f, lap()]
}

/// Opens a reader and reads it to the end (as a registry's blob download does).
async fn drain(d: &Driver, path: &str) -> usize {
    use futures::StreamExt;
    let mut r = d.reader(path, 0).await.unwrap();
    let mut n = 0;
    while let Some(c) = r.next().await {
        n += c.unwrap().len();
    }
    n
}

/// Minor page faults of a process so far (`/proc/<pid>/stat`, field 10).
fn minflt(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    after.split(' ').nth(7).unwrap().parse().unwrap()
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let base = std::env::var("DRIVER_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let program = std::env::args().nth(1).unwrap();
    let kib: usize = std::env::args().nth(2).map_or(1024, |s| s.parse().unwrap());
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let inproc = Driver::new(driver_filesystem::FilesystemDriver::new(
        dir.path().join("a"),
        100,
    ));
    let params = serde_json::json!({ "rootdirectory": dir.path().join("b").to_string_lossy() });
    let opts = driver_ipc::client::IpcOptions::new("filesystem", &program, params);
    let raw = driver_ipc::client::IpcDriver::spawn(opts).await.unwrap();
    let child = raw.pid().await.map_or("self".into(), |p| p.to_string());
    let ipc = Driver::new(raw);
    let data = Bytes::from(
        (0..kib << 10)
            .map(|i| (i * 7 + i / 4093) as u8)
            .collect::<Vec<_>>(),
    );
    // STEPS_ON=block_on times from the runtime's `block_on` thread (as criterion's
    // harness does) instead of a worker task.
    let on_worker = std::env::var("STEPS_ON").map_or(true, |v| v != "block_on");
    let drained = std::env::var("STEPS_DRAIN").map_or(true, |v| v != "0");
    let work = async move {
        let mut times = vec![vec![Vec::new(); 8]; 2];
        let faults = (minflt("self"), minflt(&child));
        for i in 0..rounds {
            for (k, d) in [&inproc, &ipc].into_iter().enumerate() {
                let path = format!("/t/s{i}");
                let t = Instant::now();
                let steps = stream(d, &path, data.clone()).await;
                times[k][6].push(t.elapsed());
                // STEPS_DRAIN=0: only Distribution's `stream` (readers never read), as the
                // criterion benchmark runs it.
                if drained {
                    let t = Instant::now();
                    assert_eq!(drain(d, &path).await, data.len());
                    times[k][7].push(t.elapsed());
                } else {
                    times[k][7].push(Duration::ZERO);
                }
                for (j, s) in steps.into_iter().enumerate() {
                    times[k][j].push(s);
                }
                d.delete(&path).await.unwrap();
            }
        }
        println!(
            "page faults per stream: host {:.1}, child {:.1}",
            (minflt("self") - faults.0) as f64 / rounds as f64,
            (minflt(&child) - faults.1) as f64 / rounds as f64
        );
        for (j, name) in STEPS.iter().chain(["total", "drained"].iter()).enumerate() {
            let a = median(std::mem::take(&mut times[0][j]));
            let b = median(std::mem::take(&mut times[1][j]));
            println!("{name:8} in process {a:8.1}  ipc {b:8.1}  (+{:.1})", b - a);
        }
        for d in [&inproc, &ipc] {
            for i in 0..5 {
                d.put_content(&format!("/small/f{i}"), Bytes::from(vec![7u8; 1024]))
                    .await
                    .unwrap();
            }
        }
        let mut small = vec![vec![Vec::new(); 4]; 2];
        for _ in 0..rounds {
            for (k, d) in [&inproc, &ipc].into_iter().enumerate() {
                let t = Instant::now();
                d.stat("/small/f1").await.unwrap();
                small[k][0].push(t.elapsed());
                let t = Instant::now();
                assert_eq!(d.list("/small").await.unwrap().len(), 5);
                small[k][1].push(t.elapsed());
                let t = Instant::now();
                d.get_content("/small/f0").await.unwrap();
                small[k][2].push(t.elapsed());
                let t = Instant::now();
                assert!(d.stat("/small/none").await.is_err());
                small[k][3].push(t.elapsed());
            }
        }
        for (j, name) in ["stat", "list", "get_1KiB", "stat_missing"]
            .iter()
            .enumerate()
        {
            let a = median(std::mem::take(&mut small[0][j]));
            let b = median(std::mem::take(&mut small[1][j]));
            println!("{name:12} in process {a:8.1}  ipc {b:8.1}  (+{:.1})", b - a);
        }
    };
    match on_worker {
        true => tokio::spawn(work).await.unwrap(),
        false => work.await,
    }
}
