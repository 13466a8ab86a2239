//! The whole conformance suite against the swift driver on the test container (a
//! single-node Swift under `cargo xtask test-all`; see tests/common for the variables),
//! each case under its own prefix.

mod common;

driver_testsuite::conformance_tests!(|root: String| async move {
    let params = common::params()?
        .with("prefix", format!("suite/{root}"))
        // The smallest segment, so the suite's streams cross many segment boundaries.
        .with("chunksize", 1u64 << 20);
    common::create(params).await
});
