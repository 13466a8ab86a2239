//! The whole conformance suite through the `Prefixed` layer: every case runs on the same
//! filesystem root, each in its own prefix two levels down, so the layer's path mapping
//! (results, errors, walk hints, a missing root) is checked against a real backend, and
//! cases running side by side in one namespace prove that a prefix isolates them.
#![allow(clippy::expect_used)]

use std::sync::OnceLock;

use driver_api::prefix::Prefixed;
use driver_api::{Driver, StoragePath};

fn base() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory"))
        .path()
}

driver_testsuite::conformance_tests!(|root: String| async move {
    let shared = driver_api::factory::create(
        "filesystem",
        driver_api::Parameters::new().with("rootdirectory", base().to_string_lossy().into_owned()),
    )
    .await?;
    let prefix = StoragePath::new(&format!("/shared/{root}"))
        .map_err(|e| driver_api::StorageError::invalid_path("filesystem", e))?;
    Ok(Driver::new(Prefixed::new(shared.inner().clone(), prefix)))
});

use driver_filesystem as _;
