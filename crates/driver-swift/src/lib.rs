//! The OpenStack Swift driver, registered as `"swift"`.
//!
//! It speaks Swift's REST API over `reqwest` (no maintained Rust Swift SDK exists; see
//! docs/drivers/swift.md), authenticates with TempAuth (v1) or Keystone v2.0/v3
//! passwords (tokens cached, renewed on `401`), and maps the storage contract onto
//! objects:
//!
//! * a path `/a/b` is the object `<prefix>/a/b` in `container`; directories are
//!   implicit (a name prefix);
//! * `put_content` is one PUT; `reader` a ranged GET, streamed;
//! * the writer uploads `chunksize` segments to `<container>_segments` and joins them
//!   with a Static Large Object manifest on commit (see the `writer` module);
//!   resumable from another process after `close`;
//! * overwriting or deleting a large object removes its segments (nothing orphaned);
//! * `rename` is a server-side `COPY` (a large object's manifest is copied, not its
//!   bytes) then a DELETE;
//! * `delete` lists the prefix once and deletes with the bulk-delete middleware (large
//!   objects with `multipart-manifest=delete`);
//! * `list` lists with the `/` delimiter; `walk` is one flat paginated listing
//!   (`limit` + `marker`, [`driver_api::walk::flat`]);
//! * `redirect_url` is a TempURL (HMAC-SHA256) when `secretkey` is configured, valid
//!   20 minutes by default and at most 7 days; otherwise `None`.
//!
//! ```no_run
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_api::Parameters;
//! let d = driver_api::factory::create(
//!     "swift",
//!     Parameters::new()
//!         .with("authurl", "https://keystone.example/v3")
//!         .with("username", "registry")
//!         .with("password", "…")
//!         .with("tenant", "registry")
//!         .with("domain", "Default")
//!         .with("container", "registry"),
//! )
//! .await?;
//! d.put_content("/hello", "world").await?;
//! # Ok(()) }
//! ```

mod client;
pub mod params;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use driver_api::keys::{Children, KeySpace};
use driver_api::walk::flat::FlatWalk;
use driver_api::{
    register_driver, ByteStream, FileInfo, FileWriter, Parameters, RedirectMethod, RedirectRequest,
    Result, StorageDriver, StorageError, StoragePath, WalkFn, WalkOptions,
};
use driver_http::Call;
use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use serde::Deserialize;

pub use crate::client::AuthError;
use crate::client::{Client, Entry};
use crate::params::SwiftParams;
use crate::writer::SwiftWriter;

/// The registered name.
pub const DRIVER: &str = "swift";

/// Objects per listing page (Swift's default `container_listing_limit`).
const LIST_LIMIT: usize = 10_000;
/// Names per bulk-delete request (Swift's default `max_deletes_per_request` is 10,000);
/// up to 4 such requests are in flight.
const BULK_DELETE: usize = 1_000;
/// Requests in flight when deleting large objects one by one.
const CONCURRENCY: usize = 16;

/// What Swift did with a write of an object (a PUT, or a COPY to it).
///
/// Swift orders the writes of one object by the timestamp its proxy gives each request
/// (10 µs resolution). An object server that already holds a write with the same or a
/// newer timestamp drops the new one, and the proxy answers `202 Accepted` (a DELETE
/// gets `409 Conflict`). Two writers racing on one path meet this. The driver reports
/// such a write as done: to every reader it happened and was overwritten at once by
/// the write that won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Put {
    /// Stored, with this ETag.
    Stored(String),
    /// Dropped: a write with the same or a newer timestamp was already there.
    Superseded,
}

impl Put {
    fn from_response(resp: &reqwest::Response) -> Put {
        if resp.status() == reqwest::StatusCode::ACCEPTED {
            tracing::debug!(
                driver = DRIVER,
                "write superseded by one with the same or a newer timestamp"
            );
            return Put::Superseded;
        }
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_matches('"');
        Put::Stored(etag.to_owned())
    }
}

register_driver! {
    name: DRIVER,
    description: "OpenStack Swift (TempAuth or Keystone v2/v3; SLO segments; TempURL redirects)",
    parameters: params::PARAMS,
    create: SwiftDriver::from_parameters,
}

