//! Distribution's benchmarks against the swift driver: `cargo xtask bench swift` starts
//! a single-node Swift and runs these (see tests/common for the variables, e.g. a real
//! cluster). On the local node the 1 GiB cases are left out (printed) unless
//! `DRIVER_BENCH_SKIP_1G=0`: the node writes to the same disk as the benchmark.
#![allow(missing_docs, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use driver_testsuite::bench;

fn benches(c: &mut criterion::Criterion) {
    if common::local() && std::env::var_os("DRIVER_BENCH_SKIP_1G").is_none() {
        std::env::set_var("DRIVER_BENCH_SKIP_1G", "1");
    }
    let rt = bench::runtime();
    let params = common::params()
        .expect("SWIFT_AUTH_URL (and credentials) set: run through `cargo xtask bench swift`")
        .with("prefix", common::root("bench"));
    let driver = rt
        .block_on(common::create(params))
        .expect("creating the swift driver");
    bench::run_all(c, &rt, "swift", &driver);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
