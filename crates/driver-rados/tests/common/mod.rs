//! Where the tests find Ceph: the single-node cluster `cargo xtask test-all` starts, or
//! any other cluster.
//!
//! | variable | meaning |
//! |---|---|
//! | `CEPH_CONF` | path of ceph.conf (required) |
//! | `CEPH_KEYRING` | the client's keyring (default: ceph.conf's) |
//! | `CEPH_POOL` | pool to use (default `rados-test`; must exist) |
//! | `CEPH_USER` | client name (default `admin`) |
//! | `CEPH_TEST_OSD_PID` | the OSD of the cluster `cargo xtask` started, which a test may pause (set by xtask only) |
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use driver_api::{Parameters, StorageError};
use driver_rados as _;

pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn pool() -> String {
    var("CEPH_POOL").unwrap_or_else(|| "rados-test".into())
}

/// Parameters for the test pool, or a Config error saying what to set.
pub fn params() -> Result<Parameters, StorageError> {
    let conf = var("CEPH_CONF").ok_or_else(|| StorageError::Config {
        driver: "rados".into(),
        message: "CEPH_CONF is not set: run the suite with `cargo xtask test-all --only rados` \
                  (which starts a single-node Ceph cluster), or point CEPH_CONF (and CEPH_POOL, \
                  CEPH_KEYRING, CEPH_USER) at a cluster of yours"
            .into(),
    })?;
    let mut p = Parameters::new()
        .with("poolname", pool())
        .with("conffile", conf);
    if let Some(k) = var("CEPH_KEYRING") {
        p = p.with("keyring", k);
    }
    if let Some(u) = var("CEPH_USER") {
        p = p.with("username", u);
    }
    Ok(p)
}

/// The driver for `params`.
pub async fn create(params: Parameters) -> driver_api::Result<driver_api::Driver> {
    driver_api::factory::create("rados", params).await
}

/// A unique root for one test.
pub fn root(name: &str) -> String {
    format!("tests/{name}-{}", driver_testsuite::data::random_name(10))
}
