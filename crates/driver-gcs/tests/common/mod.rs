//! Where the tests find Google Cloud Storage: the fake-gcs-server `cargo xtask test-all`
//! starts, or the real service.
//!
//! | variable | meaning |
//! |---|---|
//! | `GCS_BUCKET` | bucket (required; must exist) |
//! | `GCS_ENDPOINT` | service URL (fake-gcs-server: `http://127.0.0.1:PORT`); unset for the real service |
//! | `GCS_KEYFILE` | service-account key file; unset: anonymous with `GCS_ENDPOINT`, else Application Default Credentials |
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use driver_api::{Parameters, StorageError};
use driver_gcs as _;

pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The public dummy service-account key of Google's conformance tests (inactive; the
/// emulator does not check tokens).
pub fn test_key() -> String {
    format!(
        "{}/tests/data/service_account.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Whether the tests run against an emulator (which accepts any or no credentials).
pub fn emulated() -> bool {
    var("GCS_ENDPOINT").is_some() && var("GCS_KEYFILE").is_none()
}

/// Parameters for the test bucket, or a Config error saying what to set.
pub fn params() -> Result<Parameters, StorageError> {
    let bucket = var("GCS_BUCKET").ok_or_else(|| StorageError::Config {
        driver: "gcs".into(),
        message: "GCS_BUCKET is not set: run the suite with `cargo xtask test-all` (which \
                  starts fake-gcs-server), or set GCS_BUCKET (and GCS_KEYFILE, GCS_ENDPOINT) \
                  yourself"
            .into(),
    })?;
    let mut p = Parameters::new().with("bucket", bucket);
    if let Some(e) = var("GCS_ENDPOINT") {
        p = p.with("endpoint", e);
    }
    match var("GCS_KEYFILE") {
        Some(k) => p = p.with("keyfile", k),
        None if var("GCS_ENDPOINT").is_some() => p = p.with("anonymous", true),
        None => {}
    }
    Ok(p)
}

/// The driver for `params`.
pub async fn create(params: Parameters) -> driver_api::Result<driver_api::Driver> {
    driver_api::factory::create("gcs", params).await
}

/// A unique root for one test.
pub fn root(name: &str) -> String {
    format!("tests/{name}-{}", driver_testsuite::data::random_name(10))
}
