//! The whole conformance suite against the oss driver on the OSS test server (signatures
//! checked by oss2) that `cargo xtask test-all` starts; see tests/common for the
//! variables. Each case runs under its own prefix.

mod common;

driver_testsuite::conformance_tests!(|root: String| async move {
    let params = common::params()?
        .with("rootdirectory", format!("suite/{root}"))
        // The smallest part, so the suite's streams cross many part boundaries, and moves
        // of the suite's large files (12 MiB) part by part, in 5 MiB parts.
        .with("chunksize", 5u64 << 20)
        .with("multipartcopythreshold", 5u64 << 20)
        .with("multipartcopychunksize", 5u64 << 20);
    common::create(params).await
});
