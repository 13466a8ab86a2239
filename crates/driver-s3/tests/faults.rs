//! The s3 driver through the fault proxy, against moto (see
//! `driver_testsuite::faults::prove`): reads cut mid-body resume byte-exact, a read of a
//! replaced object ends with `Changed`, and a seeded workload with 20 % of requests
//! faulted loses, tears and strays nothing, with at least 99 % of operations succeeding.
#![allow(clippy::print_stdout)]

mod common;

use driver_testsuite::runtime as rt;

use driver_s3 as _;

#[test]
fn a_faulty_network_loses_nothing() {
    rt().block_on(async {
        let Ok(params) = common::params() else {
            println!("SKIP: S3_BUCKET is not set (run through cargo xtask test-all)");
            return;
        };
        if params.get("regionendpoint").is_none() {
            println!("SKIP: no S3_ENDPOINT: the fault proxy needs a local server");
            return;
        }
        let params = params
            .with("rootdirectory", common::root("faults"))
            .with("chunksize", 5u64 << 20);
        driver_testsuite::faults::prove("s3", params, "regionendpoint", 5 << 20).await;
    });
}
