//! The driver's parameters: Distribution's oss driver's keys, plus an STS token, the
//! signature version, path-style addressing (test servers) and move tuning.

use std::fmt;

use driver_api::{ParamKind, ParamSpec, Parameters, Result, StorageError};

use crate::DRIVER;

/// Smallest writer chunk (Distribution's `minChunkSize`).
pub const MIN_CHUNK: u64 = 5 << 20;
/// Default writer chunk (Distribution's `defaultChunkSize`).
pub const DEFAULT_CHUNK: u64 = 10 << 20;
/// Largest part OSS accepts.
pub const MAX_CHUNK: u64 = 5 << 30;
/// Largest object `CopyObject` copies in one request (OSS's limit).
pub const MAX_COPY_OBJECT: u64 = 1 << 30;
/// Objects larger than this are moved with `UploadPartCopy` by default.
pub const DEFAULT_COPY_THRESHOLD: u64 = 32 << 20;
/// Default part size of `UploadPartCopy`.
pub const DEFAULT_COPY_CHUNK: u64 = 32 << 20;

/// Every parameter, as `storagectl drivers` and docs/drivers/oss.md list them.
pub static PARAMS: &[ParamSpec] = driver_objectstore::network_params![
    ParamSpec::new("accesskeyid", ParamKind::String, "access key id").required(),
    ParamSpec::new("accesskeysecret", ParamKind::String, "access key secret").required().secret(),
    ParamSpec::new("securitytoken", ParamKind::String, "STS security token, for temporary credentials (sent as x-oss-security-token)").secret(),
    ParamSpec::new("region", ParamKind::String, "region, as oss-cn-hangzhou or cn-hangzhou; names the endpoint and scopes V4 signatures").required(),
    ParamSpec::new("bucket", ParamKind::String, "bucket holding everything (must exist)").required(),
    ParamSpec::new("endpoint", ParamKind::String, "endpoint host (or URL) instead of the one derived from region, e.g. a custom domain or a test server"),
    ParamSpec::new("internal", ParamKind::Bool, "use the region's internal (VPC) endpoint, oss-<region>-internal.aliyuncs.com").default_value("false"),
    ParamSpec::new("encrypt", ParamKind::Bool, "ask OSS to encrypt new objects at rest (x-oss-server-side-encryption: AES256)").default_value("false"),
    ParamSpec::new("secure", ParamKind::Bool, "HTTPS (an endpoint given as a URL keeps its own scheme)").default_value("true"),
    ParamSpec::new("skipverify", ParamKind::Bool, "accept any TLS certificate (test servers only)").default_value("false"),
    ParamSpec::new("chunksize", ParamKind::Integer { min: Some(MIN_CHUNK), max: Some(MAX_CHUNK) }, "multipart part size in bytes (a writer holds up to maxconcurrency + 1 parts)").default_value("10485760"),
    ParamSpec::new("rootdirectory", ParamKind::String, "object key prefix under which everything is stored").default_value(""),
    ParamSpec::new("signatureversion", ParamKind::Integer { min: Some(1), max: Some(4) }, "4 (OSS4-HMAC-SHA256) or 1 (HMAC-SHA1, for endpoints that lack V4)").default_value("4"),
    ParamSpec::new("pathstyle", ParamKind::Bool, "address the bucket in the path (http://host/bucket/key) instead of the host name; default: only for IP-address and localhost endpoints"),
    ParamSpec::new("multipartcopythreshold", ParamKind::Integer { min: Some(0), max: Some(MAX_COPY_OBJECT) }, "objects larger than this are moved part by part (UploadPartCopy) rather than by one CopyObject").default_value("33554432"),
    ParamSpec::new("multipartcopychunksize", ParamKind::Integer { min: Some(100 << 10), max: Some(MAX_CHUNK) }, "part size of a part-by-part move").default_value("33554432"),
    ParamSpec::new("maxconcurrency", ParamKind::Integer { min: Some(1), max: Some(100) }, "requests in flight: parts a writer uploads at once (memory per writer is about maxconcurrency + 1 parts), parts of a part-by-part move, DeleteMultipleObjects batches of a directory delete").default_value("4"),
];

/// A string that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(crate) String);

impl Secret {
    /// The value (for the signer).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which signature requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVersion {
    /// `OSS ak:signature`, HMAC-SHA1 (OSS's original scheme).
    V1,
    /// `OSS4-HMAC-SHA256`, scoped to a date and region (OSS's current scheme).
    V4,
}

