//! Where the tests find an S3 server: the emulator `cargo xtask test-all` starts, or a
//! real bucket.
//!
//! | variable | meaning |
//! |---|---|
//! | `S3_BUCKET` | bucket to use (required) |
//! | `S3_ENDPOINT` | S3-compatible endpoint (moto from xtask); unset for AWS itself |
//! | `S3_REGION` | region (default us-east-1) |
//! | `S3_ACCESS_KEY` / `S3_SECRET_KEY` | keys; unset for the AWS default credential chain |
//! | `S3S_ENDPOINT`, `S3S_ACCESS_KEY`, `S3S_SECRET_KEY` | s3s-fs, which verifies signatures |
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use driver_api::{Parameters, StorageError};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Parameters for the main test server, or a Config error saying what to set.
pub fn params() -> Result<Parameters, StorageError> {
    let bucket = var("S3_BUCKET").ok_or_else(|| StorageError::Config {
        driver: "s3".into(),
        message: "S3_BUCKET is not set: run the suite with `cargo xtask test-all` (which \
                  starts moto), or set S3_BUCKET (and S3_ENDPOINT / credentials) yourself"
            .into(),
    })?;
    let mut p = Parameters::new().with("bucket", bucket).with(
        "region",
        var("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
    );
    if let Some(e) = var("S3_ENDPOINT") {
        p = p.with("regionendpoint", e).with("forcepathstyle", true);
    }
    if let (Some(ak), Some(sk)) = (var("S3_ACCESS_KEY"), var("S3_SECRET_KEY")) {
        p = p.with("accesskey", ak).with("secretkey", sk);
    }
    Ok(p)
}

/// Whether the tests run on Ceph's RADOS Gateway (`cargo xtask test-all` sets
/// `STORAGE_TEST_IMPLEMENTATION=radosgw` in its `radosgw` row).
pub fn radosgw() -> bool {
    var("STORAGE_TEST_IMPLEMENTATION").as_deref() == Some("radosgw")
}

/// A server that verifies signatures: s3s-fs where it runs (the `s3` row, beside moto,
/// which checks none), else radosgw itself in the `radosgw` row; with its endpoint.
pub fn verifying_params() -> Option<(Parameters, String)> {
    if radosgw() {
        let p = params().ok()?;
        return Some((p, var("S3_ENDPOINT")?));
    }
    Some((s3s_params()?, var("S3S_ENDPOINT")?))
}

/// Parameters for s3s-fs (signature-checking server), if it is running.
pub fn s3s_params() -> Option<Parameters> {
    Some(
        Parameters::new()
            .with("bucket", "storage-driver-tests")
            .with("region", "us-east-1")
            .with("regionendpoint", var("S3S_ENDPOINT")?)
            .with("forcepathstyle", true)
            .with("accesskey", var("S3S_ACCESS_KEY")?)
            .with("secretkey", var("S3S_SECRET_KEY")?),
    )
}

/// A unique root for one test.
pub fn root(name: &str) -> String {
    format!("tests/{name}-{}", driver_testsuite::data::random_name(10))
}
