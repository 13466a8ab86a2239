//! The filesystem driver next to its floors and a peer, benchmark by benchmark, one disk,
//! one run: `cargo xtask bench filesystem`.
#![allow(missing_docs, clippy::expect_used)]

use bench_baselines::{bench_dir, Peer, RawFs, RawMode};
use criterion::Criterion;
use driver_filesystem::FilesystemDriver;
use driver_testsuite::bench::{self, BenchStore};

fn benches(c: &mut Criterion) {
    let rt = bench::runtime();
    let base = bench_dir();
    let ours = driver_api::Driver::new(FilesystemDriver::new(base.join("filesystem"), 100));
    let floor = RawFs::new(base.join("floor"), RawMode::CrashSafe);
    let dd = RawFs::new(base.join("dd"), RawMode::Dd);
    let peer = Peer::local_fsync(&base.join("object_store")).expect("object_store local");
    let stores: [(&str, &dyn BenchStore); 4] = [
        ("filesystem", &ours),
        ("floor-crash-safe", &floor),
        ("floor-dd", &dd),
        ("object_store-local-fsync", &peer),
    ];
    for (label, store) in stores {
        bench::put_get(c, &rt, label, store);
    }
    for (label, store) in stores {
        bench::stream(c, &rt, label, store);
    }
    for (label, store) in [stores[0], stores[1], stores[3]] {
        bench::list(c, &rt, label, store);
        bench::delete(c, &rt, label, store);
        bench::walk(c, &rt, label, store);
    }
    // Interleaved pairs for the ratios the targets are stated in: small puts against the
    // crash-safe floor, large streams against raw dd.
    bench::paired(
        c,
        &rt,
        "put_get",
        &[0, bench::KIB],
        [stores[0], stores[1]],
        |s, p, d| bench::put_get_op(s, p, d),
    );
    bench::paired(
        c,
        &rt,
        "stream",
        &[bench::MIB, bench::GIB],
        [stores[0], stores[2]],
        |s, p, d| bench::stream_op(s, p, d),
    );
    let _ = std::fs::remove_dir_all(&base);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