/// The Swift driver. Cheap to clone (one shared client).
#[derive(Clone)]
pub struct SwiftDriver {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    client: Client,
    keys: KeySpace,
    p: SwiftParams,
    /// `<container>_segments`.
    seg_container: String,
    /// Container listing requests sent.
    list_requests: AtomicU64,
}

impl std::fmt::Debug for SwiftDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwiftDriver")
            .field("params", &self.inner.p)
            .finish_non_exhaustive()
    }
}

/// One segment of a manifest as `?multipart-manifest=get` shows it.
#[derive(Debug, Deserialize)]
struct ManifestEntry {
    /// `/container/object`.
    name: String,
}

impl SwiftDriver {
    /// Creates the driver from factory parameters: authenticates, creates the container
    /// and the segments container when missing, and sets the TempURL key when one is
    /// configured and differs.
    pub async fn from_parameters(params: Parameters) -> Result<Self> {
        Self::new(SwiftParams::parse(params)?).await
    }

    /// Creates the driver from parsed parameters (see [`from_parameters`](Self::from_parameters)).
    pub async fn new(p: SwiftParams) -> Result<Self> {
        let d = Self {
            inner: Arc::new(Inner {
                client: Client::new(&p)?,
                keys: KeySpace::new(&p.root),
                seg_container: p.segments_container(),
                p,
                list_requests: AtomicU64::new(0),
            }),
        };
        let s = &d.inner;
        s.client.login().await?;
        let root = StoragePath::root();
        for c in [s.p.container.as_str(), s.seg_container.as_str()] {
            let url = s.client.url(&[c], &[]).await?;
            s.client
                .expect(
                    Call::new("create container", &root, Method::PUT, url),
                    &[201, 202, 204],
                )
                .await?;
        }
        if let Some(key) = &s.p.secret_key {
            s.ensure_temp_url_key(key).await;
        }
        Ok(d)
    }

    /// Container listing requests this driver (and its clones) sent so far: a metric,
    /// and how the tests prove that a walk pages through one listing.
    pub fn list_requests(&self) -> u64 {
        self.inner.list_requests.load(Relaxed)
    }

    /// Authentications made so far (the first one at construction): a metric, and how
    /// the tests see a token being renewed.
    pub fn auth_requests(&self) -> u64 {
        self.inner.client.auth_count.load(Relaxed)
    }
}

impl Inner {
    /// The object name of `path`.
    pub(crate) fn name(&self, path: &StoragePath) -> String {
        self.keys.key(path)
    }

    /// Sets the TempURL key on the account (or container) when it differs; a failure
    /// is logged (the key may be set by an operator as the second key).
    async fn ensure_temp_url_key(&self, key: &params::Secret) {
        let root = StoragePath::root();
        let (segments, header): (Vec<&str>, &'static str) = if self.p.temp_url_container_key {
            (
                vec![self.p.container.as_str()],
                "x-container-meta-temp-url-key",
            )
        } else {
            (vec![], "x-account-meta-temp-url-key")
        };
        let Ok(url) = self.client.url(&segments, &[]).await else {
            return;
        };
        let current = match self
            .client
            .send(Call::new("redirect key", &root, Method::HEAD, url.clone()))
            .await
        {
            Ok(r) => r
                .headers()
                .get(header)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            Err(_) => None,
        };
        if current.as_deref() == Some(key.expose()) {
            return;
        }
        let call = Call::new("redirect key", &root, Method::POST, url)
            .header(header, key.expose().to_owned());
        match self.client.expect(call, &[200, 202, 204]).await {
            Ok(_) => tracing::debug!(driver = DRIVER, "TempURL key set"),
            Err(e) => tracing::warn!(driver = DRIVER, error = %e, "cannot set the TempURL key"),
        }
    }

    /// HEAD of object `name` in `container`: `None` when missing.
    async fn head(
        &self,
        op: &'static str,
        path: &StoragePath,
        container: &str,
        name: &str,
    ) -> Result<Option<reqwest::Response>> {
        let url = self.client.url(&[container, name], &[]).await?;
        let resp = self
            .client
            .send(Call::new(op, path, Method::HEAD, url))
            .await?;
        match resp.status().as_u16() {
            200 | 204 => Ok(Some(resp)),
            404 => Ok(None),
            _ => Err(client::status_error(op, path, resp).await),
        }
    }

