//! Times a round trip (a `stat` of a missing path) in process and over IPC:
//! `cargo run --release -p driver-ipc --example roundtrip -- path/to/registry-storage-filesystem`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use std::time::Instant;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let inproc = driver_api::Driver::new(driver_filesystem::FilesystemDriver::new(dir.path(), 100));
    let opts = driver_ipc::client::IpcOptions::new(
        "filesystem",
        std::env::args().nth(1).unwrap(),
        serde_json::json!({ "rootdirectory": dir.path().to_string_lossy() }),
    );
    let ipc = driver_api::Driver::new(driver_ipc::client::IpcDriver::spawn(opts).await.unwrap());
    for (name, d) in [
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
        println!("{name}: {:?} per stat", t.elapsed() / n);
    }
}
