//! Distribution's benchmarks against the rados driver: `cargo xtask bench rados` starts a
//! single-node Ceph cluster (memstore) and runs these (see tests/common for the variables,
//! e.g. a real cluster). The 1 GiB cases are left out (printed) unless
//! `DRIVER_BENCH_SKIP_1G=0`: the local OSD keeps everything in RAM.
#![allow(missing_docs, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use driver_testsuite::bench;

fn benches(c: &mut criterion::Criterion) {
    if std::env::var_os("DRIVER_BENCH_SKIP_1G").is_none() {
        std::env::set_var("DRIVER_BENCH_SKIP_1G", "1");
    }
    let rt = bench::runtime();
    let params = common::params()
        .expect("CEPH_CONF set: run through `cargo xtask bench rados`")
        .with("rootdirectory", common::root("bench"));
    let driver = rt
        .block_on(common::create(params))
        .expect("creating the rados driver");
    bench::run_all(c, &rt, "rados", &driver);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