    /// The segments (`/container/object`) of the large object `name`, or `None` when it
    /// is missing or not a large object.
    async fn slo_segments(
        &self,
        op: &'static str,
        path: &StoragePath,
        name: &str,
    ) -> Result<Option<Vec<String>>> {
        let Some(h) = self.head(op, path, &self.p.container, name).await? else {
            return Ok(None);
        };
        if !is_slo(&h) {
            return Ok(None);
        }
        self.manifest_segments(op, path, name).await.map(Some)
    }

    async fn manifest_segments(
        &self,
        op: &'static str,
        path: &StoragePath,
        name: &str,
    ) -> Result<Vec<String>> {
        let url = self
            .client
            .url(
                &[&self.p.container, name],
                &[("multipart-manifest", "get"), ("format", "raw")],
            )
            .await?;
        let resp = self
            .client
            .send(Call::new(op, path, Method::GET, url))
            .await?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(Vec::new()),
            _ => return Err(client::status_error(op, path, resp).await),
        }
        // format=raw answers in the PUT form (`path`); older servers give `name`.
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| driver_http::transport_error(DRIVER, op, path, e))?;
        let list = v.as_array().cloned().unwrap_or_default();
        Ok(list
            .into_iter()
            .filter_map(|e| {
                e.get("path")
                    .and_then(|p| p.as_str().map(str::to_owned))
                    .or_else(|| {
                        serde_json::from_value::<ManifestEntry>(e)
                            .ok()
                            .map(|m| m.name)
                    })
            })
            .collect())
    }

    /// Replaces object `name` by what `put` writes, then removes the segments of the
    /// large object it replaced (if it was one).
    ///
    /// When the write is [superseded](Put::Superseded), the segments stay: they may
    /// belong to the write that won (read here before it landed, with the same
    /// timestamp), and a winner that came later removes what it replaced itself.
    async fn replace<F>(
        &self,
        op: &'static str,
        path: &StoragePath,
        name: &str,
        put: F,
    ) -> Result<Put>
    where
        F: std::future::Future<Output = Result<Put>>,
    {
        let old = self.slo_segments(op, path, name).await?;
        let put = put.await?;
        if let (Put::Stored(_), Some(old)) = (&put, old) {
            self.bulk_delete(op, path, old).await?;
        }
        Ok(put)
    }

    /// A plain PUT of `data` as `container/name`.
    pub(crate) async fn put_object(
        &self,
        op: &'static str,
        path: &StoragePath,
        container: &str,
        name: &str,
        data: Bytes,
    ) -> Result<Put> {
        let url = self.client.url(&[container, name], &[]).await?;
        let call = Call::new(op, path, Method::PUT, url)
            .header("content-type", "application/octet-stream")
            .body(data);
        self.put(call).await
    }

    /// Sends a call that writes an object (PUT, or COPY to a destination).
    pub(crate) async fn put(&self, call: Call<'_>) -> Result<Put> {
        let resp = self.client.expect(call, &[200, 201, 202]).await?;
        Ok(Put::from_response(&resp))
    }

    /// The whole object `container/name`, if it exists.
    pub(crate) async fn get_object(
        &self,
        op: &'static str,
        path: &StoragePath,
        container: &str,
        name: &str,
    ) -> Result<Option<Bytes>> {
        let url = self.client.url(&[container, name], &[]).await?;
        let resp = self
            .client
            .send(Call::new(op, path, Method::GET, url))
            .await?;
        match resp.status().as_u16() {
            200 => resp
                .bytes()
                .await
                .map(Some)
                .map_err(|e| driver_http::transport_error(DRIVER, op, path, e)),
            404 => Ok(None),
            _ => Err(client::status_error(op, path, resp).await),
        }
    }

    /// Deletes `/container/object` names with the bulk-delete middleware (missing
    /// ones are fine).
    pub(crate) async fn bulk_delete(
        &self,
        op: &'static str,
        path: &StoragePath,
        names: Vec<String>,
    ) -> Result<()> {
        let bodies: Vec<String> = names
            .chunks(BULK_DELETE)
            .map(|batch| {
                let mut body = String::new();
                for n in batch {
                    body.push_str(&client::encode(n));
                    body.push('\n');
                }
                body
            })
            .collect();
        futures::stream::iter(bodies)
            .map(|body| self.bulk_request(op, path, body))
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// One bulk-delete request (`body`: encoded names, one a line).
    async fn bulk_request(&self, op: &'static str, path: &StoragePath, body: String) -> Result<()> {
        let url = self.client.url(&[], &[("bulk-delete", "")]).await?;
        let call = Call::new(op, path, Method::POST, url)
            .header("content-type", "text/plain")
            .header("accept", "application/json")
            .body(body.into());
        let resp = self.client.expect(call, &[200]).await?;
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| driver_http::transport_error(DRIVER, op, path, e))?;
        let status = v
            .get("Response Status")
            .and_then(|s| s.as_str())
            .unwrap_or("");
        // Each error is `[name, status]`. A `409` is a name that holds a write with
        // the same or a newer timestamp (see `Put`): it was deleted and written again.
        let all = v.get("Errors").and_then(|e| e.as_array());
        let errors = all.map_or(0, |all| {
            all.iter()
                .filter(|e| !e[1].as_str().is_some_and(|s| s.starts_with("409")))
                .count()
        });
        let only_conflicts = errors == 0 && all.is_some_and(|a| !a.is_empty());
        if !(status.starts_with('2') || status.starts_with("404") || only_conflicts) || errors > 0 {
            let retryable = status.starts_with('5');
            return Err(StorageError::backend(
                DRIVER,
                op,
                path,
                format!(
                    "bulk delete: {status}: {}",
                    v.get("Errors").unwrap_or(&serde_json::Value::Null)
                ),
            )
            .with_retryable(retryable));
        }
        Ok(())
    }

    /// Deletes object `name`: a large object with its segments. Whether it existed.
    async fn delete_object(
        &self,
        op: &'static str,
        path: &StoragePath,
        name: &str,
        slo: bool,
    ) -> Result<bool> {
        let query: &[(&str, &str)] = if slo {
            &[("multipart-manifest", "delete")]
        } else {
            &[]
        };
        let url = self.client.url(&[&self.p.container, name], query).await?;
        let resp = self
            .client
            .send(Call::new(op, path, Method::DELETE, url))
            .await?;
        match resp.status().as_u16() {
            // 409: a write with the same or a newer timestamp is there (see `Put`).
            200 | 204 | 409 => Ok(true),
            404 => Ok(false),
            _ => Err(client::status_error(op, path, resp).await),
        }
    }

    /// One listing page (at most `limit` entries) after `marker`.
    async fn list_page(
        &self,
        op: &'static str,
        path: &StoragePath,
        l: Listing<'_>,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let Listing {
            container,
            prefix,
            delimiter,
        } = l;
        let limit = limit.to_string();
        let mut q: Vec<(&str, &str)> =
            vec![("format", "json"), ("prefix", prefix), ("limit", &limit)];
        if delimiter {
            q.push(("delimiter", "/"));
        }
        if let Some(m) = marker {
            q.push(("marker", m));
        }
        self.list_requests.fetch_add(1, Relaxed);
        let url = self.client.url(&[container], &q).await?;
        let resp = self
            .client
            .send(Call::new(op, path, Method::GET, url))
            .await?;
        match resp.status().as_u16() {
            200 => {}
            204 => return Ok(Vec::new()),
            _ => return Err(client::status_error(op, path, resp).await),
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| driver_http::transport_error(DRIVER, op, path, e))?;
        serde_json::from_slice(&body).map_err(|e| {
            StorageError::backend(DRIVER, op, path, format!("unexpected listing: {e}"))
        })
    }

    /// Every page of a listing, starting after `start`, fed to `each` until it returns
    /// `false`.
    async fn list_all(
        &self,
        op: &'static str,
        path: &StoragePath,
        l: Listing<'_>,
        start: Option<String>,
        mut each: impl FnMut(Vec<Entry>) -> bool,
    ) -> Result<()> {
        let mut marker = start;
        loop {
            let page = self
                .list_page(op, path, l, marker.as_deref(), LIST_LIMIT)
                .await?;
            let full = page.len() >= LIST_LIMIT;
            let last = page
                .last()
                .and_then(|e| e.name.clone().or_else(|| e.subdir.clone()));
            if !each(page) || !full {
                return Ok(());
            }
            match last {
                Some(l) => marker = Some(l),
                None => return Ok(()),
            }
        }
    }

    /// Removes the uncommitted uploads at `path` and (when `below`) under it.
    async fn delete_uploads(
        &self,
        op: &'static str,
        path: &StoragePath,
        below: bool,
    ) -> Result<()> {
        let mut states = vec![writer::state_name(&self.name(path))];
        if below {
            let seg = self.seg_container.clone();
            let prefix = self.keys.dir_prefix(path);
            self.list_all(op, path, Listing::flat(&seg, &prefix), None, |page| {
                states.extend(
                    page.into_iter()
                        .filter_map(|e| e.name)
                        .filter(|n| n.ends_with(writer::STATE_SUFFIX)),
                );
                true
            })
            .await?;
        }
        futures::stream::iter(states)
            .map(|s| async move { writer::discard_state(self, op, path, &s).await })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }
}

