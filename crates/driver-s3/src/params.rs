//! The driver's parameters: Distribution's s3 driver's keys, defaults and bounds.

use std::fmt;

use driver_api::{ParamKind, ParamSpec, Parameters, Result, StorageError};

use crate::DRIVER;

/// Smallest part S3 accepts (except the last one).
pub const MIN_CHUNK: u64 = 5 << 20;
/// Largest part S3 accepts.
pub const MAX_CHUNK: u64 = 5 << 30;

const INT_CHUNK: ParamKind = ParamKind::Integer {
    min: Some(MIN_CHUNK),
    max: Some(MAX_CHUNK),
};

/// Every parameter, as `storagectl drivers` and docs/drivers/s3.md list them.
pub static PARAMS: &[ParamSpec] = driver_objectstore::network_params![
    ParamSpec::new("accesskey", ParamKind::String, "AWS access key ID (absent: the SDK's default credential chain: environment, profile, web identity, ECS, IMDS)").secret(),
    ParamSpec::new("secretkey", ParamKind::String, "AWS secret access key (with accesskey)").secret(),
    ParamSpec::new("sessiontoken", ParamKind::String, "session token for temporary credentials (with accesskey)").secret(),
    ParamSpec::new("region", ParamKind::String, "AWS region, e.g. us-east-1 (required unless regionendpoint is set)"),
    ParamSpec::new("regionendpoint", ParamKind::String, "endpoint of an S3-compatible service, e.g. http://127.0.0.1:9000"),
    ParamSpec::new("forcepathstyle", ParamKind::Bool, "path-style URLs (endpoint/bucket/key) instead of virtual-hosted").default_value("false"),
    ParamSpec::new("bucket", ParamKind::String, "bucket name").required(),
    ParamSpec::new("encrypt", ParamKind::Bool, "server-side encryption of stored objects (SSE-S3, or SSE-KMS with keyid)").default_value("false"),
    ParamSpec::new("keyid", ParamKind::String, "KMS key ID for SSE-KMS (with encrypt)"),
    ParamSpec::new("secure", ParamKind::Bool, "HTTPS to the endpoint (false: HTTP, for endpoints given without a scheme)").default_value("true"),
    ParamSpec::new("skipverify", ParamKind::Bool, "skip TLS certificate verification (refused: use a trusted CA instead)").default_value("false"),
    ParamSpec::new("v4auth", ParamKind::Bool, "AWS Signature Version 4 (always used; false is refused)").default_value("true"),
    ParamSpec::new("chunksize", INT_CHUNK, "multipart upload part size in bytes (memory per writer is about one chunk)").default_value("10485760"),
    ParamSpec::new("maxconcurrency", ParamKind::Integer { min: Some(1), max: Some(1_000) }, "parts a writer uploads at once (memory per writer is about maxconcurrency + 1 chunks)").default_value("4"),
    ParamSpec::new("multipartcopychunksize", INT_CHUNK, "part size of multipart server-side copies in bytes").default_value("33554432"),
    ParamSpec::new("multipartcopymaxconcurrency", ParamKind::Integer { min: Some(1), max: Some(10_000) }, "parts copied at once in a multipart copy").default_value("100"),
    ParamSpec::new("multipartcopythresholdsize", ParamKind::Integer { min: Some(0), max: Some(MAX_CHUNK) }, "objects at least this big are moved by multipart copy (smaller: one CopyObject)").default_value("33554432"),
    ParamSpec::new("rootdirectory", ParamKind::String, "key prefix under which everything is stored").default_value(""),
    ParamSpec::new("storageclass", ParamKind::String, "storage class of new objects: STANDARD, REDUCED_REDUNDANCY, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, OUTPOSTS, GLACIER_IR, or NONE to send none").default_value("STANDARD"),
    ParamSpec::new("objectacl", ParamKind::String, "canned ACL of new objects (private sends none: buckets with ACLs disabled refuse any)").default_value("private"),
    ParamSpec::new("useragent", ParamKind::String, "application name added to the User-Agent header"),
    ParamSpec::new("usedualstack", ParamKind::Bool, "dual-stack (IPv4/IPv6) AWS endpoints").default_value("false"),
    ParamSpec::new("accelerate", ParamKind::Bool, "S3 Transfer Acceleration endpoints").default_value("false"),
    ParamSpec::new("usefipsendpoint", ParamKind::Bool, "FIPS endpoints").default_value("false"),
    ParamSpec::new("redirectendpoint", ParamKind::String, "scheme://host[:port] presigned redirect URLs are made for (and signed for) instead of the S3 endpoint"),
    ParamSpec::new("loglevel", ParamKind::Any, "Distribution's aws log level (off, debug, debugwithsigning, ...): any level but off logs each request's method, URL and status at INFO through tracing").default_value("off"),
];

/// Storage classes Distribution accepts (plus NONE).
const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "OUTPOSTS",
    "GLACIER_IR",
    "NONE",
];

const ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

