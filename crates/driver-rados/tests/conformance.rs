//! The whole conformance suite against the rados driver on the test pool (a single-node
//! Ceph cluster under `cargo xtask test-all`; see tests/common for the variables), each
//! case under its own root.

mod common;

driver_testsuite::conformance_tests!(|root: String| async move {
    let params = common::params()?
        .with("rootdirectory", format!("suite/{root}"))
        // The smallest chunk, so the suite's streams cross many chunk boundaries.
        .with("chunksize", 64u64 << 10);
    common::create(params).await
});
