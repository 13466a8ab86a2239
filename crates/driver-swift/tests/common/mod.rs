//! Where the tests find Swift: the single-node cluster `cargo xtask test-all` starts, or
//! any other cluster.
//!
//! | variable | meaning |
//! |---|---|
//! | `SWIFT_AUTH_URL` | identity URL (required): TempAuth `…/auth/v1.0`, Keystone `…/v3` |
//! | `SWIFT_USERNAME`, `SWIFT_PASSWORD` | credentials (required) |
//! | `SWIFT_CONTAINER` | container (default `storage-driver-tests`; created if missing) |
//! | `SWIFT_TENANT`, `SWIFT_DOMAIN`, `SWIFT_REGION` | Keystone scope, when needed |
//! | `SWIFT_SECRET_KEY` | TempURL key (redirect tests skip without it) |
//! | `SWIFT_MEMCACHED` | `host:port` of the proxy's memcached (token-expiry test; local node only) |
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use driver_api::{Parameters, StorageError};
use driver_swift as _;

pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether the tests run against the local node `cargo xtask` started.
pub fn local() -> bool {
    var("SWIFT_MEMCACHED").is_some()
}

pub fn container() -> String {
    var("SWIFT_CONTAINER").unwrap_or_else(|| "storage-driver-tests".into())
}

/// Parameters for the test container, or a Config error saying what to set.
pub fn params() -> Result<Parameters, StorageError> {
    let missing = || StorageError::Config {
        driver: "swift".into(),
        message: "SWIFT_AUTH_URL / SWIFT_USERNAME / SWIFT_PASSWORD are not set: run the suite \
                  with `cargo xtask test-all --only swift` (which starts a single-node Swift), \
                  or set them yourself"
            .into(),
    };
    let mut p = Parameters::new()
        .with("authurl", var("SWIFT_AUTH_URL").ok_or_else(missing)?)
        .with("username", var("SWIFT_USERNAME").ok_or_else(missing)?)
        .with("password", var("SWIFT_PASSWORD").ok_or_else(missing)?)
        .with("container", container());
    for (v, k) in [
        ("SWIFT_TENANT", "tenant"),
        ("SWIFT_DOMAIN", "domain"),
        ("SWIFT_REGION", "region"),
        ("SWIFT_SECRET_KEY", "secretkey"),
    ] {
        if let Some(x) = var(v) {
            p = p.with(k, x);
        }
    }
    Ok(p)
}

/// The driver for `params`.
pub async fn create(params: Parameters) -> driver_api::Result<driver_api::Driver> {
    driver_api::factory::create("swift", params).await
}

/// Whether the tests run on Ceph's RADOS Gateway (`cargo xtask test-all` sets
/// `STORAGE_TEST_IMPLEMENTATION=radosgw` in its `radosgw` row).
pub fn radosgw() -> bool {
    var("STORAGE_TEST_IMPLEMENTATION").as_deref() == Some("radosgw")
}

/// A unique root for one test.
pub fn root(name: &str) -> String {
    format!("tests/{name}-{}", driver_testsuite::data::random_name(10))
}

/// A token and storage URL from TempAuth, by hand (no driver code involved).
pub async fn raw_auth() -> Option<(String, String)> {
    let url = var("SWIFT_AUTH_URL")?;
    if !url.contains("/auth/v1") {
        eprintln!("raw requests skipped: they use TempAuth (v1) only");
        return None;
    }
    let resp = driver_testsuite::http_client()
        .get(url)
        .header("x-auth-user", var("SWIFT_USERNAME")?)
        .header("x-auth-key", var("SWIFT_PASSWORD")?)
        .send()
        .await
        .unwrap();
    let h = |n: &str| resp.headers()[n].to_str().unwrap().to_owned();
    Some((h("x-auth-token"), h("x-storage-url")))
}

/// The cluster's `/info`, beside the API version of the storage URL (TempAuth only).
pub async fn info_url() -> Option<String> {
    let (_, storage) = raw_auth().await?;
    let base = storage.split("/v1").next()?.to_owned();
    Some(format!("{base}/info"))
}

/// Object names under `prefix` in the test container, listed by hand.
pub async fn raw_names(token: &str, storage: &str, prefix: &str) -> Vec<String> {
    let v: serde_json::Value = driver_testsuite::http_client()
        .get(format!(
            "{storage}/{}?format=json&prefix={prefix}",
            container()
        ))
        .header("x-auth-token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(serde_json::Value::Array(vec![]));
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Every segment of the driver at prefix `root` (Distribution's layout: objects under
/// `root/segments/` in the container), listed by hand.
/// `no_orphaned_segments_after_overwrite_delete_cancel_and_restart` counts what it finds
/// for a live object, so this cannot pass by looking in the wrong place.
pub async fn segment_names(root: &str) -> Option<Vec<String>> {
    let (token, storage) = raw_auth().await?;
    Some(raw_names(&token, &storage, &format!("{root}/segments/")).await)
}

pub async fn assert_no_segments(root: &str, when: &str) {
    if let Some(names) = segment_names(root).await {
        assert!(names.is_empty(), "{when}: segments left: {names:?}");
    }
}
