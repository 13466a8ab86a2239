//! The whole conformance suite against the gcs driver on the test bucket (fake-gcs-server
//! under `cargo xtask test-all`; see tests/common for the variables), each case under its
//! own object prefix.

mod common;

driver_testsuite::conformance_tests!(|root: String| async move {
    let params = common::params()?
        .with("rootdirectory", format!("suite/{root}"))
        // The smallest chunk, so the suite's streams cross many chunk boundaries.
        .with("chunksize", 256u64 << 10);
    common::create(params).await
});
