//! The whole conformance suite over IPC against a driver written in another language:
//! `examples/python-driver/registry-storage-pyfs`, a filesystem driver in Python using
//! only the standard library, written from docs/ipc-protocol.md. Each case is rooted in
//! its own directory under one temporary directory per test process.
#![allow(clippy::expect_used)]

use std::sync::OnceLock;

fn base() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory"))
        .path()
}

fn executable() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/python-driver/registry-storage-pyfs")
}

driver_testsuite::conformance_tests!(|root: String| async move {
    let dir = base().join(root);
    let opts = driver_ipc::client::IpcOptions::new(
        "pyfs",
        executable(),
        serde_json::json!({ "rootdirectory": dir.to_string_lossy() }),
    );
    Ok(driver_api::Driver::new(
        driver_ipc::client::IpcDriver::spawn(opts).await?,
    ))
});

/// Parameters the Python driver cannot use come back through `HELLO` as a typed error
/// naming the key, not as a dead child.
#[tokio::test]
async fn bad_parameters_are_typed_errors_naming_the_key() {
    use driver_api::StorageError;
    for (params, key) in [
        (serde_json::json!({}), "rootdirectory"),
        (serde_json::json!({ "rootdirectory": "" }), "rootdirectory"),
        (
            serde_json::json!({ "rootdirectory": "/proc/no/such/place" }),
            "rootdirectory",
        ),
        (
            serde_json::json!({ "rootdirectory": "/tmp", "rootdir": "/tmp" }),
            "rootdir",
        ),
    ] {
        let opts = driver_ipc::client::IpcOptions::new("pyfs", executable(), params.clone());
        match driver_ipc::client::IpcDriver::spawn(opts).await {
            Err(StorageError::InvalidParameter { driver, key: k, .. }) => {
                assert_eq!(driver, "pyfs");
                assert_eq!(k, key, "{params}");
            }
            Err(other) => panic!("{params}: {other:?}"),
            Ok(_) => panic!("{params}: accepted"),
        }
    }
}
