//! The Blob REST API as the driver uses it: URLs, signing, retries, and error mapping.
//!
//! Every request goes through [`RestClient::send`]: it is rebuilt and re-signed for each
//! attempt (shared key, SAS token or Entra ID bearer token, all through `reqsign`'s Azure
//! signer), retried by [`driver_http::Retry`] when idempotent, and its failures become
//! [`StorageError`]s naming the driver, the operation and the path.

use driver_api::Operation;
use std::time::Duration;

use bytes::Bytes;
use driver_api::async_trait;
use driver_api::{Result, StorageError, StoragePath};
pub use driver_http::Call;
use driver_http::{HttpConfig, RestClient, Retry};
use reqsign_azure_storage::{
    ClientSecretCredentialProvider, Credential, DefaultCredentialProvider, RequestSigner,
    ServiceSasResource, ServiceSharedAccessSignature, StaticCredentialProvider,
};
use reqsign_azure_storage::{
    UserDelegationSasGrant, UserDelegationSasGranter, UserDelegationSasPermissions,
};
use reqsign_core::time::Timestamp;
use reqsign_core::{Context, Granter, OsEnv, Signer};
use reqwest::header::{HeaderValue, CONTENT_LENGTH};
use reqwest::{Method, Response, StatusCode, Url};

use crate::params::{Auth, AzureParams};
use crate::DRIVER;

/// The REST API version the driver speaks (Azurite runs with `--skipApiVersionCheck`).
pub const API_VERSION: &str = "2023-11-03";

/// The HTTP side of the driver.
pub struct Client {
    http: reqwest::Client,
    retry: Retry,
    signer: Signer<Credential>,
    /// Grants user-delegation SAS tokens (Entra ID credentials only): the source-token
    /// granter and the grant it is re-bound to per blob.
    presigner: Option<(Granter<Credential>, UserDelegationSasGranter)>,
    account: String,
    /// The account key, for SAS URLs.
    key: Option<String>,
    container: String,
    /// `<service>/<container>`.
    container_url: Url,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("container_url", &self.container_url.as_str())
            .finish_non_exhaustive()
    }
}

fn internal(op: Operation, path: &StoragePath, what: impl std::fmt::Display) -> StorageError {
    StorageError::backend(DRIVER, op, path, what.to_string())
}

impl Client {
    /// Builds the client for `p`.
    pub fn new(p: &AzureParams) -> Result<Self> {
        let cfg = HttpConfig {
            skip_verify: p.skip_verify,
            ..HttpConfig::from(&p.network)
        };
        let http = cfg.client(DRIVER)?;
        let ctx = Context::new()
            .with_http_send(reqsign_http_send_reqwest::ReqwestHttpSend::new(
                http.clone(),
            ))
            .with_file_read(reqsign_file_read_tokio::TokioFileRead)
            .with_env(OsEnv);
        let mut key = None;
        let (signer, presigner) = match &p.auth {
            Auth::SharedKey { key: k } => {
                key = Some(k.clone());
                let provider = StaticCredentialProvider::new_shared_key(&p.account, k);
                (Signer::new(ctx, provider, RequestSigner::new()), None)
            }
            Auth::Sas(token) => {
                let provider = StaticCredentialProvider::new_sas_token(token);
                (Signer::new(ctx, provider, RequestSigner::new()), None)
            }
            Auth::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => {
                let provider = || {
                    ClientSecretCredentialProvider::new()
                        .with_tenant_id(tenant_id)
                        .with_client_id(client_id)
                        .with_client_secret(secret)
                };
                bearer_signers(ctx, p, provider)
            }
            Auth::Default => bearer_signers(ctx, p, DefaultCredentialProvider::new),
        };
        let mut container_url = Url::parse(&format!("{}/", p.service_url)).map_err(|e| {
            StorageError::InvalidParameter {
                driver: DRIVER.into(),
                key: "serviceurl".into(),
                expected: format!("a URL ({e})"),
            }
        })?;
        container_url
            .path_segments_mut()
            .map_err(|()| StorageError::InvalidParameter {
                driver: DRIVER.into(),
                key: "serviceurl".into(),
                expected: "an http(s) URL with a host".into(),
            })?
            .pop_if_empty()
            .push(&p.container);
        Ok(Self {
            http,
            retry: Retry::from(&cfg),
            signer,
            presigner,
            account: p.account.clone(),
            key,
            container: p.container.clone(),
            container_url,
        })
    }

