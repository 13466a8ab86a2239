//! The driver's parameters: Distribution's rados driver's keys (`poolname`, `username`,
//! `chunksize`), plus where ceph.conf and the keyring are and a root prefix.

use driver_api::{ParamKind, ParamSpec, Parameters, Result, StorageError};

use crate::DRIVER;

/// Default chunk size (Distribution's rados driver: 4 MiB, RADOS' default object size).
pub const DEFAULT_CHUNK: u64 = 4 << 20;
/// Smallest chunk size.
pub const MIN_CHUNK: u64 = 64 << 10;
/// Largest chunk size: below RADOS' 90 MiB per write (`osd_max_write_size`) and 128 MiB
/// per object (`osd_max_object_size`).
pub const MAX_CHUNK: u64 = 64 << 20;

/// Every parameter, as `storagectl drivers` and docs/drivers/rados.md list them.
pub static PARAMS: &[ParamSpec] = &[
    ParamSpec::new("poolname", ParamKind::String, "RADOS pool holding the objects (must exist)").required(),
    ParamSpec::new("username", ParamKind::String, "Ceph client name: `registry` or `client.registry`").default_value("admin"),
    ParamSpec::new("chunksize", ParamKind::Integer { min: Some(MIN_CHUNK), max: Some(MAX_CHUNK) }, "bytes per chunk object (memory per reader/writer is about one chunk)").default_value("4194304"),
    ParamSpec::new("conffile", ParamKind::String, "path of ceph.conf (default: Ceph's search path: $CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf)"),
    ParamSpec::new("keyring", ParamKind::String, "path of the client's keyring (default: ceph.conf's `keyring`, else Ceph's search path: /etc/ceph/$cluster.$name.keyring, ...)"),
    ParamSpec::new("rootdirectory", ParamKind::String, "prefix of every object name, so several registries can share a pool").default_value(""),
];

/// Parsed configuration (see [`PARAMS`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadosParams {
    /// `poolname`.
    pub pool: String,
    /// `username` as a full Ceph entity name (`client.<id>`).
    pub client_name: String,
    /// `chunksize`.
    pub chunk_size: u64,
    /// `conffile`.
    pub conf_file: Option<String>,
    /// `keyring`.
    pub keyring: Option<String>,
    /// `rootdirectory`, without surrounding slashes.
    pub root: String,
}

fn invalid(key: &str, expected: impl Into<String>) -> StorageError {
    StorageError::InvalidParameter {
        driver: DRIVER.into(),
        key: key.into(),
        expected: expected.into(),
    }
}

impl RadosParams {
    /// Parses and checks `params` (unknown keys are errors).
    pub fn parse(params: Parameters) -> Result<Self> {
        let mut r = params.reader(DRIVER, PARAMS);
        let mut opt = |k: &'static str| -> Result<Option<String>> {
            Ok(r.string(k)?.filter(|s| !s.is_empty()))
        };
        let pool = opt("poolname")?;
        let username = opt("username")?;
        let conf_file = opt("conffile")?;
        let keyring = opt("keyring")?;
        let root = opt("rootdirectory")?;
        let chunk_size = r.u64("chunksize")?.unwrap_or(DEFAULT_CHUNK);
        r.finish()?;

        let pool = pool.ok_or_else(|| invalid("poolname", "the name of a RADOS pool"))?;
        if pool.contains('\0') {
            return Err(invalid("poolname", "a pool name without NUL"));
        }
        let username = username.unwrap_or_else(|| "admin".into());
        let id = username.strip_prefix("client.").unwrap_or(&username);
        if id.is_empty() || id.contains(['\0', ' ']) {
            return Err(invalid("username", "a Ceph client name such as `registry`"));
        }
        Ok(Self {
            pool,
            client_name: format!("client.{id}"),
            chunk_size,
            conf_file,
            keyring,
            root: root.unwrap_or_default().trim_matches('/').to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_values() {
        let p = RadosParams::parse(Parameters::new().with("poolname", "reg")).unwrap();
        assert_eq!(p.client_name, "client.admin");
        assert_eq!(p.chunk_size, 4 << 20);
        assert_eq!(p.conf_file, None);
        let p = RadosParams::parse(
            Parameters::new()
                .with("poolname", "reg")
                .with("username", "client.registry")
                .with("chunksize", "1048576")
                .with("conffile", "/etc/ceph/x.conf")
                .with("rootdirectory", "/a/b/"),
        )
        .unwrap();
        assert_eq!(p.client_name, "client.registry");
        assert_eq!(p.chunk_size, 1 << 20);
        assert_eq!(p.root, "a/b");
        let p = RadosParams::parse(
            Parameters::new()
                .with("poolname", "reg")
                .with("username", "registry"),
        )
        .unwrap();
        assert_eq!(p.client_name, "client.registry");
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = || Parameters::new().with("poolname", "reg");
        for (p, k) in [
            (Parameters::new(), "poolname"),
            (base().with("chunksize", 1000), "chunksize"),
            (base().with("chunksize", 1u64 << 30), "chunksize"),
            (base().with("username", "client."), "username"),
            (base().with("bogus", 1), "bogus"),
        ] {
            let e = RadosParams::parse(p).unwrap_err();
            assert!(matches!(e, StorageError::InvalidParameter { .. }), "{e}");
            assert!(e.to_string().contains(k), "{k}: {e}");
            assert!(e.to_string().contains("rados"), "{e}");
        }
    }
}
