//! The OSS REST API as the driver uses it: URLs, signing, retries and error mapping.
//!
//! Every request goes through [`RestClient::send`]: it is rebuilt and re-signed for each
//! attempt by `reqsign`'s Aliyun OSS signer (V4 `OSS4-HMAC-SHA256` or V1), retried by
//! [`driver_http::Retry`] when idempotent, and an error answer becomes a
//! [`StorageError::Backend`] whose source is a typed [`ServiceError`] (OSS's error code,
//! message and request id), naming the driver, the operation and the path.

use driver_api::Operation;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use driver_api::async_trait;
use driver_api::{Result, StorageError, StoragePath};
pub use driver_http::Call;
use driver_http::{HttpConfig, RestClient, Retry};
use driver_objectstore::auth::AuthFailure;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqsign_aliyun_oss::{Credential, RequestSigner, SigningVersion, StaticCredentialProvider};
use reqsign_core::{Context, Signer};
use reqwest::{Method, Response, StatusCode, Url};

use crate::params::{OssParams, SignatureVersion};
use crate::DRIVER;

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (a `+` or a
/// space in a query is never ambiguous).
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s` for a query value (or anything else that needs every reserved
/// character encoded).
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, STRICT).to_string()
}

/// An error answer from OSS: the typed source of the driver's `Backend`,
/// `Unauthenticated` and `PermissionDenied` errors, so callers can match on
/// [`code`](Self::code) (`SignatureDoesNotMatch`, `NoSuchBucket`, ...). For refused
/// credentials, matching `StorageError::Unauthenticated` is enough (the same for every
/// driver); the helper below reads the code itself.
///
/// ```
/// # use driver_oss::ServiceError;
/// fn is_auth_failure(e: &driver_api::StorageError) -> bool {
///     std::error::Error::source(e)
///         .and_then(|s| s.downcast_ref::<ServiceError>())
///         .is_some_and(ServiceError::is_auth)
/// }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message} (HTTP {status}{}){}", request_id.as_ref().map(|r| format!(", request id {r}")).unwrap_or_default(), hint.unwrap_or(""))]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// OSS's error code (`NoSuchKey`, `SignatureDoesNotMatch`, ...); empty when the
    /// answer had no body (HEAD).
    pub code: String,
    /// OSS's message.
    pub message: String,
    /// `x-oss-request-id`, for Aliyun support.
    pub request_id: Option<String>,
    /// What to check, for errors with a usual cause.
    pub hint: Option<&'static str>,
}

impl ServiceError {
    /// Whether OSS refused the credentials or the signature.
    pub fn is_auth(&self) -> bool {
        matches!(
            self.code.as_str(),
            "SignatureDoesNotMatch"
                | "InvalidAccessKeyId"
                | "AccessDenied"
                | "SecurityTokenExpired"
                | "InvalidSecurityToken"
                | "RequestTimeTooSkewed"
        ) || (self.status == 403 && self.code.is_empty())
    }
}

/// The HTTP side of the driver.
pub struct Client {
    http: reqwest::Client,
    retry: Retry,
    signer: Signer<Credential>,
    /// `https://<bucket>.<endpoint>/` or, path-style, `http://<endpoint>/<bucket>/`.
    bucket_url: Url,
    bucket: String,
    encrypt: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bucket_url", &self.bucket_url.as_str())
            .finish_non_exhaustive()
    }
}

fn internal(op: Operation, path: &StoragePath, what: impl std::fmt::Display) -> StorageError {
    StorageError::backend(DRIVER, op, path, what.to_string())
}

