//! The driver's parameters: Distribution's rados driver's keys (`poolname`, `username`,
//! `chunksize`), plus where ceph.conf and the keyring are, a root prefix, and how long to
//! wait for a cluster that does not answer (`connecttimeout`, `optimeout`).

use std::time::Duration;

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
    ParamSpec::new("connecttimeout", ParamKind::Duration, "how long creating the driver waits for the cluster's monitors before failing (Ceph's `client_mount_timeout`, 300 s by default, is set to this)").default_value("10s"),
    ParamSpec::new("optimeout", ParamKind::Duration, "how long one RADOS operation may wait for its monitors or OSDs before it fails, retryably (`rados_osd_op_timeout`, `rados_mon_op_timeout`); 0 waits for ever (Ceph's default)").default_value("60s"),
];

/// Default `connecttimeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `optimeout`.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// `connecttimeout`.
    pub connect_timeout: Duration,
    /// `optimeout` (zero: none).
    pub op_timeout: Duration,
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
        let connect_timeout = r
            .duration("connecttimeout")?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let op_timeout = r.duration("optimeout")?.unwrap_or(DEFAULT_OP_TIMEOUT);
        r.finish()?;
        if connect_timeout.is_zero() {
            return Err(invalid(
                "connecttimeout",
                "a duration above zero, such as 10s",
            ));
        }

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
            connect_timeout,
            op_timeout,
        })
    }

    /// The Ceph options that apply the timeouts, in whole seconds (Ceph's unit; a part of
    /// a second counts as one).
    pub fn timeout_options(&self) -> [(&'static str, String); 3] {
        let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let op = secs(self.op_timeout).to_string();
        [
            (
                "client_mount_timeout",
                secs(self.connect_timeout).to_string(),
            ),
            ("rados_mon_op_timeout", op.clone()),
            ("rados_osd_op_timeout", op),
        ]
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
        assert_eq!(
            p.timeout_options(),
            [
                ("client_mount_timeout", "10".to_owned()),
                ("rados_mon_op_timeout", "60".to_owned()),
                ("rados_osd_op_timeout", "60".to_owned()),
            ]
        );
        let p = RadosParams::parse(
            Parameters::new()
                .with("poolname", "reg")
                .with("username", "client.registry")
                .with("chunksize", "1048576")
                .with("conffile", "/etc/ceph/x.conf")
                .with("rootdirectory", "/a/b/")
                .with("connecttimeout", "1500ms")
                .with("optimeout", 0),
        )
        .unwrap();
        assert_eq!(p.timeout_options()[0].1, "2");
        assert_eq!(p.timeout_options()[2].1, "0");
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
            (base().with("connecttimeout", "0s"), "connecttimeout"),
            (base().with("optimeout", "soon"), "optimeout"),
        ] {
            let e = RadosParams::parse(p).unwrap_err();
            assert!(matches!(e, StorageError::InvalidParameter { .. }), "{e}");
            assert!(e.to_string().contains(k), "{k}: {e}");
            assert!(e.to_string().contains("rados"), "{e}");
        }
    }
}
