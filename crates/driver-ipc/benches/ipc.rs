//! The filesystem driver in process vs over IPC (`cargo xtask bench ipc`).
//!
//! `paired/ipc-vs-inproc-*` interleaves the same operations on the filesystem driver
//! called directly and on the `registry-storage-filesystem` child (same disk, same
//! driver code), so the ratio is the cost of the process boundary: frames over two pipes,
//! a JSON request and answer per operation, and the copies through the pipes. Then the
//! whole shared suite runs over IPC.
#![allow(missing_docs, clippy::expect_used)]

use driver_testsuite::bench::{self, BenchStore, KIB, MIB};

fn benches(c: &mut criterion::Criterion) {
    let rt = bench::runtime();
    let base = std::env::var_os("DRIVER_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into());
    let dir = tempfile::Builder::new()
        .prefix("ipc-bench-")
        .tempdir_in(base)
        .expect("bench directory");
    let inproc = driver_api::Driver::new(driver_filesystem::FilesystemDriver::new(
        dir.path().join("inproc"),
        100,
    ));
    let opts = driver_ipc::client::IpcOptions::new(
        "filesystem",
        env!("CARGO_BIN_EXE_registry-storage-filesystem"),
        serde_json::json!({ "rootdirectory": dir.path().join("ipc").to_string_lossy() }),
    );
    let ipc = driver_api::Driver::new(
        rt.block_on(driver_ipc::client::IpcDriver::spawn(opts))
            .expect("starting registry-storage-filesystem"),
    );
    let stores: [(&str, &dyn BenchStore); 2] = [("ipc", &ipc), ("inproc", &inproc)];
    let sizes = [0, KIB, MIB, 16 * MIB];
    bench::paired(
        c,
        &rt,
        "ipc-vs-inproc-put_get",
        &sizes,
        stores,
        |s, p, d| bench::put_get_op(s, p, d),
    );
    bench::paired(c, &rt, "ipc-vs-inproc-stream", &sizes, stores, |s, p, d| {
        bench::stream_op(s, p, d)
    });
    bench::run_all(c, &rt, "ipc-filesystem", &ipc);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