impl Client {
    /// Builds the client for `p`. No request is made.
    pub fn new(p: &OssParams) -> Result<Self> {
        let cfg = HttpConfig {
            skip_verify: p.skip_verify,
            ..HttpConfig::from(&p.network)
        };
        let http = cfg.client(DRIVER)?;
        let signer = signer(p);
        let url = if p.path_style {
            format!("{}://{}/{}/", p.scheme, p.endpoint_host, p.bucket)
        } else {
            format!("{}://{}.{}/", p.scheme, p.bucket, p.endpoint_host)
        };
        let bucket_url = Url::parse(&url).map_err(|e| StorageError::InvalidParameter {
            driver: DRIVER.into(),
            key: "endpoint".into(),
            expected: format!("a host name that makes a valid URL ({e})"),
        })?;
        Ok(Self {
            http,
            retry: Retry::from(&cfg),
            signer,
            bucket_url,
            bucket: p.bucket.clone(),
            encrypt: p.encrypt,
        })
    }

    /// The URL of object `key`, with `query` (`("uploads", "")` is sent as `uploads`).
    pub fn object_url(&self, key: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.bucket_url.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(key.split('/'));
        }
        set_query(&mut url, query);
        url
    }

    /// The bucket's URL with `query`.
    pub fn bucket_url(&self, query: &[(&str, &str)]) -> Url {
        let mut url = self.bucket_url.clone();
        set_query(&mut url, query);
        url
    }

    /// `x-oss-copy-source` naming object `key` of this bucket.
    pub fn copy_source(&self, key: &str) -> String {
        let key: Vec<String> = key.split('/').map(encode).collect();
        format!("/{}/{}", self.bucket, key.join("/"))
    }

    /// Adds what every new object carries (server-side encryption when configured).
    pub fn new_object<'a>(&self, call: Call<'a>) -> Call<'a> {
        if self.encrypt {
            call.header("x-oss-server-side-encryption", "AES256")
        } else {
            call
        }
    }

    /// Sends `call`, expects 200 and returns the body as text.
    pub async fn text(&self, call: Call<'_>) -> Result<String> {
        Ok(self.fetch(call, &[200]).await?.text().into_owned())
    }

    /// A presigned URL for `method` on `key`, valid for `expiry`.
    pub async fn presign(
        &self,
        path: &StoragePath,
        method: Method,
        key: &str,
        expiry: Duration,
    ) -> Result<String> {
        let url = self.object_url(key, &[]);
        let call = Call::new(Operation::RedirectUrl, path, method, url);
        let req = self.sign(&call, Some(expiry)).await?;
        Ok(req.url().to_string())
    }

    /// Maps an unsuccessful response: `NoSuchKey` (and a bodiless 404) is
    /// `PathNotFound`; everything else a `Backend` error with a [`ServiceError`] source.
    async fn map_error(&self, op: Operation, path: &StoragePath, resp: Response) -> StorageError {
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-oss-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // HEAD answers carry their error document base64-encoded in `x-oss-err`.
        let header_doc = resp
            .headers()
            .get("x-oss-err")
            .and_then(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_bytes())
                    .ok()
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let mut body = driver_http::error_body(resp).await;
        if body.trim().is_empty() {
            body = header_doc.unwrap_or_default();
        }
        let code = driver_http::xml_tag(&body, "Code")
            .unwrap_or_default()
            .to_owned();
        let message = driver_http::xml_tag(&body, "Message")
            .map(|m| m.lines().next().unwrap_or("").to_owned())
            .unwrap_or_default();
        if code == "NoSuchKey" || (status == StatusCode::NOT_FOUND && code.is_empty()) {
            return StorageError::not_found(DRIVER, path);
        }
        let mut e = ServiceError {
            status: status.as_u16(),
            code,
            message,
            request_id,
            hint: None,
        };
        e.hint = if e.is_auth() {
            Some(": check accesskeyid, accesskeysecret, securitytoken and region")
        } else if e.code == "NoSuchBucket" {
            Some(": the bucket must exist")
        } else {
            None
        };
        // The typed ServiceError stays the source, whichever variant carries it.
        if let Some(auth) = AuthFailure::of(e.status, &e.code) {
            return auth.error(DRIVER, op, path, e);
        }
        let retryable = driver_http::retryable_status(status);
        StorageError::backend(DRIVER, op, path, e).with_retryable(retryable)
    }

    /// The signed request of one attempt of `call` (a presigned URL with `presign`).
    async fn sign(&self, call: &Call<'_>, presign: Option<Duration>) -> Result<reqwest::Request> {
        let mut parts = call.parts(DRIVER)?;
        self.signer.sign(&mut parts, presign).await.map_err(|e| {
            internal(
                call.op,
                call.path,
                format_args!("cannot sign the request: {e}"),
            )
        })?;
        call.request(DRIVER, parts)
    }

    /// A response header as text.
    pub fn header<'r>(resp: &'r Response, name: &str) -> Option<&'r str> {
        resp.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// A request with an XML body (idempotent unless the caller marks it
    /// [`Call::once`]).
    pub fn xml_call<'a>(
        op: Operation,
        path: &'a StoragePath,
        method: Method,
        url: Url,
        body: String,
    ) -> Call<'a> {
        Call::new(op, path, method, url)
            .header("content-type", "application/xml")
            .body(Bytes::from(body))
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

    async fn build(&self, call: &Call<'_>) -> Result<reqwest::Request> {
        self.sign(call, None).await
    }

    async fn error(&self, op: Operation, path: &StoragePath, resp: Response) -> StorageError {
        self.map_error(op, path, resp).await
    }
}