/// What a listing lists.
#[derive(Clone, Copy)]
struct Listing<'a> {
    container: &'a str,
    /// Names starting with this.
    prefix: &'a str,
    /// `delimiter=/`: one level, with `subdir` entries.
    delimiter: bool,
}

impl<'a> Listing<'a> {
    /// Every name under `prefix`.
    fn flat(container: &'a str, prefix: &'a str) -> Self {
        Self {
            container,
            prefix,
            delimiter: false,
        }
    }
}

fn is_slo(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get("x-static-large-object")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn content_length(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[async_trait]
impl StorageDriver for SwiftDriver {
    fn name(&self) -> &str {
        DRIVER
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        let s = &self.inner;
        s.get_object("get_content", path, &s.p.container, &s.name(path))
            .await?
            .ok_or_else(|| StorageError::not_found(DRIVER, path))
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        let s = &self.inner;
        let name = s.name(path);
        let put = s.put_object("put_content", path, &s.p.container, &name, content);
        s.replace("put_content", path, &name, put).await.map(drop)
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let s = &self.inner;
        let name = s.name(path);
        let url = s.client.url(&[&s.p.container, &name], &[]).await?;
        let mut call = Call::new("reader", path, Method::GET, url);
        if offset > 0 {
            call = call.header("range", format!("bytes={offset}-"));
        }
        let resp = s.client.send(call).await?;
        match resp.status().as_u16() {
            200 | 206 => Ok(driver_http::body_stream(DRIVER, "reader", path, resp)),
            416 => {
                // The range starts at or past the end: empty at the end, else an error.
                let h = s
                    .head("reader", path, &s.p.container, &name)
                    .await?
                    .ok_or_else(|| StorageError::not_found(DRIVER, path))?;
                driver_api::keys::read_past_end(DRIVER, path, offset, content_length(&h))
            }
            _ => Err(client::error("reader", path, resp).await),
        }
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>> {
        let s = self.inner.clone();
        let w = if append {
            SwiftWriter::resume(s, path.clone()).await?
        } else {
            SwiftWriter::fresh(s, path.clone()).await?
        };
        Ok(Box::new(w))
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let s = &self.inner;
        let object = || async {
            let h = s.head("stat", path, &s.p.container, &s.name(path)).await?;
            Ok(h.map(|h| (content_length(&h), client::x_timestamp(&h))))
        };
        let first_below = || async {
            let prefix = s.keys.dir_prefix(path);
            let listing = Listing::flat(&s.p.container, &prefix);
            let page = s.list_page("stat", path, listing, None, 1).await?;
            Ok(page.first().map(|e| e.mod_time()))
        };
        driver_api::keys::stat(DRIVER, path, object, first_below).await
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        let s = &self.inner;
        let prefix = s.keys.dir_prefix(path);
        let mut children = Children::new(path, &prefix);
        let listing = Listing {
            container: &s.p.container,
            prefix: &prefix,
            delimiter: true,
        };
        s.list_all("list", path, listing, None, |page| {
            for e in page {
                if let Some(name) = e.name.or(e.subdir) {
                    children.push(&name);
                }
            }
            true
        })
        .await?;
        children.finish(DRIVER)
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let (from, to) = (s.name(src), s.name(dst));
        let c = s.p.container.as_str();
        let h = s
            .head("rename", src, c, &from)
            .await?
            .ok_or_else(|| StorageError::not_found(DRIVER, src))?;
        if src == dst {
            return Ok(());
        }
        let slo = is_slo(&h);
        let copy = async {
            // COPY with multipart-manifest=get copies a large object's manifest, not
            // its bytes.
            let query: &[(&str, &str)] = if slo {
                &[("multipart-manifest", "get")]
            } else {
                &[]
            };
            let url = s.client.url(&[c, &from], query).await?;
            let copy = Method::from_bytes(b"COPY").map_err(|e| {
                StorageError::backend(DRIVER, "rename", src, format!("method: {e}"))
            })?;
            let call = Call::new("rename", src, copy, url)
                .header("destination", client::encode(&format!("{c}/{to}")));
            s.put(call).await
        };
        let copied = s.replace("rename", dst, &to, copy).await?;
        // The plain DELETE keeps the segments, now the destination's, unless a
        // concurrent write to the destination won: then no manifest names them.
        let segments_too = slo && copied == Put::Superseded;
        s.delete_object("rename", src, &from, segments_too)
            .await
            .map(drop)
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let name = s.name(path);
        let c = s.p.container.clone();
        // List first, then delete: deleting while paging could skip names.
        let mut plain = Vec::new();
        let mut large = Vec::new();
        if let Some(h) = s.head("delete", path, &c, &name).await? {
            if is_slo(&h) {
                large.push(name.clone());
            } else {
                plain.push(format!("/{c}/{name}"));
            }
        }
        let prefix = s.keys.dir_prefix(path);
        s.list_all("delete", path, Listing::flat(&c, &prefix), None, |page| {
            for e in page {
                let Some(n) = e.name else { continue };
                if e.slo_etag.is_some() {
                    large.push(n);
                } else {
                    plain.push(format!("/{c}/{n}"));
                }
            }
            true
        })
        .await?;
        let any = !plain.is_empty() || !large.is_empty();
        s.bulk_delete("delete", path, plain).await?;
        futures::stream::iter(large)
            .map(|n| async move { s.delete_object("delete", path, &n, true).await })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<bool>>()
            .await?;
        s.delete_uploads("delete", path, true).await?;
        if any {
            Ok(())
        } else {
            Err(StorageError::not_found(DRIVER, path))
        }
    }

    async fn redirect_url(
        &self,
        request: &RedirectRequest,
        path: &StoragePath,
    ) -> Result<Option<String>> {
        let s = &self.inner;
        let Some(key) = &s.p.secret_key else {
            return Ok(None);
        };
        // A HEAD is allowed on a URL signed for GET (as Distribution signs it).
        let wanted = match request.method {
            RedirectMethod::Head => "HEAD",
            _ => "GET",
        };
        if !s.p.temp_url_methods.iter().any(|m| m == wanted) {
            return Ok(None);
        }
        let expiry = request.lifetime();
        let expires = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + expiry.as_secs().max(1);
        s.client
            .temp_url(key, "GET", &s.p.container, &s.name(path), expires)
            .await
            .map(Some)
    }

    async fn walk(
        &self,
        path: &StoragePath,
        options: &WalkOptions,
        f: &mut WalkFn<'_>,
    ) -> Result<()> {
        let s = &self.inner;
        let prefix = s.keys.dir_prefix(path);
        let mut walk = FlatWalk::new(path, options, f);
        let start = walk.start_after().map(|a| format!("{prefix}{a}"));
        s.list_all(
            "walk",
            path,
            Listing::flat(&s.p.container, &prefix),
            start,
            |page| {
                for e in &page {
                    let Some(name) = &e.name else { continue };
                    let rel = name.get(prefix.len()..).unwrap_or("");
                    if !walk.push(rel, e.bytes, e.mod_time()) {
                        return false;
                    }
                }
                true
            },
        )
        .await?;
        walk.finish(DRIVER)
    }
}
