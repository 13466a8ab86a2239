//! The whole conformance suite over IPC against a driver written in another language:
//! examples/python-driver (Python 3, standard library only, filesystem-backed), each case
//! rooted in its own directory.
#![allow(clippy::expect_used)]

use std::sync::OnceLock;

fn base() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory"))
        .path()
}

/// The executable script.
fn program() -> String {
    format!(
        "{}/../../examples/python-driver/registry-storage-pyfs",
        env!("CARGO_MANIFEST_DIR")
    )
}

driver_testsuite::conformance_tests!(|root: String| async move {
    let dir = base().join(root);
    let opts = driver_ipc::client::IpcOptions::new(
        "pyfs",
        program(),
        serde_json::json!({ "rootdirectory": dir.to_string_lossy() }),
    );
    Ok(driver_api::Driver::new(
        driver_ipc::client::IpcDriver::spawn(opts).await?,
    ))
});