/// The request signer `p` configures: static credentials (with the STS token, if any),
/// V4 scoped to the region or V1.
pub(crate) fn signer(p: &OssParams) -> Signer<Credential> {
    let mut provider =
        StaticCredentialProvider::new(&p.access_key_id, p.access_key_secret.expose());
    if let Some(t) = &p.security_token {
        provider = provider.with_security_token(t.expose());
    }
    let rs = RequestSigner::new(&p.bucket);
    let rs = match p.signature {
        SignatureVersion::V1 => rs.with_signing_version(SigningVersion::V1),
        SignatureVersion::V4 => rs
            .with_region(p.region.clone())
            .with_signing_version(SigningVersion::V4),
    };
    Signer::new(Context::new(), provider, rs)
}

fn set_query(url: &mut Url, query: &[(&str, &str)]) {
    if query.is_empty() {
        return;
    }
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                encode(k)
            } else {
                format!("{}={}", encode(k), encode(v))
            }
        })
        .collect();
    url.set_query(Some(&q.join("&")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use driver_api::Parameters;

    fn client(extra: &[(&str, &str)]) -> Client {
        let mut p = Parameters::new()
            .with("accesskeyid", "ak")
            .with("accesskeysecret", "sk")
            .with("region", "cn-hangzhou")
            .with("bucket", "bkt");
        for (k, v) in extra {
            p = p.with(*k, *v);
        }
        Client::new(&OssParams::parse(p).unwrap()).unwrap()
    }

    #[test]
    fn urls() {
        let c = client(&[]);
        assert_eq!(
            c.object_url("a/b c+d", &[("uploadId", "x+y/z")]).as_str(),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/a/b%20c+d?uploadId=x%2By%2Fz"
        );
        assert_eq!(
            c.bucket_url(&[("uploads", ""), ("prefix", "a b")]).as_str(),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/?uploads&prefix=a%20b"
        );
        assert_eq!(c.copy_source("a/b c"), "/bkt/a/b%20c");
        let c = client(&[("endpoint", "http://127.0.0.1:9/")]);
        assert_eq!(c.object_url("k", &[]).as_str(), "http://127.0.0.1:9/bkt/k");
        assert_eq!(c.bucket_url(&[]).as_str(), "http://127.0.0.1:9/bkt/");
    }

    #[test]
    fn service_errors_are_typed_and_hint() {
        let e = ServiceError {
            status: 403,
            code: "SignatureDoesNotMatch".into(),
            message: "bad".into(),
            request_id: Some("R1".into()),
            hint: Some(": check it"),
        };
        assert!(e.is_auth());
        assert_eq!(
            e.to_string(),
            "SignatureDoesNotMatch: bad (HTTP 403, request id R1): check it"
        );
    }
}
