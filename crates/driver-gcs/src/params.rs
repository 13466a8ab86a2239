//! The driver's parameters: Distribution's gcs driver's keys, plus `endpoint` and
//! `anonymous` for emulators.

use std::fmt;

use driver_api::{ParamKind, ParamSpec, Parameters, Result, StorageError};
use serde_json::Value;

use crate::DRIVER;

/// Non-final chunks of a resumable upload are multiples of this (GCS's rule).
pub const CHUNK_ALIGN: u64 = 256 << 10;
/// Default writer chunk (Distribution's `defaultChunkSize`).
pub const DEFAULT_CHUNK: u64 = 16 << 20;
/// The public service.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Every parameter, as `storagectl drivers` and docs/drivers/gcs.md list them.
pub static PARAMS: &[ParamSpec] = driver_objectstore::network_params![
    ParamSpec::new("bucket", ParamKind::String, "bucket holding everything (must exist)").required(),
    ParamSpec::new("keyfile", ParamKind::String, "path of a service-account JSON key file: requests authenticated with it, redirect URLs signed with it"),
    ParamSpec::new("credentials", ParamKind::Any, "the service-account key inline (the key file's fields as a map, or its JSON text); used like keyfile").secret(),
    ParamSpec::new("rootdirectory", ParamKind::String, "object name prefix under which everything is stored").default_value(""),
    ParamSpec::new("chunksize", ParamKind::Integer { min: Some(CHUNK_ALIGN), max: Some(1 << 32) }, "writer chunk in bytes, a multiple of 262144 (memory per writer is about one chunk)").default_value("16777216"),
    ParamSpec::new("maxconcurrency", ParamKind::Integer { min: Some(1), max: Some(1000) }, "requests in flight while deleting a directory").default_value("50"),
    ParamSpec::new("useragent", ParamKind::String, "User-Agent header of every request"),
    ParamSpec::new("endpoint", ParamKind::String, "service URL (an emulator such as fake-gcs-server: http://127.0.0.1:4443)").default_value(DEFAULT_ENDPOINT),
    ParamSpec::new("anonymous", ParamKind::Bool, "send no credentials (emulators, public buckets); without it and without a key, Application Default Credentials are used").default_value("false"),
];

/// How requests are authenticated.
#[derive(Clone, PartialEq)]
pub enum Auth {
    /// A service-account key (from `keyfile` or `credentials`): self-signed JWT bearer
    /// tokens, and V4 signed redirect URLs.
    ServiceAccount(Value),
    /// Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file,
    /// the metadata server). No redirect URLs.
    Default,
    /// No credentials.
    Anonymous,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is never printed.
        f.write_str(match self {
            Auth::ServiceAccount(_) => "ServiceAccount",
            Auth::Default => "Default",
            Auth::Anonymous => "Anonymous",
        })
    }
}

/// Parsed configuration (see [`PARAMS`]).
#[derive(Clone, Debug)]
pub struct GcsParams {
    /// Timeouts and retries (the network parameters every object store takes).
    pub network: driver_objectstore::Network,
    /// Bucket.
    pub bucket: String,
    /// Credentials.
    pub auth: Auth,
    /// `rootdirectory`, without surrounding slashes.
    pub root: String,
    /// Writer chunk (a multiple of [`CHUNK_ALIGN`]).
    pub chunk_size: usize,
    /// Requests in flight for bulk operations.
    pub max_concurrency: usize,
    /// `useragent`.
    pub user_agent: Option<String>,
    /// Service URL without a trailing slash.
    pub endpoint: String,
}

fn invalid(key: &str, expected: impl Into<String>) -> StorageError {
    StorageError::InvalidParameter {
        driver: DRIVER.into(),
        key: key.into(),
        expected: expected.into(),
    }
}

/// A service-account key as JSON, checked for the fields the driver needs.
fn service_account(key: &'static str, v: Value) -> Result<Value> {
    let v = match v {
        Value::String(s) => serde_json::from_str(&s)
            .map_err(|e| invalid(key, format!("service-account key JSON ({e})")))?,
        v => v,
    };
    let Value::Object(m) = &v else {
        return Err(invalid(key, "a service-account key (a map)"));
    };
    for field in ["client_email", "private_key"] {
        if !m.get(field).is_some_and(Value::is_string) {
            return Err(invalid(
                key,
                format!("a service-account key with a `{field}` string"),
            ));
        }
    }
    if let Some(t) = m.get("type").and_then(Value::as_str) {
        if t != "service_account" {
            return Err(invalid(
                key,
                format!("a key of type service_account, got {t:?}"),
            ));
        }
    }
    Ok(v)
}