const LOG_LEVELS: &[&str] = &[
    "off",
    "debug",
    "debugwithsigning",
    "debugwithhttpbody",
    "debugwithrequestretries",
    "debugwithrequesterrors",
    "debugwitheventstreambody",
];

/// Parsed configuration (see [`PARAMS`]).
#[derive(Clone)]
pub struct S3Params {
    /// Timeouts and retries (the network parameters every object store takes).
    pub network: driver_objectstore::Network,
    /// `accesskey`.
    pub access_key: Option<String>,
    /// `secretkey`.
    pub secret_key: Option<String>,
    /// `sessiontoken`.
    pub session_token: Option<String>,
    /// `region`.
    pub region: Option<String>,
    /// `regionendpoint`, with a scheme.
    pub region_endpoint: Option<String>,
    /// `forcepathstyle`.
    pub force_path_style: bool,
    /// `bucket`.
    pub bucket: String,
    /// `encrypt`.
    pub encrypt: bool,
    /// `keyid`.
    pub key_id: Option<String>,
    /// `secure`.
    pub secure: bool,
    /// `chunksize`.
    pub chunk_size: u64,
    /// `maxconcurrency`.
    pub max_concurrency: usize,
    /// `multipartcopychunksize`.
    pub copy_chunk_size: u64,
    /// `multipartcopymaxconcurrency`.
    pub copy_max_concurrency: usize,
    /// `multipartcopythresholdsize`.
    pub copy_threshold: u64,
    /// `rootdirectory`, without surrounding slashes.
    pub root: String,
    /// `storageclass` (`None` for NONE).
    pub storage_class: Option<String>,
    /// `objectacl` (`None` for private).
    pub acl: Option<String>,
    /// `useragent`.
    pub user_agent: Option<String>,
    /// `usedualstack`.
    pub dual_stack: bool,
    /// `accelerate`.
    pub accelerate: bool,
    /// `usefipsendpoint`.
    pub fips: bool,
    /// `redirectendpoint`.
    pub redirect_endpoint: Option<String>,
    /// `loglevel` is not off.
    pub log_requests: bool,
}

impl fmt::Debug for S3Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials are never printed.
        f.debug_struct("S3Params")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("region_endpoint", &self.region_endpoint)
            .field("root", &self.root)
            .field("chunk_size", &self.chunk_size)
            .field("static_credentials", &self.access_key.is_some())
            .finish_non_exhaustive()
    }
}

