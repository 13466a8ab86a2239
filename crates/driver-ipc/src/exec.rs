//! The factory fallback: `create("<name>", params)` for a name no linked crate registers
//! runs the executable `registry-storage-<name>`, if one is found.
//!
//! The directories of `STORAGE_DRIVER_PATH` (`:`-separated) are searched first,
//! then `PATH`. Linking this crate (`use driver_ipc as _;`) turns the fallback on.

use std::path::PathBuf;
use std::sync::Arc;

use driver_api::{Parameters, Result, StorageDriver};

use crate::client::{IpcDriver, IpcOptions};

/// Searched before `PATH`.
pub const DRIVER_PATH_VAR: &str = "STORAGE_DRIVER_PATH";

/// The executable's file name for driver `name`, if `name` can be one (letters, digits,
/// `-`, `_`, `.`; nothing that walks out of a directory).
pub fn executable_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then(|| format!("registry-storage-{name}"))
}

/// Where `registry-storage-<name>` is, if anywhere.
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let file = executable_name(name)?;
    let dirs = [std::env::var_os(DRIVER_PATH_VAR), std::env::var_os("PATH")];
    dirs.iter()
        .flatten()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(&file))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The parameters as the JSON object passed in `argv[1]`.
pub fn params_json(params: &Parameters) -> serde_json::Value {
    serde_json::Value::Object(params.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

async fn fallback(name: String, params: Parameters) -> Option<Result<Arc<dyn StorageDriver>>> {
    let program = tokio::task::spawn_blocking({
        let name = name.clone();
        move || find_executable(&name)
    })
    .await
    .ok()??;
    tracing::debug!(driver = %name, program = %program.display(), "using an out-of-process driver");
    let opts = IpcOptions::new(name, program, params_json(&params));
    Some(
        IpcDriver::spawn(opts)
            .await
            .map(|d| Arc::new(d) as Arc<dyn StorageDriver>),
    )
}

driver_api::inventory::submit! {
    driver_api::DriverFallback {
        description: "an executable registry-storage-<name> on STORAGE_DRIVER_PATH or PATH (out-of-process driver)",
        create: |name, params| Box::pin(fallback(name, params)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape() {
        assert_eq!(
            executable_name("pyfs").as_deref(),
            Some("registry-storage-pyfs")
        );
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert_eq!(executable_name(bad), None, "{bad:?}");
        }
    }
}
