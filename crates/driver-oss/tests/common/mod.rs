//! Where the tests find OSS: the "OSS test server (signatures checked by oss2)" that
//! `cargo xtask test-all` starts (no OSS server exists offline; see docs/drivers/oss.md),
//! or another OSS-compatible endpoint.
//!
//! | variable | meaning |
//! |---|---|
//! | `OSS_TEST_ENDPOINT` | endpoint URL, e.g. `http://127.0.0.1:PORT` (required) |
//! | `OSS_TEST_ACCESS_KEY_ID`, `OSS_TEST_ACCESS_KEY_SECRET` | credentials (required) |
//! | `OSS_TEST_BUCKET` | bucket (default `storage-driver-tests`) |
//! | `OSS_TEST_REGION` | region (default `cn-hangzhou`) |
//! | `OSS_TEST_STS_ENDPOINT`, `OSS_TEST_SECURITY_TOKEN` | a second server that requires an STS token |
//! | `OSS_TEST_PYTHON`, `OSS_TEST_ORACLE_ENDPOINT` | the Python with `oss2`, and a test server of its own, for the check of the test server by oss2's client |
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use driver_api::{Parameters, StorageError};
use driver_oss as _;

pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn bucket() -> String {
    var("OSS_TEST_BUCKET").unwrap_or_else(|| "storage-driver-tests".into())
}

/// Parameters for the test bucket, or a Config error saying what to set.
pub fn params() -> Result<Parameters, StorageError> {
    let missing = || StorageError::Config {
        driver: "oss".into(),
        message: "OSS_TEST_ENDPOINT / OSS_TEST_ACCESS_KEY_ID / OSS_TEST_ACCESS_KEY_SECRET are \
                  not set: run the suite with `cargo xtask test-all --only oss` (which starts \
                  the OSS test server), or set them yourself"
            .into(),
    };
    Ok(Parameters::new()
        .with("endpoint", var("OSS_TEST_ENDPOINT").ok_or_else(missing)?)
        .with(
            "accesskeyid",
            var("OSS_TEST_ACCESS_KEY_ID").ok_or_else(missing)?,
        )
        .with(
            "accesskeysecret",
            var("OSS_TEST_ACCESS_KEY_SECRET").ok_or_else(missing)?,
        )
        .with("bucket", bucket())
        .with(
            "region",
            var("OSS_TEST_REGION").unwrap_or_else(|| "cn-hangzhou".into()),
        ))
}

/// The driver for `params`.
pub async fn create(params: Parameters) -> driver_api::Result<driver_api::Driver> {
    driver_api::factory::create("oss", params).await
}

/// A unique root for one test.
pub fn root(name: &str) -> String {
    format!("tests/{name}-{}", driver_testsuite::data::random_name(10))
}

/// The test server's request counters (`GET /__stats`): operation name → count.
pub async fn stats(endpoint: &str) -> serde_json::Value {
    let body = driver_testsuite::http_client()
        .get(format!("{endpoint}/__stats"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// One counter of [`stats`].
pub async fn op_count(endpoint: &str, op: &str) -> u64 {
    stats(endpoint).await["ops"][op].as_u64().unwrap_or(0)
}
