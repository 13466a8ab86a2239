//! The GCS JSON API as the driver uses it: URLs, credentials, retries, error mapping.
//!
//! Every request goes through [`Client::send`]: it is rebuilt for each attempt with fresh
//! credential headers (from `google-cloud-auth`, which caches and renews tokens), retried
//! by [`driver_http::Retry`] when idempotent, and its failures become [`StorageError`]s
//! naming the driver, the operation and the path.

use driver_api::Operation;
use driver_api::{async_trait, Result, StorageError, StoragePath};
use driver_http::{Call, HttpConfig, RestClient, Retry};
use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;

use crate::params::{Auth, GcsParams};
use crate::sign::UrlSigner;
use crate::DRIVER;

/// OAuth scope of the driver's tokens (Distribution asks for the same).
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.full_control";

/// The HTTP side of the driver.
pub(crate) struct Client {
    http: reqwest::Client,
    retry: Retry,
    /// `None`: anonymous.
    creds: Option<Credentials>,
    /// V4 URL signer (service-account keys only).
    pub(crate) signer: Option<UrlSigner>,
    endpoint: Url,
    bucket: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// An object resource (the fields the driver reads).
#[derive(Debug, Deserialize)]
pub(crate) struct Object {
    pub name: String,
    /// Decimal, as GCS sends 64-bit numbers.
    #[serde(default)]
    pub size: String,
    #[serde(default)]
    pub updated: String,
}

impl Object {
    pub fn size(&self) -> u64 {
        self.size.parse().unwrap_or(0)
    }

    pub fn mod_time(&self) -> std::time::SystemTime {
        parse_time(&self.updated)
    }
}

/// An RFC 3339 time (epoch when unparsable).
pub(crate) fn parse_time(s: &str) -> std::time::SystemTime {
    s.parse::<jiff::Timestamp>()
        .map(std::time::SystemTime::from)
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
}

/// One page of `objects.list`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectList {
    #[serde(default)]
    pub items: Vec<Object>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    pub next_page_token: Option<String>,
}

/// The answer to `objects.rewrite`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Rewrite {
    pub done: bool,
    pub rewrite_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorReason>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorReason {
    #[serde(default)]
    reason: String,
}

fn invalid(key: &str, expected: String) -> StorageError {
    StorageError::InvalidParameter {
        driver: DRIVER.into(),
        key: key.into(),
        expected,
    }
}

impl Client {
    /// Builds the client for `p`. No request is made (ADC files are read here).
    pub fn new(p: &GcsParams) -> Result<Self> {
        let cfg = HttpConfig {
            user_agent: p.user_agent.clone(),
            ..HttpConfig::from(&p.network)
        };
        // Installs the rustls provider that google-cloud-auth's key parsing needs.
        let http = cfg.client(DRIVER)?;
        let (creds, signer) = match &p.auth {
            Auth::Anonymous => (None, None),
            Auth::Default => {
                let c = credentials::Builder::default()
                    .with_scopes([SCOPE])
                    .build()
                    .map_err(|e| StorageError::Config {
                        driver: DRIVER.into(),
                        message: format!("application default credentials: {e}"),
                    })?;
                (Some(c), None)
            }
            Auth::ServiceAccount(key) => {
                let bad = |e: &dyn std::fmt::Display| {
                    invalid("credentials", format!("a usable service-account key ({e})"))
                };
                let c = credentials::service_account::Builder::new(key.clone())
                    .with_access_specifier(
                        credentials::service_account::AccessSpecifier::from_scopes([SCOPE]),
                    )
                    .build()
                    .map_err(|e| bad(&e))?;
                (Some(c), Some(UrlSigner::new(key).map_err(|e| bad(&e))?))
            }
        };
        let endpoint = Url::parse(&format!("{}/", p.endpoint))
            .ok()
            .filter(|u| u.has_host())
            .ok_or_else(|| invalid("endpoint", format!("a URL, got {:?}", p.endpoint)))?;
        Ok(Self {
            http,
            retry: Retry::from(&cfg),
            creds,
            signer,
            endpoint,
            bucket: p.bucket.clone(),
        })
    }

