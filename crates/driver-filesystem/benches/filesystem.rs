//! Distribution's benchmarks against the filesystem driver alone (`cargo bench -p
//! driver-filesystem`; `DRIVER_BENCH_DIR` picks the disk); `cargo xtask bench filesystem`
//! runs them next to the raw floors and a peer instead.
#![allow(missing_docs, clippy::expect_used)]

fn benches(c: &mut criterion::Criterion) {
    let rt = driver_testsuite::bench::runtime();
    let dir = tempfile::Builder::new()
        .prefix("fs-bench-")
        .tempdir_in(
            std::env::var_os("DRIVER_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
        )
        .expect("bench directory");
    let driver = driver_api::Driver::new(driver_filesystem::FilesystemDriver::new(dir.path(), 100));
    driver_testsuite::bench::run_all(c, &rt, "filesystem", &driver);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
