//! The whole conformance suite against the filesystem driver, each case rooted in its own
#![allow(clippy::expect_used)]
//! directory under one temporary directory per test process.

use std::sync::OnceLock;

fn base() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory"))
        .path()
}

driver_testsuite::conformance_tests!(|root: String| async move {
    let dir = base().join(root);
    driver_api::factory::create(
        "filesystem",
        driver_api::Parameters::new().with("rootdirectory", dir.to_string_lossy().into_owned()),
    )
    .await
});

use driver_filesystem as _;
