//! The azure driver through the fault proxy, against its emulator (see
//! `driver_testsuite::faults::prove`): reads cut mid-body resume byte-exact, a read of a
//! replaced object ends with `Changed`, and a seeded workload with 20 % of requests
//! faulted loses, tears and strays nothing, with at least 99 % of operations succeeding.
#![allow(clippy::print_stdout)]

mod common;

use driver_testsuite::runtime as rt;

use driver_azure as _;

/// The part (block, chunk, segment) size the test writes with.
const PART: usize = 1 << 20;

#[test]
fn a_faulty_network_loses_nothing() {
    rt().block_on(async {
        let Ok(params) = common::params() else {
            println!("SKIP: AZURE_ACCOUNT_NAME is not set (run through cargo xtask test-all)");
            return;
        };
        // The container, created if this is the first test on a fresh Azurite.
        common::create(params.clone()).await.expect("the container");
        let params = params
            .with("rootdirectory", common::root("faults"))
            .with("chunksize", PART as u64);
        driver_testsuite::faults::prove("azure", params, "serviceurl", PART).await;
    });
}

/// A server gone silent fails a stat and a put within the bound; stalled transfers are
/// absorbed; a backend killed mid-upload fails the writer within 10 s (see
/// `driver_testsuite::faults::stalls` and `killed`).
#[test]
fn stalls_are_bounded() {
    rt().block_on(async {
        let Ok(params) = common::params() else {
            println!("SKIP: AZURE_ACCOUNT_NAME is not set (run through cargo xtask test-all)");
            return;
        };
        // The container, created if this is the first test on a fresh Azurite.
        common::create(params.clone()).await.expect("the container");
        let params = params.with("rootdirectory", common::root("stalls"));
        driver_testsuite::faults::stalls("azure", params.clone(), "serviceurl").await;
        // One block in flight: the second write waits for the first block to land, so
        // the kill leaves a started upload behind (Azure has no request that starts one).
        let params = params
            .with("chunksize", PART as u64)
            .with("maxconcurrency", 1u64);
        let line = driver_testsuite::faults::killed("azure", params, "serviceurl", PART).await;
        // Its blocks, uncommitted on a blob without committed content, are listed.
        assert!(line.contains("found as an orphan"), "{line}");
    });
}
