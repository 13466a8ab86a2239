//! The whole conformance suite against the azure driver on the test account (Azurite
//! under `cargo xtask test-all`; see tests/common for the variables), each case under its
//! own blob prefix.

mod common;

driver_testsuite::conformance_tests!(|root: String| async move {
    let params = common::params()?
        .with("rootdirectory", format!("suite/{root}"))
        // The smallest block, so the suite's streams cross many block boundaries.
        .with("chunksize", 256u64 << 10);
    common::create(params).await
});