impl GcsParams {
    /// Parses and checks `params` (unknown keys are errors). Reads `keyfile` when given.
    pub fn parse(params: Parameters) -> Result<Self> {
        let mut r = params.reader(DRIVER, PARAMS);
        let bucket = r.string("bucket")?.unwrap_or_default();
        let keyfile = r.string("keyfile")?.filter(|s| !s.is_empty());
        let creds = r.value("credentials")?.filter(|v| !v.is_null());
        let root = r.string("rootdirectory")?.unwrap_or_default();
        let chunk_size = r.u64("chunksize")?.unwrap_or(DEFAULT_CHUNK);
        let max_concurrency = r.u64("maxconcurrency")?.unwrap_or(50) as usize;
        let user_agent = r.string("useragent")?.filter(|s| !s.is_empty());
        let endpoint = r
            .string("endpoint")?
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let anonymous = r.bool("anonymous")?.unwrap_or(false);
        let network = driver_objectstore::Network::read(&mut r, DRIVER)?;
        r.finish()?;

        if bucket.is_empty() {
            return Err(invalid("bucket", "a bucket name"));
        }
        if chunk_size % CHUNK_ALIGN != 0 {
            return Err(invalid(
                "chunksize",
                format!("a multiple of {CHUNK_ALIGN}, got {chunk_size}"),
            ));
        }
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(invalid(
                "endpoint",
                format!("an http(s) URL, got {endpoint:?}"),
            ));
        }
        let auth = match (keyfile, creds, anonymous) {
            (Some(_), Some(_), _) => {
                return Err(invalid("credentials", "not both keyfile and credentials"))
            }
            (Some(_), None, true) | (None, Some(_), true) => {
                return Err(invalid("anonymous", "not together with a key"))
            }
            (Some(file), None, false) => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| invalid("keyfile", format!("a readable file ({file}: {e})")))?;
                Auth::ServiceAccount(service_account("keyfile", Value::String(text))?)
            }
            (None, Some(v), false) => Auth::ServiceAccount(service_account("credentials", v)?),
            (None, None, true) => Auth::Anonymous,
            (None, None, false) => Auth::Default,
        };
        Ok(Self {
            network,
            bucket,
            auth,
            root: root.trim_matches('/').to_owned(),
            chunk_size: chunk_size as usize,
            max_concurrency,
            user_agent,
            endpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Value {
        serde_json::json!({
            "type": "service_account",
            "client_email": "a@b.iam.gserviceaccount.com",
            "private_key": "-----BEGIN PRIVATE KEY-----\nsecretmaterial\n-----END PRIVATE KEY-----\n",
        })
    }

    #[test]
    fn defaults() {
        let p = GcsParams::parse(Parameters::new().with("bucket", "b")).unwrap();
        assert_eq!(p.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(p.auth, Auth::Default);
        assert_eq!(p.chunk_size, 16 << 20);
        assert_eq!(p.max_concurrency, 50);
        let p = GcsParams::parse(
            Parameters::new()
                .with("bucket", "b")
                .with("anonymous", true)
                .with("endpoint", "http://127.0.0.1:4443/")
                .with("rootdirectory", "/reg/"),
        )
        .unwrap();
        assert_eq!(p.auth, Auth::Anonymous);
        assert_eq!(p.endpoint, "http://127.0.0.1:4443");
        assert_eq!(p.root, "reg");
    }

    #[test]
    fn credentials_map_or_json_text_and_never_printed() {
        for v in [key(), Value::String(key().to_string())] {
            let p = GcsParams::parse(Parameters::new().with("bucket", "b").with("credentials", v))
                .unwrap();
            assert_eq!(p.auth, Auth::ServiceAccount(key()));
            assert!(!format!("{p:?}").contains("secretmaterial"));
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (Parameters::new(), "bucket"),
            (
                Parameters::new()
                    .with("bucket", "b")
                    .with("chunksize", 300_000),
                "chunksize",
            ),
            (
                Parameters::new()
                    .with("bucket", "b")
                    .with("chunksize", 1000),
                "chunksize",
            ),
            (
                Parameters::new()
                    .with("bucket", "b")
                    .with("endpoint", "ftp://x"),
                "endpoint",
            ),
            (
                Parameters::new()
                    .with("bucket", "b")
                    .with("keyfile", "/nonexistent/key.json"),
                "keyfile",
            ),
            (
                Parameters::new().with("bucket", "b").with(
                    "credentials",
                    serde_json::json!({"type": "service_account"}),
                ),
                "credentials",
            ),
            (
                Parameters::new()
                    .with("bucket", "b")
                    .with("credentials", "{not json"),
                "credentials",
            ),
            (
                Parameters::new()
                    .with("bucket", "b")
                    .with("credentials", key())
                    .with("anonymous", true),
                "anonymous",
            ),
            (
                Parameters::new().with("bucket", "b").with("bogus", 1),
                "bogus",
            ),
        ];
        for (p, k) in cases {
            let e = GcsParams::parse(p).unwrap_err();
            assert!(e.to_string().contains(k), "{k}: {e}");
            assert!(!e.to_string().contains("secretmaterial"), "{e}");
        }
    }

    #[test]
    fn keyfile_is_read() {
        let dir = std::env::temp_dir().join(format!("gcs-key-{}", std::process::id()));
        std::fs::write(&dir, key().to_string()).unwrap();
        let p = GcsParams::parse(
            Parameters::new()
                .with("bucket", "b")
                .with("keyfile", dir.to_str().unwrap()),
        )
        .unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(p.auth, Auth::ServiceAccount(key()));
    }
}
