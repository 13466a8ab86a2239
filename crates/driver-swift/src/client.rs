//! Swift's REST API as the driver uses it, in one place: authentication (TempAuth v1,
//! Keystone v2.0 and v3 password auth), the token cache, requests, TempURL signing and
//! error mapping.
//!
//! Every request goes through [`Client::send`]: it carries the cached token; transient
//! failures of idempotent requests are retried by [`driver_http::Retry`]; a `401` means
//! the token expired or was revoked, so the client authenticates again (one request for
//! all callers holding the same stale token) and sends the same request again, body
//! included (bodies are [`bytes::Bytes`]: a writer's segment is re-sent, not lost). A
//! request Swift refused with `401` did nothing, so re-sending it is safe even when it is
//! not idempotent.
//!
//! Tokens, passwords and TempURL keys are never logged and never in `Debug` output.

use driver_api::Operation;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use driver_api::{async_trait, Result, StorageError, StoragePath};
use driver_http::{Call, HttpConfig, RestClient, Retry, SendRetry};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::params::{AuthVersion, Secret, SwiftParams, TempUrlDigest};
use crate::DRIVER;

/// Why authentication failed (the source of the `Backend` error of operation
/// `authenticate`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The identity service refused the credentials.
    #[error("the identity service at {url} refused the credentials (HTTP {status}): check username, password (and tenant/domain for Keystone)")]
    Rejected {
        /// The identity URL (no secrets in it).
        url: String,
        /// Its answer.
        status: u16,
    },
    /// The identity service answered something the driver cannot use.
    #[error("unexpected answer from the identity service at {url}: {detail}")]
    BadAnswer {
        /// The identity URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The Keystone catalog has no matching object-store endpoint.
    #[error("no object-store endpoint of interface {interface:?}{} in the Keystone catalog", region.as_ref().map(|r| format!(" in region {r:?}")).unwrap_or_default())]
    NoEndpoint {
        /// `endpointtype`.
        interface: String,
        /// `region`.
        region: Option<String>,
    },
}

/// A token and where it is valid.
struct Session {
    token: Secret,
    storage_url: Url,
    /// Project / tenant id, when the identity service said (TempURL `accesskey` form).
    tenant_id: Option<String>,
    /// Increases with every authentication: who already renewed a stale token.
    generation: u64,
}

/// The HTTP side of the driver.
pub(crate) struct Client {
    http: reqwest::Client,
    retry: Retry,
    p: SwiftParams,
    session: Mutex<Option<Arc<Session>>>,
    /// Only one authentication at a time.
    auth_lock: tokio::sync::Mutex<()>,
    /// Authentications made (a metric; the token-expiry test reads it).
    pub(crate) auth_count: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("auth_url", &self.p.auth_url)
            .field("container", &self.p.container)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters and `/`.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A POST of the JSON `body` to the identity service's `endpoint`.
fn json_post(path: &StoragePath, endpoint: Url, body: String) -> Call<'_> {
    Call::new(Operation::Authenticate, path, Method::POST, endpoint)
        .header("content-type", "application/json")
        .body(body.into())
}

/// Undoes percent-encoding (as `X-Object-Manifest` values come); a malformed escape is
/// kept as it is.
pub(crate) fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One entry of a container listing (`format=json`).
#[derive(Debug, Deserialize)]
pub(crate) struct Entry {
    /// Object name; absent for a `subdir` entry.
    #[serde(default)]
    pub name: Option<String>,
    /// Pseudo-directory of a delimited listing.
    #[serde(default)]
    pub subdir: Option<String>,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub last_modified: String,
    /// The object's MD5 (a large object's: its manifest's, or on radosgw that of empty
    /// content).
    #[serde(default)]
    pub hash: Option<String>,
    /// Present on SLO manifests (OpenStack Swift; radosgw lists none).
    #[serde(default)]
    pub slo_etag: Option<String>,
}