/// Parsed configuration (see [`PARAMS`]).
#[derive(Clone, Debug)]
pub struct OssParams {
    /// Timeouts and retries (the network parameters every object store takes).
    pub network: driver_objectstore::Network,
    /// `accesskeyid`.
    pub access_key_id: String,
    /// `accesskeysecret`.
    pub access_key_secret: Secret,
    /// `securitytoken`.
    pub security_token: Option<Secret>,
    /// Region without the `oss-` prefix (`cn-hangzhou`), as V4 scopes name it.
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// Endpoint authority (`host[:port]`), without the bucket.
    pub endpoint_host: String,
    /// Bucket in the path rather than in the host name.
    pub path_style: bool,
    /// `encrypt`.
    pub encrypt: bool,
    /// `skipverify`.
    pub skip_verify: bool,
    /// Writer part size.
    pub chunk_size: u64,
    /// `rootdirectory`, without surrounding slashes.
    pub root: String,
    /// Signature scheme.
    pub signature: SignatureVersion,
    /// Moves of larger objects go part by part.
    pub copy_threshold: u64,
    /// Part size of part-by-part moves.
    pub copy_chunk: u64,
    /// `maxconcurrency`: requests in flight for a writer's parts, a part-by-part move and
    /// a directory delete.
    pub max_concurrency: usize,
}

fn invalid(key: &str, expected: impl Into<String>) -> StorageError {
    StorageError::InvalidParameter {
        driver: DRIVER.into(),
        key: key.into(),
        expected: expected.into(),
    }
}

/// Whether `host` (without port) names this machine or an IP address: test servers,
/// which cannot have per-bucket host names.
fn is_local_or_ip(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok()
}

