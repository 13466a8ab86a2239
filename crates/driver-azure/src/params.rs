//! The driver's parameters: Distribution's azure driver's keys, plus a few of ours.

use std::fmt;

use driver_api::{ParamKind, ParamSpec, Parameters, Result, StorageError};
use serde_json::Value;

use crate::DRIVER;

/// Largest block Azure accepts (x-ms-version 2019-12-12 and later).
pub const MAX_BLOCK: u64 = 4000 << 20;

/// Every parameter, as `storagectl drivers` and docs/drivers/azure.md list them.
pub static PARAMS: &[ParamSpec] = driver_objectstore::network_params![
    ParamSpec::new("accountname", ParamKind::String, "storage account name (required unless connectionstring names it)"),
    ParamSpec::new("accountkey", ParamKind::String, "account key: shared-key auth, and SAS redirect URLs signed with it").secret(),
    ParamSpec::new("container", ParamKind::String, "container holding everything (must exist)").required(),
    ParamSpec::new("credentials", ParamKind::Any, "map: type (shared_key | client_secret | default_credentials), clientid, tenantid, secret; absent: shared_key with accountkey, else default_credentials").secret(),
    ParamSpec::new("connectionstring", ParamKind::String, "Azure connection string (AccountName, AccountKey, BlobEndpoint or EndpointSuffix, DefaultEndpointsProtocol, SharedAccessSignature)").secret(),
    ParamSpec::new("realm", ParamKind::String, "domain suffix of the service endpoint (core.chinacloudapi.cn, core.usgovcloudapi.net, ...)").default_value("core.windows.net"),
    ParamSpec::new("serviceurl", ParamKind::String, "blob service URL (default https://<accountname>.blob.<realm>; Azurite: http://127.0.0.1:10000/devstoreaccount1)"),
    ParamSpec::new("rootdirectory", ParamKind::String, "blob name prefix under which everything is stored").default_value(""),
    ParamSpec::new("skipverify", ParamKind::Bool, "accept any TLS certificate (test servers only; logged as a warning)").default_value("false"),
    ParamSpec::new("chunksize", ParamKind::Integer { min: Some(256 << 10), max: Some(MAX_BLOCK) }, "block size of the writer in bytes (memory per writer is about maxconcurrency + 1 blocks)").default_value("4194304"),
    ParamSpec::new("maxconcurrency", ParamKind::Integer { min: Some(1), max: Some(1000) }, "blocks a writer uploads at once; also deletions in flight while deleting a directory (single deletes; one batch of 256 per 32)").default_value("4"),
];

/// How the driver authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Shared key (HMAC of each request with the account key).
    SharedKey {
        /// The base64 account key.
        key: String,
    },
    /// A fixed SAS token (from a connection string).
    Sas(String),
    /// An Entra ID service principal.
    ClientSecret {
        /// `tenantid`.
        tenant_id: String,
        /// `clientid`.
        client_id: String,
        /// `secret`.
        secret: String,
    },
    /// The default chain: environment, workload identity, managed identity (IMDS), Azure CLI.
    Default,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets are never printed.
        f.write_str(match self {
            Auth::SharedKey { .. } => "SharedKey",
            Auth::Sas(_) => "Sas",
            Auth::ClientSecret { .. } => "ClientSecret",
            Auth::Default => "Default",
        })
    }
}

/// Parsed configuration (see [`PARAMS`]).
#[derive(Clone, Debug)]
pub struct AzureParams {
    /// Timeouts and retries (the network parameters every object store takes).
    pub network: driver_objectstore::Network,
    /// Account name.
    pub account: String,
    /// Container.
    pub container: String,
    /// Blob service URL without a trailing slash.
    pub service_url: String,
    /// Credentials.
    pub auth: Auth,
    /// `rootdirectory`, without surrounding slashes.
    pub root: String,
    /// `skipverify`.
    pub skip_verify: bool,
    /// Writer block size.
    pub chunk_size: usize,
    /// Blocks a writer uploads at once; requests in flight for bulk deletes.
    pub max_concurrency: usize,
}

fn invalid(key: &str, expected: impl Into<String>) -> StorageError {
    StorageError::InvalidParameter {
        driver: DRIVER.into(),
        key: key.into(),
        expected: expected.into(),
    }
}