    /// The service URL (for signed URLs).
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.endpoint.clone();
        if let Ok(mut s) = url.path_segments_mut() {
            s.pop_if_empty().extend(segments);
        }
        url
    }

    /// A session URI from an upload state, sent to this client's endpoint: the state may
    /// have been written by an instance that reached the service by another address (a
    /// proxy, another name for the same endpoint), and the session is the service's, not
    /// the address's. The path and query (which carry the session) are kept.
    pub fn session_at_endpoint(&self, mut session: Url) -> Url {
        if session.origin() != self.endpoint.origin() {
            // Both are absolute http(s) URLs, so setting the parts cannot fail; if one
            // did, the URI stays as it was recorded.
            let _ = session.set_scheme(self.endpoint.scheme());
            let _ = session.set_host(self.endpoint.host_str());
            let _ = session.set_port(self.endpoint.port());
        }
        session
    }

    /// `…/storage/v1/b/<bucket>/o/<name>` (the name is one segment: `/` is encoded).
    pub fn object_url(&self, name: &str) -> Url {
        self.url(&["storage", "v1", "b", &self.bucket, "o", name])
    }

    /// `…/storage/v1/b/<bucket>/o` with `query`.
    pub fn objects_url(&self, query: &[(&str, &str)]) -> Url {
        let mut url = self.url(&["storage", "v1", "b", &self.bucket, "o"]);
        url.query_pairs_mut().extend_pairs(query);
        url
    }

    /// The upload endpoint for object `name`: `uploadType` is `media` or `resumable`.
    pub fn upload_url(&self, upload_type: &str, name: &str) -> Url {
        let mut url = self.url(&["upload", "storage", "v1", "b", &self.bucket, "o"]);
        url.query_pairs_mut()
            .append_pair("uploadType", upload_type)
            .append_pair("name", name);
        url
    }

    /// `objects.rewrite` of `src` onto `dst`.
    pub fn rewrite_url(&self, src: &str, dst: &str, token: Option<&str>) -> Url {
        let b = self.bucket.as_str();
        let mut url = self.url(&[
            "storage",
            "v1",
            "b",
            b,
            "o",
            src,
            "rewriteTo",
            "b",
            b,
            "o",
            dst,
        ]);
        if let Some(t) = token {
            url.query_pairs_mut().append_pair("rewriteToken", t);
        }
        url
    }

    /// Maps an unsuccessful answer about the bucket (a listing): 404 means the bucket
    /// does not exist.
    pub async fn list_error(
        &self,
        op: Operation,
        path: &StoragePath,
        resp: Response,
    ) -> StorageError {
        self.status_error(op, path, resp).await
    }

    async fn status_error(
        &self,
        op: Operation,
        path: &StoragePath,
        resp: Response,
    ) -> StorageError {
        let status = resp.status();
        let body = driver_http::error_body(resp).await;
        let parsed: ErrorBody = serde_json::from_str(&body).unwrap_or_default();
        let reason = parsed
            .error
            .errors
            .first()
            .map(|r| r.reason.clone())
            .unwrap_or_default();
        let mut detail = match (reason.is_empty(), parsed.error.message.is_empty()) {
            (_, true) => body
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
            (true, false) => parsed.error.message,
            (false, false) => format!("{reason}: {}", parsed.error.message),
        };
        match status.as_u16() {
            401 | 403 => {
                detail = format!(
                    "check keyfile / credentials and the account's rights on bucket {:?}: \
                     {detail}",
                    self.bucket
                )
            }
            404 => detail = format!("bucket {:?} does not exist: {detail}", self.bucket),
            _ => {}
        }
        driver_http::status_error(DRIVER, op, path, status, "", &detail)
    }
}

#[async_trait]
impl RestClient for Client {
    const DRIVER: &'static str = DRIVER;

    fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn retry(&self) -> Retry {
        self.retry
    }

    /// The request of one attempt, with fresh credentials.
    async fn build(&self, call: &Call<'_>) -> Result<reqwest::Request> {
        let mut parts = call.parts(DRIVER)?;
        if let Some(creds) = &self.creds {
            let headers = creds
                .headers(http::Extensions::new())
                .await
                .map_err(|e| auth_error(call, &e))?;
            if let CacheableResource::New { data, .. } = headers {
                parts.headers.extend(data);
            }
        }
        call.request(DRIVER, parts)
    }

    /// Maps an unsuccessful answer about an object: 404 is `PathNotFound`;
    /// authentication failures say which credentials to check.
    async fn error(&self, op: Operation, path: &StoragePath, resp: Response) -> StorageError {
        if resp.status() == StatusCode::NOT_FOUND {
            return StorageError::not_found(DRIVER, path);
        }
        self.status_error(op, path, resp).await
    }
}

/// Credentials that cannot be had: a transient failure (the token service unreachable)
/// is a retryable `Backend` error, a refusal `Unauthenticated`.
fn auth_error(call: &Call<'_>, e: &google_cloud_auth::errors::CredentialsError) -> StorageError {
    let text = format!("cannot obtain credentials: {e}");
    if e.is_transient() {
        StorageError::backend(DRIVER, call.op, call.path, text).with_retryable(true)
    } else {
        StorageError::unauthenticated(DRIVER, call.op, call.path, text)
    }
}