impl OssParams {
    /// Parses and checks `params` (unknown keys are errors).
    pub fn parse(params: Parameters) -> Result<Self> {
        let mut r = params.reader(DRIVER, PARAMS);
        let access_key_id = r.string("accesskeyid")?.unwrap_or_default();
        let secret = r.string("accesskeysecret")?.unwrap_or_default();
        let token = r.string("securitytoken")?.filter(|s| !s.is_empty());
        let region = r.string("region")?.unwrap_or_default();
        let bucket = r.string("bucket")?.unwrap_or_default();
        let endpoint = r.string("endpoint")?.filter(|s| !s.is_empty());
        let internal = r.bool("internal")?.unwrap_or(false);
        let encrypt = r.bool("encrypt")?.unwrap_or(false);
        let secure = r.bool("secure")?.unwrap_or(true);
        let skip_verify = r.bool("skipverify")?.unwrap_or(false);
        let chunk_size = r.u64("chunksize")?.unwrap_or(DEFAULT_CHUNK);
        let root = r.string("rootdirectory")?.unwrap_or_default();
        let version = r.u64("signatureversion")?.unwrap_or(4);
        let path_style = r.bool("pathstyle")?;
        let copy_threshold = r
            .u64("multipartcopythreshold")?
            .unwrap_or(DEFAULT_COPY_THRESHOLD);
        let copy_chunk = r
            .u64("multipartcopychunksize")?
            .unwrap_or(DEFAULT_COPY_CHUNK);
        let max_concurrency = r.u64("maxconcurrency")?.unwrap_or(4) as usize;
        let network = driver_objectstore::Network::read(&mut r, DRIVER)?;
        r.finish()?;

        if access_key_id.trim().is_empty() {
            return Err(invalid("accesskeyid", "an access key id"));
        }
        if secret.is_empty() {
            return Err(invalid("accesskeysecret", "an access key secret"));
        }
        let region = region.trim();
        let region = region.strip_prefix("oss-").unwrap_or(region).to_owned();
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "region",
                "a region id such as cn-hangzhou or oss-cn-hangzhou",
            ));
        }
        // OSS bucket names: 3-63 of [a-z0-9-], not starting or ending with '-'.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !bucket.starts_with('-')
            && !bucket.ends_with('-');
        if !bucket_ok {
            return Err(invalid(
                "bucket",
                "a bucket name: 3 to 63 lower-case letters, digits or '-', not at either end",
            ));
        }
        let signature = match version {
            1 => SignatureVersion::V1,
            4 => SignatureVersion::V4,
            v => return Err(invalid("signatureversion", format!("1 or 4, got {v}"))),
        };
        let default_scheme = if secure { "https" } else { "http" };
        let (scheme, endpoint_host) = match endpoint {
            Some(e) => {
                let e = e.trim().trim_end_matches('/');
                let (scheme, rest) = if let Some(rest) = e.strip_prefix("https://") {
                    ("https", rest)
                } else if let Some(rest) = e.strip_prefix("http://") {
                    ("http", rest)
                } else if e.contains("://") {
                    return Err(invalid("endpoint", "a host name or an http(s) URL"));
                } else {
                    (default_scheme, e)
                };
                if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
                    return Err(invalid(
                        "endpoint",
                        "a host name (with an optional port), or an http(s) URL without a path",
                    ));
                }
                (scheme, rest.to_owned())
            }
            None => {
                let suffix = if internal { "-internal" } else { "" };
                (default_scheme, format!("oss-{region}{suffix}.aliyuncs.com"))
            }
        };
        let path_style = path_style.unwrap_or_else(|| is_local_or_ip(&endpoint_host));
        Ok(Self {
            network,
            access_key_id: access_key_id.trim().to_owned(),
            access_key_secret: Secret(secret),
            security_token: token.map(Secret),
            region,
            bucket,
            scheme,
            endpoint_host,
            path_style,
            encrypt,
            skip_verify,
            chunk_size,
            root: root.trim_matches('/').to_owned(),
            signature,
            copy_threshold,
            copy_chunk,
            max_concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Parameters {
        Parameters::new()
            .with("accesskeyid", "ak")
            .with("accesskeysecret", "very-secret")
            .with("region", "oss-cn-hangzhou")
            .with("bucket", "registry")
    }

    #[test]
    fn defaults_follow_distribution() {
        let p = OssParams::parse(base()).unwrap();
        assert_eq!(p.region, "cn-hangzhou");
        assert_eq!(p.endpoint_host, "oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(p.scheme, "https");
        assert!(!p.path_style);
        assert_eq!(p.chunk_size, 10 << 20);
        assert_eq!(p.max_concurrency, 4);
        assert_eq!(p.signature, SignatureVersion::V4);
        let p = OssParams::parse(base().with("internal", true).with("secure", false)).unwrap();
        assert_eq!(p.endpoint_host, "oss-cn-hangzhou-internal.aliyuncs.com");
        assert_eq!(p.scheme, "http");
    }

    #[test]
    fn endpoints_and_path_style() {
        let p = OssParams::parse(base().with("endpoint", "http://127.0.0.1:9000/")).unwrap();
        assert_eq!(
            (p.scheme, p.endpoint_host.as_str()),
            ("http", "127.0.0.1:9000")
        );
        assert!(p.path_style, "an IP endpoint cannot have bucket host names");
        let p = OssParams::parse(base().with("endpoint", "oss.example.com")).unwrap();
        assert_eq!((p.scheme, p.path_style), ("https", false));
        let p = OssParams::parse(
            base()
                .with("endpoint", "localhost:1")
                .with("pathstyle", false),
        )
        .unwrap();
        assert!(!p.path_style);
        assert!(OssParams::parse(base().with("endpoint", "ftp://x")).is_err());
        assert!(OssParams::parse(base().with("endpoint", "http://x/path")).is_err());
    }

    #[test]
    fn bad_values_name_their_key_and_hide_secrets() {
        for (k, v) in [
            ("chunksize", serde_json::json!(1024)),
            ("signatureversion", serde_json::json!(2)),
            ("bucket", serde_json::json!("Bad_Bucket")),
            ("region", serde_json::json!("")),
            ("accesskeysecret", serde_json::json!("")),
        ] {
            let e = OssParams::parse(base().with(k, v)).unwrap_err();
            assert!(
                matches!(&e, StorageError::InvalidParameter { key, .. } if key == k),
                "{k}: {e}"
            );
        }
        let e = OssParams::parse(base().with("nosuch", 1)).unwrap_err();
        assert!(e.to_string().contains("nosuch"), "{e}");
        let p = OssParams::parse(base().with("securitytoken", "tok-123")).unwrap();
        let dbg = format!("{p:?}");
        assert!(
            !dbg.contains("very-secret") && !dbg.contains("tok-123"),
            "{dbg}"
        );
    }
}