/// The fields of a connection string (`Key=Value;...`), keys as written.
fn connection_string(s: &str) -> Result<Vec<(String, String)>> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| {
                    invalid(
                        "connectionstring",
                        "Key=Value pairs separated by ';' (a part has no '=')",
                    )
                })
        })
        .collect()
}

fn credentials(v: Option<Value>, key: Option<String>) -> Result<Auth> {
    let map = match v {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(invalid("credentials", "a map with a `type` key")),
    };
    let field = |name: &str| -> Result<Option<String>> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(&format!("credentials.{name}"), "a string")),
        }
    };
    for k in map.keys() {
        if !["type", "clientid", "tenantid", "secret"].contains(&k.as_str()) {
            return Err(invalid(
                &format!("credentials.{k}"),
                "a known key (one of: type, clientid, tenantid, secret)",
            ));
        }
    }
    let kind = field("type")?;
    match kind.as_deref() {
        Some("shared_key") => {
            let key = key.ok_or_else(|| {
                invalid("accountkey", "required with credentials.type shared_key")
            })?;
            Ok(Auth::SharedKey { key })
        }
        Some("client_secret") => {
            let need = |n: &str| {
                field(n)?.ok_or_else(|| {
                    invalid(
                        &format!("credentials.{n}"),
                        "required with credentials.type client_secret",
                    )
                })
            };
            Ok(Auth::ClientSecret {
                tenant_id: need("tenantid")?,
                client_id: need("clientid")?,
                secret: need("secret")?,
            })
        }
        Some("default_credentials") | Some("default") => Ok(Auth::Default),
        Some(other) => Err(invalid(
            "credentials.type",
            format!("shared_key, client_secret or default_credentials, got {other:?}"),
        )),
        None => Ok(match key {
            Some(key) => Auth::SharedKey { key },
            None => Auth::Default,
        }),
    }
}

