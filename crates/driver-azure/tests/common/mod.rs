//! Where the tests find Azure Blob Storage: the Azurite `cargo xtask test-all` starts, or
//! a real account.
//!
//! | variable | meaning |
//! |---|---|
//! | `AZURE_ACCOUNT_NAME` | storage account (required) |
//! | `AZURE_ACCOUNT_KEY` | account key; unset for the default Entra ID credential chain |
//! | `AZURE_CONTAINER` | container (created if missing) |
//! | `AZURE_SERVICE_URL` | blob endpoint (Azurite: `http://127.0.0.1:PORT/devstoreaccount1`); unset for `https://<account>.blob.core.windows.net` |
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use driver_api::{Parameters, StorageError};

pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Parameters for the test account, or a Config error saying what to set.
pub fn params() -> Result<Parameters, StorageError> {
    let account = var("AZURE_ACCOUNT_NAME").ok_or_else(|| StorageError::Config {
        driver: "azure".into(),
        message: "AZURE_ACCOUNT_NAME is not set: run the suite with `cargo xtask test-all` \
                  (which starts Azurite), or set AZURE_ACCOUNT_NAME, AZURE_ACCOUNT_KEY, \
                  AZURE_CONTAINER (and AZURE_SERVICE_URL) yourself"
            .into(),
    })?;
    let mut p = Parameters::new().with("accountname", account).with(
        "container",
        var("AZURE_CONTAINER").unwrap_or_else(|| "storage-driver-tests".into()),
    );
    if let Some(k) = var("AZURE_ACCOUNT_KEY") {
        p = p.with("accountkey", k);
    }
    if let Some(u) = var("AZURE_SERVICE_URL") {
        p = p.with("serviceurl", u);
    }
    Ok(p)
}

/// The driver for `params`, its container created if missing.
pub async fn create(params: Parameters) -> driver_api::Result<driver_api::Driver> {
    let d = driver_azure::AzureDriver::from_parameters(params.clone()).await?;
    d.backend().create_container().await?;
    driver_api::factory::create("azure", params).await
}

/// A unique root for one test.
pub fn root(name: &str) -> String {
    format!("tests/{name}-{}", driver_testsuite::data::random_name(10))
}
