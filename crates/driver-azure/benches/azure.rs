//! Distribution's benchmarks against the azure driver: `cargo xtask bench azure` starts
//! Azurite and runs these (see tests/common for the variables, e.g. a real account).
//! Against Azurite the 1 GiB cases are left out (printed): Azurite holds blobs in memory
//! in a Node process, and its figures at that size measure Node, not the driver.
#![allow(missing_docs, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use driver_testsuite::bench;

fn benches(c: &mut criterion::Criterion) {
    if std::env::var_os("AZURE_SERVICE_URL").is_some()
        && std::env::var_os("DRIVER_BENCH_SKIP_1G").is_none()
    {
        std::env::set_var("DRIVER_BENCH_SKIP_1G", "1");
    }
    let rt = bench::runtime();
    let params = common::params()
        .expect(
            "AZURE_ACCOUNT_NAME (and AZURE_SERVICE_URL) set: run through `cargo xtask bench azure`",
        )
        .with("rootdirectory", common::root("bench"));
    let driver = rt
        .block_on(common::create(params))
        .expect("creating the azure driver");
    bench::run_all(c, &rt, "azure", &driver);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