fn invalid(key: &str, expected: impl Into<String>) -> StorageError {
    StorageError::InvalidParameter {
        driver: DRIVER.into(),
        key: key.into(),
        expected: expected.into(),
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl S3Params {
    /// Parses and checks `params`.
    pub fn parse(params: Parameters) -> Result<Self> {
        let mut r = params.reader(DRIVER, PARAMS);
        let access_key = non_empty(r.string("accesskey")?);
        let secret_key = non_empty(r.string("secretkey")?);
        let session_token = non_empty(r.string("sessiontoken")?);
        let region = non_empty(r.string("region")?);
        let region_endpoint = non_empty(r.string("regionendpoint")?);
        let force_path_style = r.bool("forcepathstyle")?.unwrap_or(false);
        let bucket =
            non_empty(r.string("bucket")?).ok_or_else(|| invalid("bucket", "a bucket name"))?;
        let encrypt = r.bool("encrypt")?.unwrap_or(false);
        let key_id = non_empty(r.string("keyid")?);
        let secure = r.bool("secure")?.unwrap_or(true);
        let skip_verify = r.bool("skipverify")?.unwrap_or(false);
        let v4 = r.bool("v4auth")?.unwrap_or(true);
        let chunk_size = r.u64("chunksize")?.unwrap_or(10 << 20);
        let max_concurrency = r.u64("maxconcurrency")?.unwrap_or(4) as usize;
        let copy_chunk_size = r.u64("multipartcopychunksize")?.unwrap_or(32 << 20);
        let copy_max_concurrency = r.u64("multipartcopymaxconcurrency")?.unwrap_or(100) as usize;
        let copy_threshold = r.u64("multipartcopythresholdsize")?.unwrap_or(32 << 20);
        let root = r
            .string("rootdirectory")?
            .unwrap_or_default()
            .trim_matches('/')
            .to_owned();
        let storage_class = r
            .string("storageclass")?
            .unwrap_or_else(|| "STANDARD".into())
            .to_ascii_uppercase();
        let acl = r.string("objectacl")?.unwrap_or_else(|| "private".into());
        let user_agent = non_empty(r.string("useragent")?);
        let dual_stack = r.bool("usedualstack")?.unwrap_or(false);
        let accelerate = r.bool("accelerate")?.unwrap_or(false);
        let fips = r.bool("usefipsendpoint")?.unwrap_or(false);
        let redirect_endpoint = non_empty(r.string("redirectendpoint")?);
        let log_level = r.value("loglevel")?;
        let network = driver_objectstore::Network::read(&mut r, DRIVER)?;
        r.finish()?;

        if region.is_none() && region_endpoint.is_none() {
            return Err(invalid(
                "region",
                "a region (required unless regionendpoint is set)",
            ));
        }
        if access_key.is_some() != secret_key.is_some() {
            return Err(invalid(
                if access_key.is_some() {
                    "secretkey"
                } else {
                    "accesskey"
                },
                "accesskey and secretkey together (or neither, for the default credential chain)",
            ));
        }
        if skip_verify {
            return Err(invalid(
                "skipverify",
                "false: skipping TLS verification is not supported; trust the endpoint's CA (SSL_CERT_FILE) instead",
            ));
        }
        if !v4 {
            return Err(invalid(
                "v4auth",
                "true: only AWS Signature Version 4 is supported",
            ));
        }
        if !STORAGE_CLASSES.contains(&storage_class.as_str()) {
            return Err(invalid(
                "storageclass",
                format!("one of {}", STORAGE_CLASSES.join(", ")),
            ));
        }
        if !ACLS.contains(&acl.as_str()) {
            return Err(invalid("objectacl", format!("one of {}", ACLS.join(", "))));
        }
        let log_requests = match log_level {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => false,
            Some(serde_json::Value::String(s)) => {
                let s = s.to_ascii_lowercase();
                if !LOG_LEVELS.contains(&s.as_str()) {
                    return Err(invalid(
                        "loglevel",
                        format!("one of {}", LOG_LEVELS.join(", ")),
                    ));
                }
                s != "off"
            }
            Some(_) => {
                return Err(invalid(
                    "loglevel",
                    format!("one of {}", LOG_LEVELS.join(", ")),
                ))
            }
        };
        if let Some(e) = &redirect_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(invalid(
                    "redirectendpoint",
                    "an absolute http:// or https:// URL",
                ));
            }
        }
        let region_endpoint = region_endpoint.map(|e| {
            if e.contains("://") {
                e
            } else if secure {
                format!("https://{e}")
            } else {
                format!("http://{e}")
            }
        });
        Ok(Self {
            network,
            access_key,
            secret_key,
            session_token,
            region,
            region_endpoint,
            force_path_style,
            bucket,
            encrypt,
            key_id,
            secure,
            chunk_size,
            max_concurrency,
            copy_chunk_size,
            copy_max_concurrency,
            copy_threshold,
            root,
            storage_class: (storage_class != "NONE").then_some(storage_class),
            acl: (acl != "private").then_some(acl),
            user_agent,
            dual_stack,
            accelerate,
            fips,
            redirect_endpoint,
            log_requests,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn base() -> Parameters {
        Parameters::new()
            .with("bucket", "b")
            .with("region", "us-east-1")
    }

    #[test]
    fn defaults_match_distribution() {
        let p = S3Params::parse(base()).unwrap();
        assert_eq!(p.chunk_size, 10 << 20);
        assert_eq!(p.copy_chunk_size, 32 << 20);
        assert_eq!(p.copy_max_concurrency, 100);
        assert_eq!(p.copy_threshold, 32 << 20);
        assert_eq!(p.storage_class.as_deref(), Some("STANDARD"));
        assert!(p.acl.is_none() && p.secure && !p.force_path_style);
    }

    #[test]
    fn bounds_and_choices_are_checked() {
        let bad = |k: &str, v: serde_json::Value| {
            let e = S3Params::parse(base().with(k, v)).unwrap_err();
            assert!(
                matches!(&e, StorageError::InvalidParameter { key, .. } if key == k),
                "{e}"
            );
        };
        bad("chunksize", (1u64 << 20).into());
        bad("multipartcopychunksize", (6u64 << 30).into());
        bad("multipartcopymaxconcurrency", 0.into());
        bad("storageclass", "GOLD".into());
        bad("objectacl", "everyone".into());
        bad("skipverify", true.into());
        bad("v4auth", false.into());
        bad("loglevel", "loud".into());
        bad("redirectendpoint", "cdn.example.com".into());
        let e = S3Params::parse(base().with("accesskey", "AK")).unwrap_err();
        assert!(e.to_string().contains("\"secretkey\""), "{e}");
        bad("nosuchkey", "x".into());
        let e = S3Params::parse(Parameters::new().with("region", "x")).unwrap_err();
        assert!(e.to_string().contains("bucket"));
        let e = S3Params::parse(Parameters::new().with("bucket", "x")).unwrap_err();
        assert!(e.to_string().contains("region"));
    }

    #[test]
    fn endpoints_and_classes() {
        let p = S3Params::parse(
            Parameters::new()
                .with("bucket", "b")
                .with("regionendpoint", "127.0.0.1:9000")
                .with("secure", false)
                .with("storageclass", "none")
                .with("rootdirectory", "/a/b/")
                .with("loglevel", "debug"),
        )
        .unwrap();
        assert_eq!(p.region_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(p.storage_class.is_none());
        assert_eq!(p.root, "a/b");
        assert!(p.log_requests);
        let shown = format!(
            "{:?}",
            S3Params::parse(
                base()
                    .with("accesskey", "AKIA")
                    .with("secretkey", "hunter2")
            )
            .unwrap()
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("AKIA"),
            "{shown}"
        );
    }
}
