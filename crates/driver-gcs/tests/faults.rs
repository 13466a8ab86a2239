//! The gcs driver through the fault proxy, against its emulator (see
//! `driver_testsuite::faults::prove`): reads cut mid-body resume byte-exact, a read of a
//! replaced object ends with `Changed`, and a seeded workload with 20 % of requests
//! faulted loses, tears and strays nothing, with at least 99 % of operations succeeding.
#![allow(clippy::print_stdout)]

mod common;

use driver_testsuite::runtime as rt;

use driver_gcs as _;

/// The part (block, chunk, segment) size the test writes with.
const PART: usize = 256 << 10;

#[test]
fn a_faulty_network_loses_nothing() {
    rt().block_on(async {
        let Ok(params) = common::params() else {
            println!("SKIP: GCS_BUCKET is not set (run through cargo xtask test-all)");
            return;
        };
        let params = params
            .with("rootdirectory", common::root("faults"))
            .with("chunksize", PART as u64);
        driver_testsuite::faults::prove("gcs", params, "endpoint", PART).await;
    });
}

/// A server gone silent fails a stat and a put within the bound; stalled transfers are
/// absorbed; a backend killed mid-upload fails the writer within 10 s (see
/// `driver_testsuite::faults::stalls` and `killed`).
#[test]
fn stalls_are_bounded() {
    rt().block_on(async {
        let Ok(params) = common::params() else {
            println!("SKIP: GCS_BUCKET is not set (run through cargo xtask test-all)");
            return;
        };
        let params = params.with("rootdirectory", common::root("stalls"));
        driver_testsuite::faults::stalls("gcs", params.clone(), "endpoint").await;
        let params = params.with("chunksize", PART as u64);
        let line = driver_testsuite::faults::killed("gcs", params, "endpoint", PART).await;
        // Recorded when it started (the service cannot list them), its session are found.
        assert!(line.contains("found as an orphan"), "{line}");
    });
}
