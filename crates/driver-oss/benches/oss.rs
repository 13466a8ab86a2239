//! Distribution's benchmarks against the oss driver: `cargo xtask bench oss` starts the
//! OSS test server (signatures checked by oss2) and runs these; with the variables of
//! tests/common set to a real OSS endpoint they measure real OSS. On the test server the
//! 1 GiB cases are left out (printed) unless `DRIVER_BENCH_SKIP_1G=0`: the server is a
//! Python process on the same two cores.
#![allow(missing_docs, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use driver_testsuite::bench;

fn benches(c: &mut criterion::Criterion) {
    if common::var("OSS_TEST_PYTHON").is_some()
        && std::env::var_os("DRIVER_BENCH_SKIP_1G").is_none()
    {
        std::env::set_var("DRIVER_BENCH_SKIP_1G", "1");
    }
    let rt = bench::runtime();
    let params = common::params()
        .expect("OSS_TEST_ENDPOINT (and credentials) set: run through `cargo xtask bench oss`")
        .with("rootdirectory", common::root("bench"));
    let driver = rt
        .block_on(common::create(params))
        .expect("creating the oss driver");
    bench::run_all(c, &rt, "oss", &driver);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
