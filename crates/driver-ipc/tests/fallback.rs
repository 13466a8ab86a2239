//! The factory fallback: a name no linked crate registers is served by an executable
//! `registry-storage-<name>` from `STORAGE_DRIVER_PATH` (or `PATH`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use driver_api::{factory, Parameters, StorageError};
use driver_ipc as _; // links the fallback

#[tokio::test]
async fn create_finds_an_executable_driver_by_name() {
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_registry-storage-filesystem"),
        bin.path().join("registry-storage-fsx"),
    )
    .unwrap();
    // The only test in this process: setting the variable races with nothing.
    std::env::set_var(driver_ipc::exec::DRIVER_PATH_VAR, bin.path());

    let data = tempfile::tempdir().unwrap();
    let d = factory::create(
        "fsx",
        Parameters::new().with("rootdirectory", data.path().to_string_lossy().into_owned()),
    )
    .await
    .unwrap();
    assert_eq!(d.name(), "fsx");
    d.put_content("/a/b", "over ipc").await.unwrap();
    assert_eq!(&d.get_content("/a/b").await.unwrap()[..], b"over ipc");
    // It really is the filesystem child writing there.
    assert!(data.path().join("a/b").is_file());

    // Bad parameters come back as the child's typed error.
    let e = factory::create("fsx", Parameters::new().with("maxthreads", "many"))
        .await
        .map(drop)
        .unwrap_err();
    assert!(matches!(e, StorageError::InvalidParameter { .. }), "{e:?}");

    // No executable, no driver: the usual error.
    let e = factory::create("nosuch", Parameters::new())
        .await
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(e, StorageError::InvalidStorageDriver { .. }),
        "{e:?}"
    );
    // Names that could walk out of the directory are never looked up.
    let e = factory::create("../fsx", Parameters::new())
        .await
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(e, StorageError::InvalidStorageDriver { .. }),
        "{e:?}"
    );
}

/// Parameters may hold secrets: the options' `Debug` names the keys, never the values.
#[test]
fn options_debug_shows_no_parameter_values() {
    let o = driver_ipc::client::IpcOptions::new(
        "s3",
        "registry-storage-s3",
        serde_json::json!({ "accesskey": "AKIDEXAMPLE", "secretkey": "wJalrXUtnFEMI-secret" }),
    );
    let text = format!("{o:?}");
    assert!(
        text.contains("secretkey") && text.contains("accesskey"),
        "{text}"
    );
    assert!(
        !text.contains("wJalrXUtnFEMI") && !text.contains("AKIDEXAMPLE"),
        "{text}"
    );
}
