//! The whole conformance suite over IPC: the `registry-storage-inmemory` executable (the
//! inmemory driver behind `driver_ipc::serve`), one child per case.

driver_testsuite::conformance_tests!(|_root: String| async move {
    let opts = driver_ipc::client::IpcOptions::new(
        "inmemory",
        env!("CARGO_BIN_EXE_registry-storage-inmemory"),
        serde_json::json!({}),
    );
    Ok(driver_api::Driver::new(
        driver_ipc::client::IpcDriver::spawn(opts).await?,
    ))
});
