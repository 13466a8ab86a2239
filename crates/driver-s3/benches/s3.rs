//! Distribution's benchmarks against the s3 driver on the test server: `cargo xtask bench
//! s3` starts moto and runs these (see tests/common for the variables, e.g. a real bucket).
//! Against an emulator the 1 GiB cases are left out (printed): moto keeps objects in RAM and
//! its figures at that size measure Python, not the driver.
#![allow(missing_docs, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use driver_s3 as _;

fn benches(c: &mut criterion::Criterion) {
    if std::env::var_os("S3_ENDPOINT").is_some()
        && std::env::var_os("DRIVER_BENCH_SKIP_1G").is_none()
    {
        std::env::set_var("DRIVER_BENCH_SKIP_1G", "1");
    }
    let rt = driver_testsuite::bench::runtime();
    let params = common::params()
        .expect("S3_BUCKET (and S3_ENDPOINT) set: run through `cargo xtask bench s3`")
        .with("rootdirectory", common::root("bench"));
    let driver = rt
        .block_on(driver_api::factory::create("s3", params))
        .expect("creating the s3 driver");
    driver_testsuite::bench::run_all(c, &rt, "s3", &driver);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
