//! The whole conformance suite against the s3 driver on the test server (moto under
//! `cargo xtask test-all`; see tests/common for the variables), each case under its own
//! key prefix.

mod common;

driver_testsuite::conformance_tests!(|root: String| async move {
    let params = common::params()?
        .with("rootdirectory", format!("suite/{root}"))
        // The smallest part S3 allows, so the suite's streams cross many part boundaries,
        // and moves of the suite's large files (12 MiB) by UploadPartCopy in 5 MiB parts.
        .with("chunksize", 5u64 << 20)
        .with("multipartcopythresholdsize", 5u64 << 20)
        .with("multipartcopychunksize", 5u64 << 20);
    driver_api::factory::create("s3", params).await
});

use driver_s3 as _;
