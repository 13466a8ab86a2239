//! The whole conformance suite over IPC: the `registry-storage-filesystem` executable,
//! each case rooted in its own directory under one temporary directory per test process.
#![allow(clippy::expect_used)]

use std::sync::OnceLock;

fn base() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory"))
        .path()
}

driver_testsuite::conformance_tests!(|root: String| async move {
    let dir = base().join(root);
    let opts = driver_ipc::client::IpcOptions::new(
        "filesystem",
        env!("CARGO_BIN_EXE_registry-storage-filesystem"),
        serde_json::json!({ "rootdirectory": dir.to_string_lossy() }),
    );
    Ok(driver_api::Driver::new(
        driver_ipc::client::IpcDriver::spawn(opts).await?,
    ))
});