impl Entry {
    /// `last_modified`, epoch when unparsable. Swift sends UTC without a zone and with
    /// microseconds (`2026-12-03T15:04:05.123456`); Ceph's RADOS Gateway milliseconds and
    /// a `Z` (`2026-12-03T15:04:05.123Z`); any RFC 3339 offset is honoured.
    pub fn mod_time(&self) -> SystemTime {
        parse_listing_time(&self.last_modified).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// A listing's `last_modified` in any of the forms Swift implementations send: with a
/// zone or offset (an instant), or without (UTC).
pub(crate) fn parse_listing_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(SystemTime::from(ts));
    }
    let civil = text.parse::<jiff::civil::DateTime>().ok()?;
    let zoned = civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?;
    Some(SystemTime::from(zoned.timestamp()))
}

/// `X-Timestamp` (seconds with a fraction) as a time.
pub(crate) fn x_timestamp(resp: &Response) -> SystemTime {
    resp.headers()
        .get("x-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Keystone v2.0's answer (the fields used).
#[derive(Deserialize)]
struct V2Answer {
    access: V2Access,
}
#[derive(Deserialize)]
struct V2Access {
    token: V2Token,
    #[serde(rename = "serviceCatalog", default)]
    catalog: Vec<V2Service>,
}
#[derive(Deserialize)]
struct V2Token {
    id: String,
    #[serde(default)]
    tenant: Option<V2Tenant>,
}
#[derive(Deserialize)]
struct V2Tenant {
    id: String,
}
#[derive(Deserialize)]
struct V2Service {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<Value>,
}

/// Keystone v3's answer (the fields used).
#[derive(Deserialize)]
struct V3Answer {
    token: V3Token,
}
#[derive(Deserialize)]
struct V3Token {
    #[serde(default)]
    catalog: Vec<V3Service>,
    #[serde(default)]
    project: Option<V2Tenant>,
}
#[derive(Deserialize)]
struct V3Service {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<V3Endpoint>,
}
#[derive(Deserialize)]
struct V3Endpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

fn auth_path() -> StoragePath {
    StoragePath::root()
}

impl Client {
    /// Builds the client for `p`. No request is made.
    pub fn new(p: &SwiftParams) -> Result<Self> {
        let cfg = HttpConfig {
            skip_verify: p.insecure_skip_verify,
            ..HttpConfig::from(&p.network)
        };
        Ok(Self {
            http: cfg.client(DRIVER)?,
            retry: Retry::from(&cfg),
            p: p.clone(),
            session: Mutex::new(None),
            auth_lock: tokio::sync::Mutex::new(()),
            auth_count: AtomicU64::new(0),
        })
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.session.lock().ok().and_then(|s| s.clone())
    }

    /// The session to use: the cached one, or a new one.
    async fn session(&self) -> Result<Arc<Session>> {
        match self.current() {
            Some(s) => Ok(s),
            None => self.renew(0).await,
        }
    }

    /// Authenticates again unless someone already replaced the session of generation
    /// `stale` (then that newer session is returned).
    async fn renew(&self, stale: u64) -> Result<Arc<Session>> {
        let _guard = self.auth_lock.lock().await;
        if let Some(s) = self.current() {
            if s.generation > stale {
                return Ok(s);
            }
        }
        let n = self.auth_count.fetch_add(1, Relaxed) + 1;
        let mut s = self.authenticate().await?;
        s.generation = n;
        let s = Arc::new(s);
        if let Ok(mut slot) = self.session.lock() {
            *slot = Some(s.clone());
        }
        tracing::debug!(driver = DRIVER, generation = n, "authenticated");
        Ok(s)
    }

    /// Authenticates now (at construction, to fail early on bad credentials).
    pub async fn login(&self) -> Result<()> {
        let stale = self.current().map_or(0, |s| s.generation);
        self.renew(stale).await.map(drop)
    }

    /// A refusal of the credentials is `Unauthenticated` (the typed [`AuthError`] its
    /// source); an unusable answer or catalog a `Backend` error.
    fn auth_error(&self, e: AuthError) -> StorageError {
        match e {
            AuthError::Rejected { .. } => {
                StorageError::unauthenticated(DRIVER, Operation::Authenticate, &auth_path(), e)
            }
            _ => StorageError::backend(DRIVER, Operation::Authenticate, &auth_path(), e),
        }
    }

    async fn authenticate(&self) -> Result<Session> {
        self.authenticate_inner().await.map_err(|e| match e {
            AuthOrStorage::Auth(a) => self.auth_error(a),
            AuthOrStorage::Storage(s) => s,
        })
    }

    async fn authenticate_inner(&self) -> std::result::Result<Session, AuthOrStorage> {
        let p = &self.p;
        let path = auth_path();
        let url = p.auth_url.clone();
        let bad = |detail: String| AuthError::BadAnswer {
            url: url.clone(),
            detail,
        };
        let parse = |u: &str| Url::parse(u).map_err(|e| bad(format!("bad URL {u:?}: {e}")));
        match p.auth_version {
            AuthVersion::V1 => {
                let call = Call::new(Operation::Authenticate, &path, Method::GET, parse(&url)?)
                    .header("x-auth-user", p.username.clone())
                    .header("x-auth-key", p.password.expose().to_owned());
                let resp = self.send_raw(&call).await?;
                self.check_auth(&resp)?;
                let h = |n: &str| {
                    resp.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let token = h("x-auth-token").ok_or_else(|| bad("no X-Auth-Token".into()))?;
                let storage = h("x-storage-url").ok_or_else(|| bad("no X-Storage-Url".into()))?;
                Ok(Session {
                    token: Secret(token),
                    storage_url: parse(&storage)?,
                    tenant_id: p.tenant_id.clone(),
                    generation: 0,
                })
            }
            AuthVersion::V2 => {
                let mut auth = json!({
                    "passwordCredentials": {"username": p.username, "password": p.password.expose()}
                });
                if let Some(t) = &p.tenant {
                    auth["tenantName"] = json!(t);
                }
                if let Some(t) = &p.tenant_id {
                    auth["tenantId"] = json!(t);
                }
                let body = json!({ "auth": auth }).to_string();
                let endpoint = format!("{}/tokens", url.trim_end_matches('/'));
                let call = json_post(&path, parse(&endpoint)?, body);
                let resp = self.send_raw(&call).await?;
                self.check_auth(&resp)?;
                let a: V2Answer = resp
                    .json()
                    .await
                    .map_err(|e| self.auth_error(bad(format!("token JSON: {e}"))))?;
                let key = format!("{}URL", p.endpoint_type);
                let found = a
                    .access
                    .catalog
                    .iter()
                    .filter(|s| s.kind == "object-store")
                    .flat_map(|s| s.endpoints.iter())
                    .find(|e| {
                        p.region.as_ref().is_none_or(|r| {
                            e.get("region").and_then(Value::as_str) == Some(r.as_str())
                        })
                    })
                    .and_then(|e| e.get(&key).and_then(Value::as_str));
                let storage = found.ok_or_else(|| {
                    self.auth_error(AuthError::NoEndpoint {
                        interface: p.endpoint_type.clone(),
                        region: p.region.clone(),
                    })
                })?;
                Ok(Session {
                    token: Secret(a.access.token.id),
                    storage_url: parse(storage)?,
                    tenant_id: a.access.token.tenant.map(|t| t.id).or(p.tenant_id.clone()),
                    generation: 0,
                })
            }
            AuthVersion::V3 => {
                let body = self.v3_body().to_string();
                let endpoint = format!("{}/auth/tokens", url.trim_end_matches('/'));
                let call = json_post(&path, parse(&endpoint)?, body);
                let resp = self.send_raw(&call).await?;
                self.check_auth(&resp)?;
                let token = resp
                    .headers()
                    .get("x-subject-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| self.auth_error(bad("no X-Subject-Token".into())))?;
                let a: V3Answer = resp
                    .json()
                    .await
                    .map_err(|e| self.auth_error(bad(format!("token JSON: {e}"))))?;
                let storage = a
                    .token
                    .catalog
                    .iter()
                    .filter(|s| s.kind == "object-store")
                    .flat_map(|s| s.endpoints.iter())
                    .find(|e| {
                        e.interface == p.endpoint_type
                            && p.region.as_ref().is_none_or(|r| {
                                e.region_id.as_ref() == Some(r) || e.region.as_ref() == Some(r)
                            })
                    })
                    .map(|e| e.url.clone())
                    .ok_or_else(|| {
                        self.auth_error(AuthError::NoEndpoint {
                            interface: p.endpoint_type.clone(),
                            region: p.region.clone(),
                        })
                    })?;
                Ok(Session {
                    token: Secret(token),
                    storage_url: parse(&storage)?,
                    tenant_id: a.token.project.map(|t| t.id).or(p.tenant_id.clone()),
                    generation: 0,
                })
            }
        }
    }

    /// The body of a Keystone v3 password authentication.
    fn v3_body(&self) -> Value {
        let p = &self.p;
        let mut user = json!({"name": p.username, "password": p.password.expose()});
        if let Some(id) = &p.domain_id {
            user["domain"] = json!({"id": id});
        } else if let Some(name) = &p.domain {
            user["domain"] = json!({"name": name});
        }
        let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": user}}});
        if let Some(trust) = &p.trust_id {
            auth["scope"] = json!({"OS-TRUST:trust": {"id": trust}});
        } else if p.tenant.is_some() || p.tenant_id.is_some() {
            let mut project = json!({});
            if let Some(id) = &p.tenant_id {
                project["id"] = json!(id);
            } else if let Some(name) = &p.tenant {
                project["name"] = json!(name);
                // The project's domain: its own, else the user's.
                if let Some(id) = p.tenant_domain_id.as_ref().or(p.domain_id.as_ref()) {
                    project["domain"] = json!({"id": id});
                } else if let Some(n) = p.tenant_domain.as_ref().or(p.domain.as_ref()) {
                    project["domain"] = json!({"name": n});
                }
            }
            auth["scope"] = json!({ "project": project });
        }
        json!({ "auth": auth })
    }

    fn check_auth(&self, resp: &Response) -> std::result::Result<(), AuthError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(match status.as_u16() {
            401 | 403 => AuthError::Rejected {
                url: self.p.auth_url.clone(),
                status: status.as_u16(),
            },
            s => AuthError::BadAnswer {
                url: self.p.auth_url.clone(),
                detail: format!("HTTP {s}"),
            },
        })
    }

    /// Sends `call` without a token (authentication requests), retried if idempotent.
    async fn send_raw(&self, call: &Call<'_>) -> Result<Response> {
        let retry = if call.idempotent {
            self.retry
        } else {
            Retry::NONE
        };
        retry
            .send(|| async {
                let parts = call.parts(DRIVER)?;
                let req = call.request(DRIVER, parts)?;
                self.http
                    .execute(req)
                    .await
                    .map_err(|e| driver_http::transport_error(DRIVER, call.op, call.path, e))
            })
            .await
    }

    /// The storage URL (account) of the current session, with `segments` appended.
    pub async fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url> {
        let s = self.session().await?;
        Ok(join(&s.storage_url, segments, query))
    }

    /// A TempURL for `method` on `container/object`, valid until `expires` (Unix
    /// seconds), signed with HMAC-`digest` (`Auto` signs with SHA-1).
    pub async fn temp_url(
        &self,
        key: &Secret,
        digest: TempUrlDigest,
        method: &str,
        container: &str,
        object: &str,
        expires: u64,
    ) -> Result<String> {
        let s = self.session().await?;
        let url = join(&s.storage_url, &[container, object], &[]);
        // Swift signs the decoded path.
        let path = format!(
            "{}/{container}/{object}",
            s.storage_url.path().trim_end_matches('/')
        );
        let path = percent_decode(&path);
        let mut sig = hex(&hmac(
            digest,
            key.expose().as_bytes(),
            format!("{method}\n{expires}\n{path}").as_bytes(),
        ));
        if let Some(access) = &self.p.access_key {
            sig = format!("{}:{access}:{sig}", s.tenant_id.clone().unwrap_or_default());
        }
        let mut url = url;
        url.query_pairs_mut()
            .append_pair("temp_url_sig", &sig)
            .append_pair("temp_url_expires", &expires.to_string());
        Ok(url.into())
    }
}

impl Client {
    /// The cluster's capabilities: `GET /info`, found beside the API version of the
    /// storage URL (`/v1/AUTH_x` → `/info`; radosgw's `/swift/v1` → `/swift/info`).
    pub async fn info(&self) -> Result<Value> {
        let s = self.session().await?;
        let url = info_url(&s.storage_url);
        let root = StoragePath::root();
        let answer = self
            .fetch(
                Call::new(Operation::Connect, &root, Method::GET, url),
                &[200],
            )
            .await?;
        serde_json::from_slice(&answer.body)
            .map_err(|e| StorageError::backend(DRIVER, Operation::Connect, &root, e))
    }
}

/// `/info` of the cluster whose storage URL is `storage`.
fn info_url(storage: &Url) -> Url {
    let segments: Vec<&str> = storage
        .path_segments()
        .map(|s| s.collect())
        .unwrap_or_default();
    let version = segments.iter().position(|s| *s == "v1").unwrap_or(0);
    let mut path: String = segments[..version]
        .iter()
        .map(|s| format!("/{s}"))
        .collect();
    path.push_str("/info");
    let mut url = storage.clone();
    url.set_path(&path);
    url.set_query(None);
    url
}

/// Internal: failures of the authentication steps before mapping.
enum AuthOrStorage {
    Auth(AuthError),
    Storage(StorageError),
}

impl From<AuthError> for AuthOrStorage {
    fn from(e: AuthError) -> Self {
        AuthOrStorage::Auth(e)
    }
}

impl From<StorageError> for AuthOrStorage {
    fn from(e: StorageError) -> Self {
        AuthOrStorage::Storage(e)
    }
}

/// `base` with `segments` appended (each encoded, `/` kept inside object names) and
/// `query`.
fn join(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Url {
    let mut s = base.as_str().trim_end_matches('/').to_owned();
    for seg in segments {
        s.push('/');
        s.push_str(&encode(seg));
    }
    let mut url = Url::parse(&s).unwrap_or_else(|_| base.clone());
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hi = (b[i + 1] as char).to_digit(16);
            let lo = (b[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// HMAC of `msg` under `key` with `digest` (`Auto`: SHA-1, what a cluster that does not
/// say verifies).
pub fn hmac(digest: TempUrlDigest, key: &[u8], msg: &[u8]) -> Vec<u8> {
    match digest {
        TempUrlDigest::Sha256 => hmac_sha256(key, msg),
        TempUrlDigest::Sha1 | TempUrlDigest::Auto => {
            match <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(msg);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
    }
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // Any key length is accepted by HMAC.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The text of a Swift error body (`<html><h1>Not Found</h1><p>…</p></html>`): tags
/// dropped, at most 200 characters.
fn body_text(body: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                if !out.ends_with(' ') && !out.is_empty() {
                    out.push(' ');
                }
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect()
}

/// Maps an unsuccessful answer about an object: 404 is `PathNotFound`.
/// Requests with the session's token (see the module docs); a 401 renews the token once
/// and sends again.
#[async_trait]
impl RestClient for Client {
    const DRIVER: &'static str = DRIVER;
    const RENEWS: bool = true;

    fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn retry(&self) -> Retry {
        self.retry
    }

    /// The request of one attempt, with the current token. `call.url` must come from
    /// [`url`](Client::url).
    async fn build(&self, call: &Call<'_>) -> Result<reqwest::Request> {
        let session = self.session().await?;
        let mut parts = call.parts(DRIVER)?;
        let value = http::HeaderValue::from_str(session.token.expose())
            .map_err(|_| StorageError::backend(DRIVER, call.op, call.path, "bad token"))?;
        parts.headers.insert("x-auth-token", value);
        call.request(DRIVER, parts)
    }

    async fn error(&self, op: Operation, path: &StoragePath, resp: Response) -> StorageError {
        error(op, path, resp).await
    }

    /// A 401: the token expired or was revoked. Renews it, and moves `call` to the new
    /// storage URL if the catalogue changed it.
    async fn stale(
        &self,
        call: &mut Call<'_>,
        sent: &http::HeaderMap,
        resp: &Response,
    ) -> Result<bool> {
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(false);
        }
        let session = self.session().await?;
        let old = session.storage_url.as_str().to_owned();
        let used = sent.get("x-auth-token").and_then(|v| v.to_str().ok());
        let session = if used == Some(session.token.expose()) {
            tracing::debug!(
                driver = DRIVER,
                op = %call.op,
                "token refused (401): renewing"
            );
            self.renew(session.generation).await?
        } else {
            // Another request renewed it since this one was sent: use theirs.
            session
        };
        let new = session.storage_url.as_str();
        if old != new {
            if let Some(rest) = call.url.as_str().strip_prefix(&old) {
                if let Ok(u) = Url::parse(&format!("{new}{rest}")) {
                    call.url = u;
                }
            }
        }
        Ok(true)
    }
}

pub(crate) async fn error(op: Operation, path: &StoragePath, resp: Response) -> StorageError {
    if resp.status() == StatusCode::NOT_FOUND {
        return StorageError::not_found(DRIVER, path);
    }
    status_error(op, path, resp).await
}

/// Maps an unsuccessful answer whatever its status (a 404 here means a missing
/// container, not a missing path).
pub(crate) async fn status_error(
    op: Operation,
    path: &StoragePath,
    resp: Response,
) -> StorageError {
    let status = resp.status();
    let body = driver_http::error_body(resp).await;
    let mut detail = body_text(&body);
    match status.as_u16() {
        401 | 403 => detail = format!("check the account's rights: {detail}"),
        404 => detail = format!("container missing: {detail}"),
        _ => {}
    }
    driver_http::status_error(DRIVER, op, path, status, "", &detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("c/reg/segments/a%20b%2Fc/"), "c/reg/segments/a b/c/");
        assert_eq!(decode(&encode("ünï code/x y")), "ünï code/x y");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn listing_times_in_every_form() {
        let at = |t: &str| {
            parse_listing_time(t)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_millis())
        };
        // 2026-12-03T15:04:05.123 UTC.
        let want = Some(1_796_310_245_123);
        assert_eq!(at("2026-12-03T15:04:05.123456"), want, "OpenStack Swift");
        assert_eq!(at("2026-12-03T15:04:05.123Z"), want, "radosgw");
        assert_eq!(at("2026-12-03T16:04:05.123+01:00"), want, "an offset");
        assert_eq!(at(" 2026-12-03T15:04:05.123 "), want, "spaces");
        assert_eq!(at("yesterday"), None);
    }

    #[test]
    fn info_beside_the_api_version() {
        let at = |u: &str| info_url(&Url::parse(u).unwrap()).to_string();
        assert_eq!(at("http://h:8080/v1/AUTH_test"), "http://h:8080/info");
        assert_eq!(at("http://h:8080/swift/v1"), "http://h:8080/swift/info");
        assert_eq!(at("http://h/swift/v1/AUTH_x?q=1"), "http://h/swift/info");
        assert_eq!(at("http://h/other"), "http://h/info");
    }

    #[test]
    fn hmac_sha1_matches_rfc2202_case_2() {
        let mac = hmac(
            TempUrlDigest::Sha1,
            b"Jefe",
            b"what do ya want for nothing?",
        );
        assert_eq!(hex(&mac), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn error_bodies_lose_their_tags() {
        assert_eq!(
            body_text("<html><h1>Not Found</h1><p>The resource could not be found.</p></html>"),
            "Not Found The resource could not be found."
        );
    }

    #[test]
    fn urls_encode_names_and_decode_for_signing() {
        let base = Url::parse("http://127.0.0.1:1/v1/AUTH_t").unwrap();
        let u = join(&base, &["c", "a b/c#d"], &[("format", "json")]);
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:1/v1/AUTH_t/c/a%20b/c%23d?format=json"
        );
        assert_eq!(percent_decode("/v1/a%20b/c%23d"), "/v1/a b/c#d");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