    /// The URL of the blob named `name` (each `/`-separated segment percent-encoded).
    pub fn blob_url(&self, name: &str) -> Url {
        let mut url = self.container_url.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.extend(name.split('/'));
        }
        url
    }

    /// The container's URL with `query`.
    pub fn container_url(&self, query: &[(&str, &str)]) -> Url {
        let mut url = self.container_url.clone();
        url.query_pairs_mut().extend_pairs(query);
        url
    }

    /// Maps an unsuccessful response: `BlobNotFound` (and a bare 404 on a blob) is
    /// `PathNotFound`; authentication failures say which credentials to check.
    async fn map_error(&self, op: Operation, path: &StoragePath, resp: Response) -> StorageError {
        let status = resp.status();
        let header_code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = driver_http::error_body(resp).await;
        let code = header_code
            .or_else(|| driver_http::xml_tag(&body, "Code").map(str::to_owned))
            .unwrap_or_default();
        let message = driver_http::xml_tag(&body, "Message")
            .map(|m| m.lines().next().unwrap_or("").to_owned())
            .unwrap_or_default();
        // Azurite answers a bad signature with `AuthorizationFailure` (Azure's code for a
        // request it will not allow) and Azure's `AuthenticationFailed` message: judged
        // by that message, it is what Azure would call it.
        let code = if code == "AuthorizationFailure"
            && message.starts_with("Server failed to authenticate the request")
        {
            "AuthenticationFailed".to_owned()
        } else {
            code
        };
        if code == "BlobNotFound" || (status == StatusCode::NOT_FOUND && code.is_empty()) {
            return StorageError::not_found(DRIVER, path);
        }
        let mut detail = match (code.is_empty(), message.is_empty()) {
            (true, _) => message,
            (false, true) => code.clone(),
            (false, false) => format!("{code}: {message}"),
        };
        if code.starts_with("Authentication")
            || code.starts_with("Authorization")
            || status == StatusCode::FORBIDDEN
        {
            detail =
                format!("check accountkey / credentials and their role on the container: {detail}");
        } else if code == "ContainerNotFound" {
            detail = format!("container {:?} does not exist: {detail}", self.container);
        }
        driver_http::status_error(DRIVER, op, path, status, &code, &detail)
    }

    async fn sign(&self, call: &Call<'_>) -> Result<reqwest::Request> {
        let mut parts = call.parts(DRIVER)?;
        parts
            .headers
            .insert("x-ms-version", HeaderValue::from_static(API_VERSION));
        self.signer.sign(&mut parts, None).await.map_err(|e| {
            StorageError::backend(
                DRIVER,
                call.op,
                call.path,
                format!("cannot sign the request: {e}"),
            )
        })?;
        call.request(DRIVER, parts)
    }

    /// A read-only URL for the blob `name`, valid for `expiry`: a service SAS signed with
    /// the account key, or a user-delegation SAS for Entra ID credentials. `None` with a
    /// fixed SAS token (the driver cannot sign).
    pub async fn read_url(
        &self,
        path: &StoragePath,
        name: &str,
        expiry: Duration,
    ) -> Result<Option<String>> {
        let mut url = self.blob_url(name);
        if let Some(key) = &self.key {
            let expires = Timestamp::now() + expiry;
            let sas = ServiceSharedAccessSignature::new(
                self.account.clone(),
                key.clone(),
                ServiceSasResource::Blob {
                    container: self.container.clone(),
                    blob: name.to_owned(),
                },
                "r".into(),
                expires,
            )
            .with_version(API_VERSION)
            .token()
            .map_err(|e| {
                internal(
                    Operation::RedirectUrl,
                    path,
                    format_args!("cannot sign a SAS: {e}"),
                )
            })?;
            url.query_pairs_mut().extend_pairs(sas);
            return Ok(Some(url.into()));
        }
        let Some((granter, udsg)) = &self.presigner else {
            return Ok(None);
        };
        let grant = UserDelegationSasGrant::for_blob(
            self.container.clone(),
            name,
            UserDelegationSasPermissions::READ,
        );
        let token = granter
            .clone()
            .with_credential_granter(udsg.clone().with_grant(grant))
            .grant(Some(expiry))
            .await
            .map_err(|e| {
                internal(
                    Operation::RedirectUrl,
                    path,
                    format_args!("cannot get a user delegation SAS: {e}"),
                )
            })?;
        match token {
            Credential::SasToken { token, .. } => {
                url.set_query(Some(&token));
                Ok(Some(url.into()))
            }
            _ => Err(internal(
                Operation::RedirectUrl,
                path,
                "the granter returned no SAS token",
            )),
        }
    }

    /// Deletes up to 256 blobs in one `Blob Batch` request. Returns each blob's status
    /// (202 deleted, 404 absent, ...) in order, or `None` when the service refuses batches
    /// (then the caller deletes one by one).
    pub async fn delete_batch(
        &self,
        op: Operation,
        path: &StoragePath,
        names: &[String],
    ) -> Result<Option<Vec<u16>>> {
        use std::fmt::Write as _;
        let boundary = format!("batch_{}", crate::writer::random_hex());
        let mut body = String::with_capacity(names.len() * 400);
        for (i, name) in names.iter().enumerate() {
            // Each sub-request is signed on its own, without x-ms-version (Azure's rule).
            let (mut parts, ()) = http::Request::new(()).into_parts();
            parts.method = Method::DELETE;
            parts.uri = self
                .blob_url(name)
                .as_str()
                .parse()
                .map_err(|e| internal(op, path, format_args!("bad URL: {e}")))?;
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
            parts
                .headers
                .insert("x-ms-delete-snapshots", HeaderValue::from_static("include"));
            self.signer
                .sign(&mut parts, None)
                .await
                .map_err(|e| internal(op, path, format_args!("cannot sign the request: {e}")))?;
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let _ = write!(
                body,
                "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {i}\r\n\r\nDELETE {target} HTTP/1.1\r\n"
            );
            for (k, v) in &parts.headers {
                let _ = write!(body, "{k}: {}\r\n", v.to_str().unwrap_or(""));
            }
            body.push_str("\r\n");
        }
        let _ = write!(body, "--{boundary}--\r\n");
        let url = self.container_url(&[("restype", "container"), ("comp", "batch")]);
        let call = Call::new(op, path, Method::POST, url)
            .header(
                "content-type",
                format!("multipart/mixed; boundary={boundary}"),
            )
            .body(Bytes::from(body));
        let answer = self.fetch(call, &[202, 400, 404, 405, 501]).await?;
        if answer.status.as_u16() != 202 {
            return Ok(None);
        }
        parse_batch(&answer.text(), names.len())
            .map(Some)
            .ok_or_else(|| internal(op, path, "unexpected batch response"))
    }

    /// A request on the container itself (create, delete) accepting statuses `ok`.
    pub async fn container_op(&self, method: Method, ok: &[u16]) -> Result<()> {
        let root = StoragePath::root();
        let url = self.container_url(&[("restype", "container")]);
        self.expect(Call::new(Operation::Connect, &root, method, url), ok)
            .await
            .map(drop)
    }

    /// A response header as text.
    pub fn header<'r>(resp: &'r Response, name: &str) -> Option<&'r str> {
        resp.headers().get(name).and_then(|v| v.to_str().ok())
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
        self.sign(call).await
    }

    async fn error(&self, op: Operation, path: &StoragePath, resp: Response) -> StorageError {
        self.map_error(op, path, resp).await
    }
}

