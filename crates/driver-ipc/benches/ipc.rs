//! The filesystem driver in process vs over IPC (`cargo xtask bench ipc`).
//!
//! `paired/ipc-vs-inproc-*` interleaves the same operations on the filesystem driver
//! called directly and on the `registry-storage-filesystem` child (same disk, same
//! driver code), so the ratio is the cost of the process boundary: frames over two pipes,
//! a JSON request and answer per operation, and the copies through the pipes.
//! `paired-on-workers/*` does the same from a task on the runtime's workers, as a
//! server's request handlers run, three ways: in process, over IPC with shared memory
//! (the default), and over IPC through the pipes alone (`ipc-pipes`).
//! `small-ops/<op>/{ipc,inproc}` times single small operations from a worker task too
//! (the harness's `block_on` thread would add a thread wake-up to every operation, on
//! both sides). Then the whole shared suite runs over IPC.
#![allow(missing_docs, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use driver_api::Driver;
use driver_testsuite::bench::{self, BenchStore, KIB, MIB};
use futures::future::BoxFuture;

type SmallOp = fn(Driver) -> BoxFuture<'static, ()>;

/// Small operations on objects made beforehand: `stat` of a file, `list` of a directory
/// of 5, `get_content` of 1 KiB, `stat` of a missing path (an error answer).
fn small_ops(
    c: &mut criterion::Criterion,
    rt: &tokio::runtime::Runtime,
    stores: [(&str, &Driver); 2],
) {
    for (_, d) in stores {
        rt.block_on(async {
            for i in 0..5 {
                let data = Bytes::from(vec![7u8; if i == 0 { KIB } else { 0 }]);
                d.put_content(&format!("/small/f{i}"), data)
                    .await
                    .expect("put");
            }
        });
    }
    let ops: [(&str, SmallOp); 4] = [
        ("stat", |d| {
            Box::pin(async move { d.stat("/small/f1").await.map(drop).expect("stat") })
        }),
        ("list", |d| {
            Box::pin(async move { assert_eq!(d.list("/small").await.expect("list").len(), 5) })
        }),
        ("get_1KiB", |d| {
            Box::pin(async move {
                assert_eq!(d.get_content("/small/f0").await.expect("get").len(), KIB)
            })
        }),
        ("stat_missing", |d| {
            Box::pin(async move { assert!(d.stat("/small/none").await.is_err()) })
        }),
    ];
    let mut group = c.benchmark_group("small-ops");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (name, op) in ops {
        for (label, d) in stores {
            group.bench_function(criterion::BenchmarkId::new(name, label), |b| {
                b.iter_custom(|iters| {
                    let d = d.clone();
                    rt.block_on(rt.spawn(async move {
                        let t = Instant::now();
                        for _ in 0..iters {
                            op(d.clone()).await;
                        }
                        t.elapsed()
                    }))
                    .expect("bench task")
                })
            });
        }
    }
    group.finish();
    for (_, d) in stores {
        rt.block_on(async { d.delete("/small").await.expect("cleanup") });
    }
}

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
    let mut opts = driver_ipc::client::IpcOptions::new(
        "filesystem",
        env!("CARGO_BIN_EXE_registry-storage-filesystem"),
        serde_json::json!({ "rootdirectory": dir.path().join("pipes").to_string_lossy() }),
    );
    opts.shared_memory = false;
    let pipes = driver_api::Driver::new(
        rt.block_on(driver_ipc::client::IpcDriver::spawn(opts))
            .expect("starting registry-storage-filesystem"),
    );
    small_ops(c, &rt, [("ipc", &ipc), ("inproc", &inproc)]);
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
    let three: [(&str, Arc<dyn BenchStore>); 3] = [
        ("inproc", Arc::new(inproc.clone())),
        ("ipc", Arc::new(ipc.clone())),
        ("ipc-pipes", Arc::new(pipes)),
    ];
    let big = [MIB, 16 * MIB];
    bench::paired_on_workers(c, &rt, "put_get", &big, &three, |s, p, d| {
        bench::put_get_op(s, p, d)
    });
    bench::paired_on_workers(c, &rt, "stream", &big, &three, |s, p, d| {
        bench::stream_op(s, p, d)
    });
    bench::run_all(c, &rt, "ipc-filesystem", &ipc);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
