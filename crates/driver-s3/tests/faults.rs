//! The s3 driver through the fault proxy, against moto (see
//! `driver_testsuite::faults::prove`): reads cut mid-body resume byte-exact, a read of a
//! replaced object ends with `Changed`, and a seeded workload with 20 % of requests
//! faulted loses, tears and strays nothing, with at least 99 % of operations succeeding.
#![allow(clippy::print_stdout)]

mod common;

use driver_testsuite::runtime as rt;

use driver_s3 as _;

const S3_PART: usize = 5 << 20;

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

/// A server gone silent fails a stat and a put within the bound; stalled transfers are
/// absorbed; a backend killed mid-upload fails the writer within 10 s (see
/// `driver_testsuite::faults::stalls` and `killed`).
#[test]
fn stalls_are_bounded() {
    rt().block_on(async {
        let Ok(params) = common::params() else {
            println!("SKIP: S3_BUCKET is not set (run through cargo xtask test-all)");
            return;
        };
        if params.get("regionendpoint").is_none() {
            println!("SKIP: no S3_ENDPOINT: the fault proxy needs a local server");
            return;
        }
        let params = params.with("rootdirectory", common::root("stalls"));
        driver_testsuite::faults::stalls("s3", params.clone(), "regionendpoint").await;
        let params = params.with("chunksize", S3_PART as u64);
        let line = driver_testsuite::faults::killed("s3", params, "regionendpoint", S3_PART).await;
        assert!(line.contains("found as an orphan"), "{line}");
    });
}