/// Request signing and SAS granting from Entra ID tokens; `provider` makes a credential
/// provider (one for each, as the chain's providers cannot be shared).
fn bearer_signers<P>(
    ctx: Context,
    p: &AzureParams,
    provider: impl Fn() -> P,
) -> (
    Signer<Credential>,
    Option<(Granter<Credential>, UserDelegationSasGranter)>,
)
where
    P: reqsign_core::ProvideCredential<Credential = Credential>,
{
    // The grant is re-bound to the requested blob for each URL.
    let placeholder = UserDelegationSasGrant::for_container(
        p.container.clone(),
        UserDelegationSasPermissions::READ,
    );
    let udsg = UserDelegationSasGranter::new(p.account.clone(), placeholder)
        .with_trusted_endpoint(p.service_url.clone());
    let granter = Granter::new(ctx.clone(), provider(), udsg.clone());
    (
        Signer::new(ctx, provider(), RequestSigner::new()),
        Some((granter, udsg)),
    )
}

/// The status of each sub-response of a batch response, indexed by `Content-ID`.
fn parse_batch(text: &str, n: usize) -> Option<Vec<u16>> {
    let mut out = vec![0u16; n];
    for part in text.split("Content-ID:").skip(1) {
        let (id, rest) = part.trim_start().split_once(|c: char| c.is_whitespace())?;
        let id: usize = id.parse().ok()?;
        let status = rest.split("HTTP/1.1 ").nth(1)?.get(..3)?.parse().ok()?;
        *out.get_mut(id)? = status;
    }
    out.iter().all(|s| *s != 0).then_some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn batch_responses() {
        let text = "--batchresponse_1\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nHTTP/1.1 404 The specified blob does not exist.\r\nx-ms-error-code: BlobNotFound\r\n\r\n--batchresponse_1\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\n\r\n--batchresponse_1--";
        assert_eq!(super::parse_batch(text, 2), Some(vec![202, 404]));
        assert_eq!(super::parse_batch(text, 3), None, "a missing sub-response");
        assert_eq!(super::parse_batch("garbage", 1), None);
    }
}
