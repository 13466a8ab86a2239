//! Page faults and time per `put_content` + `get_content` over IPC, host and child
//! counted apart: `cargo run --release -p driver-ipc --example faults -- path/to/registry-storage-filesystem [KiB] [shm:0|1]`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use std::time::Instant;

fn minflt(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    after.split(' ').nth(7).unwrap().parse().unwrap()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let program = std::env::args().nth(1).unwrap();
    let kib: usize = std::env::args().nth(2).map_or(1024, |s| s.parse().unwrap());
    let shm = std::env::args().nth(3).is_none_or(|s| s == "1");
    let params = serde_json::json!({ "rootdirectory": dir.path().to_string_lossy() });
    let mut opts = driver_ipc::client::IpcOptions::new("filesystem", program, params);
    opts.shared_memory = shm;
    let ipc = driver_ipc::client::IpcDriver::spawn(opts).await.unwrap();
    let child = ipc.pid().await.unwrap().to_string();
    let inproc = driver_api::Driver::new(driver_filesystem::FilesystemDriver::new(
        dir.path().join("x"),
        100,
    ));
    let d = driver_api::Driver::new(ipc);
    let data = bytes::Bytes::from(vec![7u8; kib << 10]);
    for (label, d) in [
        ("ipc", &d),
        ("inproc", &inproc),
        ("ipc", &d),
        ("inproc", &inproc),
    ] {
        let n = 200;
        let (h0, c0, t) = (minflt("self"), minflt(&child), Instant::now());
        for i in 0..n {
            let p = format!("/f/{}", i % 4);
            d.put_content(&p, data.clone()).await.unwrap();
            assert_eq!(d.get_content(&p).await.unwrap().len(), data.len());
        }
        let el = t.elapsed() / n;
        let (h, c) = (
            (minflt("self") - h0) / n as u64,
            (minflt(&child) - c0) / n as u64,
        );
        println!(
            "{label} {kib} KiB shm={shm}: {el:?} per put+get, faults per op: host {h}, child {c}"
        );
    }
}
