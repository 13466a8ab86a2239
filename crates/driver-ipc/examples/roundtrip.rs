//! Times a round trip (a `stat` of a missing path) in process and over IPC:
//! `cargo run --release -p driver-ipc --example roundtrip -- path/to/registry-storage-filesystem`
//! (or `registry-storage-inmemory`, compared with the inmemory driver in process: the
//! bare cost of the process boundary).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use std::time::Instant;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let program = std::env::args().nth(1).unwrap();
    let (name, inproc, params) = if program.ends_with("inmemory") {
        let d = driver_api::Driver::new(driver_inmemory::InMemoryDriver::new());
        ("inmemory", d, serde_json::json!({}))
    } else {
        let d = driver_api::Driver::new(driver_filesystem::FilesystemDriver::new(dir.path(), 100));
        let p = serde_json::json!({ "rootdirectory": dir.path().to_string_lossy() });
        ("filesystem", d, p)
    };
    let opts = driver_ipc::client::IpcOptions::new(name, program, params);
    let ipc = driver_api::Driver::new(driver_ipc::client::IpcDriver::spawn(opts).await.unwrap());
    // In a task on a worker, as a server's request handlers run (not on the thread
    // blocked in `block_on`, which would add a thread wake-up to every operation).
    tokio::spawn(async move {
        for (kind, d) in [
            ("inproc", &inproc),
            ("ipc", &ipc),
            ("inproc", &inproc),
            ("ipc", &ipc),
        ] {
            let n = 3000;
            let t = Instant::now();
            for _ in 0..n {
                let _ = d.stat("/missing").await;
            }
            println!("{name} {kind}: {:?} per stat", t.elapsed() / n);
        }
    })
    .await
    .unwrap();
}