impl AzureParams {
    /// Parses and checks `params` (unknown keys are errors).
    pub fn parse(params: Parameters) -> Result<Self> {
        let mut r = params.reader(DRIVER, PARAMS);
        let mut account = r.string("accountname")?.filter(|s| !s.is_empty());
        let mut key = r.string("accountkey")?.filter(|s| !s.is_empty());
        let container = r.string("container")?.unwrap_or_default();
        let creds = r.value("credentials")?;
        let conn = r.string("connectionstring")?.filter(|s| !s.is_empty());
        let realm = r.string("realm")?.unwrap_or_default();
        let mut service_url = r.string("serviceurl")?.filter(|s| !s.is_empty());
        let root = r.string("rootdirectory")?.unwrap_or_default();
        let skip_verify = r.bool("skipverify")?.unwrap_or(false);
        let chunk_size = r.u64("chunksize")?.unwrap_or(4 << 20) as usize;
        let max_concurrency = r.u64("maxconcurrency")?.unwrap_or(4) as usize;
        let network = driver_objectstore::Network::read(&mut r, DRIVER)?;
        r.finish()?;

        let mut sas = None;
        if let Some(conn) = conn {
            let mut protocol = "https".to_owned();
            let mut suffix = None;
            for (k, v) in connection_string(&conn)? {
                match k.as_str() {
                    "AccountName" => account = account.or(Some(v)),
                    "AccountKey" => key = key.or(Some(v)),
                    "BlobEndpoint" => service_url = service_url.or(Some(v)),
                    "DefaultEndpointsProtocol" => protocol = v,
                    "EndpointSuffix" => suffix = Some(v),
                    "SharedAccessSignature" => sas = Some(v.trim_start_matches('?').to_owned()),
                    _ => {} // QueueEndpoint and friends: not ours.
                }
            }
            if service_url.is_none() {
                if let (Some(a), Some(s)) = (&account, &suffix) {
                    service_url = Some(format!("{protocol}://{a}.blob.{s}"));
                }
            }
        }
        let account = account.ok_or_else(|| {
            invalid(
                "accountname",
                "required string (or AccountName in connectionstring)",
            )
        })?;
        if container.is_empty() {
            return Err(invalid("container", "a container name"));
        }
        let service_url = service_url
            .unwrap_or_else(|| format!("https://{account}.blob.{realm}"))
            .trim_end_matches('/')
            .to_owned();
        if !(service_url.starts_with("https://") || service_url.starts_with("http://")) {
            return Err(invalid(
                "serviceurl",
                format!("an http(s) URL, got {service_url:?}"),
            ));
        }
        let auth = match sas {
            Some(token) if key.is_none() && creds.is_none() => Auth::Sas(token),
            _ => credentials(creds, key)?,
        };
        Ok(Self {
            network,
            account,
            container,
            service_url,
            auth,
            root: root.trim_matches('/').to_owned(),
            skip_verify,
            chunk_size,
            max_concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: Parameters) -> Result<AzureParams> {
        AzureParams::parse(p)
    }

    #[test]
    fn defaults_and_shared_key() {
        let p = parse(
            Parameters::new()
                .with("accountname", "acct")
                .with("accountkey", "a2V5")
                .with("container", "c"),
        )
        .unwrap();
        assert_eq!(p.service_url, "https://acct.blob.core.windows.net");
        assert_eq!(p.auth, Auth::SharedKey { key: "a2V5".into() });
        assert_eq!(p.network.max_retries, 5);
        assert_eq!(p.network.retry_delay, std::time::Duration::from_millis(100));
        assert_eq!(p.chunk_size, 4 << 20);
        assert_eq!(p.max_concurrency, 4);
        assert!(
            !format!("{p:?}").contains("a2V5"),
            "the key is never printed"
        );
    }

    #[test]
    fn connection_string_fills_account_key_and_endpoint() {
        let p = parse(
            Parameters::new()
                .with("container", "c")
                .with("connectionstring", "DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/dev;"),
        )
        .unwrap();
        assert_eq!(p.account, "dev");
        assert_eq!(p.service_url, "http://127.0.0.1:10000/dev");
        assert_eq!(p.auth, Auth::SharedKey { key: "a2V5".into() });
        let p = parse(Parameters::new().with("container", "c").with(
            "connectionstring",
            "AccountName=x;EndpointSuffix=core.chinacloudapi.cn;SharedAccessSignature=sv=1&sig=2",
        ))
        .unwrap();
        assert_eq!(p.service_url, "https://x.blob.core.chinacloudapi.cn");
        assert_eq!(p.auth, Auth::Sas("sv=1&sig=2".into()));
    }

    #[test]
    fn credentials_types() {
        let base = || {
            Parameters::new()
                .with("accountname", "a")
                .with("container", "c")
        };
        let p = parse(base().with("credentials", serde_json::json!({"type": "client_secret", "clientid": "i", "tenantid": "t", "secret": "s"}))).unwrap();
        assert!(matches!(p.auth, Auth::ClientSecret { .. }));
        assert_eq!(parse(base()).unwrap().auth, Auth::Default);
        let e = parse(base().with(
            "credentials",
            serde_json::json!({"type": "client_secret", "clientid": "i"}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("credentials.tenantid"), "{e}");
        let e =
            parse(base().with("credentials", serde_json::json!({"type": "magic"}))).unwrap_err();
        assert!(e.to_string().contains("credentials.type"), "{e}");
        let e = parse(base().with("credentials", serde_json::json!({"type": "shared_key"})))
            .unwrap_err();
        assert!(e.to_string().contains("accountkey"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let base = || {
            Parameters::new()
                .with("accountname", "a")
                .with("container", "c")
        };
        for (k, v, needle) in [
            ("max_retries", "-2", "max_retries"),
            ("retry_delay", "soon", "retry_delay"),
            ("chunksize", "1024", "chunksize"),
            ("serviceurl", "ftp://x", "serviceurl"),
            ("bogus", "1", "bogus"),
        ] {
            let e = parse(base().with(k, v)).unwrap_err();
            assert!(e.to_string().contains(needle), "{k}: {e}");
        }
        assert_eq!(
            parse(base().with("max_retries", -1))
                .unwrap()
                .network
                .max_retries,
            0
        );
        let e = parse(Parameters::new().with("accountname", "a")).unwrap_err();
        assert!(e.to_string().contains("container"), "{e}");
    }
}
