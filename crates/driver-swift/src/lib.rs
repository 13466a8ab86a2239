//! The OpenStack Swift driver, registered as `"swift"`.
//!
//! It speaks Swift's REST API over `reqwest` (no maintained Rust Swift SDK exists; see
//! docs/drivers/swift.md), authenticates with TempAuth (v1) or Keystone v2.0/v3
//! passwords (tokens cached, renewed on `401`), and maps the storage contract onto
//! objects. The driver is the object-store core's
//! [`ObjectStore`](driver_objectstore::ObjectStore) over [`SwiftBackend`], which sends
//! one Swift request per step; the core owns `stat`, `list`, `walk`, the paging and the
//! streaming tree delete.
//!
//! * a path `/a/b` is the object `<prefix>/files/a/b` in `container`, as in
//!   Distribution's swift driver (`layout: flat` gives `<prefix>/a/b`); directories are
//!   implicit (a name prefix);
//! * Distribution's Dynamic Large Objects are read, sized (a HEAD for each 0-byte
//!   listing entry), moved by their manifest and deleted with their segments;
//! * `put_content` is one PUT; `reader` a ranged GET, streamed;
//! * the writer is the core's resumable writer ([`MultipartWriter`]) over
//!   [`SwiftBackend`]'s [`MultipartBackend`](driver_objectstore::MultipartBackend)
//!   steps: `chunksize` segments uploaded beside `files/` (`maxconcurrency` at
//!   once) and joined by a Static Large Object manifest on commit (see the `writer`
//!   module); resumable from another process after `close`, the upload's state parked
//!   as `<name>#upload` in the main container;
//! * overwriting or deleting a large object removes its segments (nothing orphaned);
//! * `rename` is a server-side `COPY` (a large object's manifest is copied, not its
//!   bytes) then a DELETE (see [`SwiftBackend`]'s `move_object`);
//! * `delete` streams: page by page of the listing (`limit` + `marker`), plain objects
//!   go with the bulk-delete middleware (1,000 names a request), large objects one by
//!   one (`multipart-manifest=delete`, or a DLO's segments by prefix), parked uploads with their segments; then the
//!   upload parked for the path itself;
//! * `list` lists with the `/` delimiter; `walk` is one flat paginated listing
//!   ([`driver_api::walk::flat`]);
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

use driver_api::Operation;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use driver_api::keys::KeySpace;
use driver_api::{
    register_driver, FileWriter, Parameters, RedirectMethod, RedirectRequest, Result, StorageError,
    StoragePath,
};
use driver_http::{Call, RestClient};
use driver_objectstore::upload::park_key;
use driver_objectstore::{
    Cx, Got, ListPage, ListRequest, MultipartWriter, ObjectBackend, ObjectMeta,
};
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

pub use crate::client::AuthError;
use crate::client::{Client, Entry};
use crate::params::SwiftParams;

/// The registered name.
pub const DRIVER: &str = "swift";

/// Objects per listing page (Swift's default `container_listing_limit`).
const LIST_LIMIT: u32 = 10_000;
/// A listing page this long may not be the last even when shorter than asked: Ceph's
/// RADOS Gateway caps pages at `rgw_max_listing_results` (1,000 by default) whatever
/// `limit` asks and whatever its `/info` says, and Swift has no truncation flag. So a
/// page ends the listing only when it is shorter than this (or than `limit`, if smaller);
/// a page of 1,000 to 9,999 entries costs one more request on OpenStack Swift, which
/// honours the limit. A radosgw with `rgw_max_listing_results` below 1,000 is not
/// supported (its listings would end early).
const SHORTEST_CAPPED_PAGE: u32 = 1_000;
/// Names per bulk-delete request (Swift's default `max_deletes_per_request` is 10,000).
const BULK_DELETE: usize = 1_000;
/// Bulk-delete requests in flight when one call has more than [`BULK_DELETE`] names.
const BULK_CONCURRENCY: usize = 4;
/// HEADs at once when a listing page has 0-byte objects that may be Dynamic Large Objects.
const DLO_HEADS: usize = 16;

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
        if resp.status() == StatusCode::ACCEPTED {
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

/// The Swift driver: the object-store core over [`SwiftBackend`]. Cheap to clone (one
/// shared client); `SwiftDriver::from_parameters` creates it, and
/// [`backend`](driver_objectstore::ObjectStore::backend) reaches Swift's own metrics
/// ([`SwiftBackend::auth_requests`]).
pub type SwiftDriver = driver_objectstore::ObjectStore<SwiftBackend>;

/// Swift's requests, one per step of the object-store core (see
/// [`ObjectBackend`], and of the resumable writer,
/// [`MultipartBackend`](driver_objectstore::MultipartBackend)): the client
/// (authentication, token cache), the container and the container of large objects'
/// and uploads' segments (the same one in Distribution's layout).
pub struct SwiftBackend {
    client: Client,
    keys: KeySpace,
    p: SwiftParams,
    /// Where segments go: the container itself, or `<container>_segments` (flat layout).
    seg_container: String,
    /// The TempURL digest, resolved at construction (`tempurldigest`, or the cluster's
    /// `/info` for `auto`).
    temp_url_digest: params::TempUrlDigest,
}

impl std::fmt::Debug for SwiftBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwiftDriver")
            .field("params", &self.p)
            .finish_non_exhaustive()
    }
}

/// What a write replaces (see `SwiftBackend::prepare_replace`).
enum Replaced {
    /// The replaced large object's segments, removed once the write has landed.
    Segments(Vec<String>),
    /// A copy of the replaced SLO's manifest under this name (the service does not show
    /// manifests): deleted after the write, with the segments once it has landed.
    Aside(String),
}

/// One segment of a manifest as `?multipart-manifest=get` shows it.
#[derive(Debug, Deserialize)]
struct ManifestEntry {
    /// `/container/object`.
    name: String,
}

impl SwiftBackend {
    /// Creates the backend from parsed parameters: authenticates, creates the container
    /// and the segments container when missing, and sets the TempURL key when one is
    /// configured and differs.
    pub async fn new(p: SwiftParams) -> Result<Self> {
        let mut s = Self {
            client: Client::new(&p)?,
            keys: KeySpace::new(&p.key_root()),
            seg_container: p.segments_container(),
            temp_url_digest: p.temp_url_digest,
            p,
        };
        s.client.login().await?;
        let root = StoragePath::root();
        let mut containers = vec![s.p.container.as_str()];
        if s.seg_container != s.p.container {
            containers.push(s.seg_container.as_str());
        }
        for c in containers {
            let url = s.client.url(&[c], &[]).await?;
            s.client
                .expect(
                    Call::new(Operation::Connect, &root, Method::PUT, url),
                    &[201, 202, 204],
                )
                .await?;
        }
        if let Some(key) = &s.p.secret_key {
            s.ensure_temp_url_key(key).await;
            if s.temp_url_digest == params::TempUrlDigest::Auto {
                s.temp_url_digest = s.allowed_digest().await;
            }
        }
        Ok(s)
    }

    /// The digest `auto` signs TempURLs with: SHA-256 where the cluster's `/info` allows
    /// it, else SHA-1 (radosgw and Swift before 2.17 list no digests and verify SHA-1;
    /// a cluster whose `/info` cannot be read is taken to be one of those).
    async fn allowed_digest(&self) -> params::TempUrlDigest {
        let allowed: Option<Vec<String>> = match self.client.info().await {
            Ok(info) => info["tempurl"]["allowed_digests"].as_array().map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            }),
            Err(e) => {
                tracing::debug!(driver = DRIVER, error = %e, "no /info; TempURLs signed with SHA-1");
                None
            }
        };
        let digest = params::TempUrlDigest::strongest_allowed(allowed.as_deref());
        tracing::debug!(driver = DRIVER, digest = digest.as_str(), "TempURL digest");
        digest
    }

    /// Authentications made so far (the first one at construction): a metric, and how
    /// the tests see a token being renewed.
    pub fn auth_requests(&self) -> u64 {
        self.client.auth_count.load(Relaxed)
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
            .send(Call::new(
                Operation::Connect,
                &root,
                Method::HEAD,
                url.clone(),
            ))
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
        let call = Call::new(Operation::Connect, &root, Method::POST, url)
            .header(header, key.expose().to_owned());
        match self.client.expect(call, &[200, 202, 204]).await {
            Ok(_) => tracing::debug!(driver = DRIVER, "TempURL key set"),
            Err(e) => tracing::warn!(driver = DRIVER, error = %e, "cannot set the TempURL key"),
        }
    }

    /// HEAD of object `name` in `container`: `None` when missing.
    pub(crate) async fn head_object(
        &self,
        op: Operation,
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

    /// What a write to `name` replaces, found before the write: `None` when `name` is
    /// missing or not a large object; a Static Large Object's segments from its
    /// manifest, a Dynamic Large Object's (what Distribution's driver writes) by listing
    /// the prefix its `X-Object-Manifest` names. Where the service does not show an SLO's
    /// manifest (Ceph's RADOS Gateway answers `?multipart-manifest=get` with an empty
    /// body), the manifest is copied aside instead ([`Replaced::Aside`]): one COPY now
    /// and one DELETE after the write, only for such large objects.
    async fn prepare_replace(
        &self,
        op: Operation,
        path: &StoragePath,
        name: &str,
    ) -> Result<Option<Replaced>> {
        let Some(h) = self.head_object(op, path, &self.p.container, name).await? else {
            return Ok(None);
        };
        if is_slo(&h) {
            return match self.manifest_segments(op, path, name).await? {
                Some(segments) => Ok(Some(Replaced::Segments(segments))),
                None => self.set_aside(op, path, name).await.map(Some),
            };
        }
        match dlo_manifest(&h) {
            Some((container, prefix)) => self
                .names_under(Cx::new(op, path), &container, &prefix)
                .await
                .map(|s| Some(Replaced::Segments(s))),
            None => Ok(None),
        }
    }

    /// Copies the manifest of the SLO `name` to `<name>#replaced.<id>` (a name the path
    /// grammar cannot hold, so no listing shows it; a tree delete of the parent removes
    /// it with its segments if a crash leaves it). The copy names the same segments.
    async fn set_aside(&self, op: Operation, path: &StoragePath, name: &str) -> Result<Replaced> {
        let aside = format!("{name}#replaced.{}", writer::upload_id());
        let c = self.p.container.as_str();
        let url = self
            .client
            .url(&[c, name], &[("multipart-manifest", "get")])
            .await?;
        let method = Method::from_bytes(b"COPY")
            .map_err(|e| StorageError::backend(DRIVER, op, path, format!("method: {e}")))?;
        let call = Call::new(op, path, method, url)
            .header("destination", client::encode(&format!("{c}/{aside}")));
        self.send_write(call).await?;
        Ok(Replaced::Aside(aside))
    }

    /// Every object (`/container/object`) under `prefix` in `container`: a Dynamic Large
    /// Object's segments, an upload's.
    pub(crate) async fn names_under(
        &self,
        cx: Cx<'_>,
        container: &str,
        prefix: &str,
    ) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let req = ListRequest {
                prefix,
                start_after: marker.as_deref(),
                ..ListRequest::default()
            };
            let page = self.list_container(cx, container, &req).await?;
            names.extend(
                page.objects
                    .into_iter()
                    .map(|o| format!("/{container}/{}", o.key)),
            );
            match page.next {
                Some(last) => marker = Some(last),
                None => return Ok(names),
            }
        }
    }

    /// The segments (`/container/object`) an SLO's manifest names; `None` when the
    /// service answers without the manifest (radosgw: 200 and an empty body).
    async fn manifest_segments(
        &self,
        op: Operation,
        path: &StoragePath,
        name: &str,
    ) -> Result<Option<Vec<String>>> {
        let url = self
            .client
            .url(
                &[&self.p.container, name],
                &[("multipart-manifest", "get"), ("format", "raw")],
            )
            .await?;
        let call = Call::new(op, path, Method::GET, url);
        let answer = self.client.fetch(call, &[200, 404]).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Some(Vec::new()));
        }
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        // format=raw answers in the PUT form (`path`); older servers give `name`.
        let v: serde_json::Value = answer.json(DRIVER, op, path)?;
        let list = v.as_array().cloned().unwrap_or_default();
        Ok(Some(
            list.into_iter()
                .filter_map(|e| {
                    e.get("path")
                        .and_then(|p| p.as_str().map(str::to_owned))
                        .or_else(|| {
                            serde_json::from_value::<ManifestEntry>(e)
                                .ok()
                                .map(|m| m.name)
                        })
                })
                .collect(),
        ))
    }

    /// Replaces object `name` by what `put` writes, then removes the segments of the
    /// large object it replaced (if it was one).
    ///
    /// When the write is [superseded](Put::Superseded) or fails, the segments stay: they
    /// may belong to the write that won (read here before it landed, with the same
    /// timestamp), and a winner that came later removes what it replaced itself. A
    /// manifest set aside is then deleted alone.
    pub(crate) async fn replace<F>(
        &self,
        op: Operation,
        path: &StoragePath,
        name: &str,
        put: F,
    ) -> Result<Put>
    where
        F: std::future::Future<Output = Result<Put>>,
    {
        let old = self.prepare_replace(op, path, name).await?;
        let put = put.await;
        let landed = matches!(put, Ok(Put::Stored(_)));
        match old {
            Some(Replaced::Segments(old)) if landed => {
                self.bulk_delete(op, path, old).await?;
            }
            Some(Replaced::Aside(aside)) => {
                let cleanup = self.delete_object(Cx::new(op, path), &aside, landed).await;
                match (&put, cleanup) {
                    (Ok(_), Err(e)) => return Err(e),
                    (Err(_), Err(e)) => tracing::warn!(
                        driver = DRIVER,
                        error = %e,
                        "the copy of a replaced manifest was not removed"
                    ),
                    _ => {}
                }
            }
            _ => {}
        }
        put
    }

    /// A plain PUT of `data` as `container/name`.
    pub(crate) async fn put_object(
        &self,
        op: Operation,
        path: &StoragePath,
        container: &str,
        name: &str,
        data: Bytes,
    ) -> Result<Put> {
        let url = self.client.url(&[container, name], &[]).await?;
        let call = Call::new(op, path, Method::PUT, url)
            .header("content-type", "application/octet-stream")
            .body(data);
        self.send_write(call).await
    }

    /// Sends a call that writes an object (PUT, or COPY to a destination).
    pub(crate) async fn send_write(&self, call: Call<'_>) -> Result<Put> {
        let resp = self.client.expect(call, &[200, 201, 202]).await?;
        Ok(Put::from_response(&resp))
    }

    /// A server-side COPY of object `src` to `dst` in the container, through
    /// [`replace`](Self::replace). With `manifest`, a large object's manifest is copied
    /// (`multipart-manifest=get`: the copy shares the source's segments); without, the
    /// bytes are (a large source becomes one plain object).
    async fn copy_object(&self, cx: Cx<'_>, src: &str, dst: &str, manifest: bool) -> Result<Put> {
        let c = self.p.container.as_str();
        let copy = async {
            let query: &[(&str, &str)] = if manifest {
                &[("multipart-manifest", "get")]
            } else {
                &[]
            };
            let url = self.client.url(&[c, src], query).await?;
            let method = Method::from_bytes(b"COPY").map_err(|e| {
                StorageError::backend(DRIVER, cx.op, cx.path, format!("method: {e}"))
            })?;
            let call = Call::new(cx.op, cx.path, method, url)
                .header("destination", client::encode(&format!("{c}/{dst}")));
            self.send_write(call).await
        };
        self.replace(cx.op, cx.path, dst, copy).await
    }

    /// The whole object `container/name`, if it exists.
    pub(crate) async fn get_object(
        &self,
        op: Operation,
        path: &StoragePath,
        container: &str,
        name: &str,
    ) -> Result<Option<Bytes>> {
        let url = self.client.url(&[container, name], &[]).await?;
        let call = Call::new(op, path, Method::GET, url);
        let answer = self.client.fetch(call, &[200, 404]).await?;
        Ok((answer.status == StatusCode::OK).then_some(answer.body))
    }

    /// Deletes `/container/object` names with the bulk-delete middleware (missing
    /// ones are fine).
    pub(crate) async fn bulk_delete(
        &self,
        op: Operation,
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
            .buffer_unordered(BULK_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// One bulk-delete request (`body`: encoded names, one a line).
    async fn bulk_request(&self, op: Operation, path: &StoragePath, body: String) -> Result<()> {
        let url = self.client.url(&[], &[("bulk-delete", "")]).await?;
        let call = Call::new(op, path, Method::POST, url)
            .header("content-type", "text/plain")
            .header("accept", "application/json")
            .body(body.into());
        let v: serde_json::Value = self
            .client
            .fetch(call, &[200])
            .await?
            .json(DRIVER, op, path)?;
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

    /// Deletes object `name` whatever it is, after a HEAD: a Static Large Object with
    /// `multipart-manifest=delete` (Swift removes its segments), a Dynamic Large Object
    /// (Distribution's) by its manifest and then the segments under the prefix it named
    /// (in that order: a failure leaves unreferenced segments, never a manifest whose
    /// segments are gone, which would read as a shorter object), anything else with a
    /// plain DELETE. Whether it existed.
    async fn delete_any(&self, cx: Cx<'_>, name: &str) -> Result<bool> {
        let Some(h) = self
            .head_object(cx.op, cx.path, &self.p.container, name)
            .await?
        else {
            return Ok(false);
        };
        let existed = self.delete_object(cx, name, is_slo(&h)).await?;
        if let Some((container, prefix)) = dlo_manifest(&h) {
            let segments = self.names_under(cx, &container, &prefix).await?;
            self.bulk_delete(cx.op, cx.path, segments).await?;
        }
        Ok(existed)
    }

    /// Deletes object `name`: a large object with its segments. Whether it existed.
    async fn delete_object(&self, cx: Cx<'_>, name: &str, slo: bool) -> Result<bool> {
        let (op, path) = (cx.op, cx.path);
        let query: &[(&str, &str)] = if slo {
            &[("multipart-manifest", "delete")]
        } else {
            &[]
        };
        let url = self.client.url(&[&self.p.container, name], query).await?;
        let resp = self
            .client
            .send(Call::new(op, path, Method::DELETE, url).gone_is_done())
            .await?;
        match resp.status().as_u16() {
            // 409: a write with the same or a newer timestamp is there (see `Put`).
            200 | 204 | 409 => Ok(true),
            404 => Ok(false),
            _ => Err(client::status_error(op, path, resp).await),
        }
    }

    /// One listing page of `container` (the main one, or the segments container for an
    /// upload's segments): `limit` is `req.max` (default 10,000), the `marker` the token or
    /// else the start-after key; the next page continues after the last name when this
    /// one was full.
    pub(crate) async fn list_container(
        &self,
        cx: Cx<'_>,
        container: &str,
        req: &ListRequest<'_>,
    ) -> Result<ListPage> {
        let (op, path) = (cx.op, cx.path);
        let limit = req.max.unwrap_or(LIST_LIMIT).max(1);
        let limit_s = limit.to_string();
        let mut q: Vec<(&str, &str)> = vec![
            ("format", "json"),
            ("prefix", req.prefix),
            ("limit", &limit_s),
        ];
        if req.delimiter {
            q.push(("delimiter", "/"));
        }
        if let Some(m) = req.token.or(req.start_after) {
            q.push(("marker", m));
        }
        let url = self.client.url(&[container], &q).await?;
        let call = Call::new(op, path, Method::GET, url);
        let answer = self.client.fetch(call, &[200, 204, 404]).await?;
        match answer.status.as_u16() {
            200 => {}
            204 => return Ok(ListPage::default()),
            // The container is missing: an error, not an empty listing.
            _ => return Err(client::status_error(op, path, answer.into_response()).await),
        }
        let entries: Vec<Entry> = serde_json::from_slice(&answer.body).map_err(|e| {
            StorageError::backend(DRIVER, op, path, format!("unexpected listing: {e}"))
        })?;
        let full = entries.len() >= limit.min(SHORTEST_CAPPED_PAGE) as usize;
        let mut page = ListPage::default();
        let mut unknown = Vec::new();
        let mut last = None;
        let park = park_key("");
        for e in entries {
            let mod_time = e.mod_time();
            if let Some(name) = e.name {
                last = Some(name.clone());
                let segmented = e.slo_etag.is_some();
                // What the listing cannot tell from a plain object: a Dynamic Large
                // Object (listed at 0 bytes, like an empty object), and where the
                // service lists no `slo_etag` (radosgw), a Static Large Object: listed
                // with the hash of empty content, which no plain object of that size
                // has, at its manifest's size (or 0, a manifest copy).
                let maybe_large = !segmented
                    && !name.ends_with(&park)
                    && (e.bytes == 0 || e.hash.as_deref() == Some(EMPTY_MD5));
                if maybe_large {
                    unknown.push(page.objects.len());
                }
                page.objects.push(ObjectMeta {
                    key: name,
                    size: e.bytes,
                    mod_time,
                    segmented,
                });
            } else if let Some(dir) = e.subdir {
                last = Some(dir.clone());
                page.prefixes.push(dir);
            }
        }
        page.next = last.filter(|_| full);
        if container == self.p.container {
            self.size_large(cx, &mut page.objects, unknown).await?;
        }
        Ok(page)
    }

    /// Gives the large objects among `objects[unknown]` (entries the listing cannot
    /// tell from plain objects, see `list_container`) their true size and marks them
    /// segmented, after a HEAD each, which says whether it is an SLO or a DLO and its
    /// whole size: one HEAD per empty object, DLO or (on radosgw) SLO; none for anything
    /// else.
    async fn size_large(
        &self,
        cx: Cx<'_>,
        objects: &mut [ObjectMeta],
        unknown: Vec<usize>,
    ) -> Result<()> {
        let heads = futures::stream::iter(unknown)
            .map(|i| {
                let key = objects[i].key.clone();
                async move {
                    let h = self
                        .head_object(cx.op, cx.path, &self.p.container, &key)
                        .await?;
                    Ok::<_, StorageError>((
                        i,
                        h.filter(|h| is_slo(h) || dlo_manifest(h).is_some())
                            .map(|h| content_length(&h)),
                    ))
                }
            })
            .buffer_unordered(DLO_HEADS)
            .try_collect::<Vec<_>>()
            .await?;
        for (i, size) in heads {
            if let Some(size) = size {
                objects[i].size = size;
                objects[i].segmented = true;
            }
        }
        Ok(())
    }
}

/// MD5 of empty content: the `hash` radosgw lists for an SLO manifest.
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// The container and object prefix of a Dynamic Large Object's segments
/// (`X-Object-Manifest: <container>/<prefix>`, percent-encoded), if `resp` is one's.
fn dlo_manifest(resp: &reqwest::Response) -> Option<(String, String)> {
    let v = client::decode(resp.headers().get("x-object-manifest")?.to_str().ok()?);
    let (container, prefix) = v.split_once('/')?;
    Some((container.to_owned(), prefix.to_owned()))
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
impl ObjectBackend for SwiftBackend {
    const NAME: &'static str = DRIVER;
    /// Swift's `marker`: names after it.
    const START_AFTER: bool = true;

    async fn from_parameters(params: Parameters) -> Result<Self> {
        Self::new(SwiftParams::parse(params)?).await
    }

    fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// One bulk-delete request.
    fn delete_batch_size(&self) -> usize {
        BULK_DELETE
    }

    async fn head(&self, cx: Cx<'_>, key: &str) -> Result<Option<ObjectMeta>> {
        let h = self
            .head_object(cx.op, cx.path, &self.p.container, key)
            .await?;
        Ok(h.map(|h| ObjectMeta {
            key: key.to_owned(),
            size: content_length(&h),
            mod_time: client::x_timestamp(&h),
            segmented: is_slo(&h) || dlo_manifest(&h).is_some(),
        }))
    }

    /// A ranged GET; a pinned read sends `If-Match` with the ETag (a large object's is
    /// its manifest's, which Swift matches for the whole object).
    async fn get(&self, cx: Cx<'_>, key: &str, offset: u64, version: Option<&str>) -> Result<Got> {
        let (op, path) = (cx.op, cx.path);
        let url = self.client.url(&[&self.p.container, key], &[]).await?;
        let mut call = Call::new(op, path, Method::GET, url);
        if offset > 0 {
            call = call.header("range", format!("bytes={offset}-"));
        }
        if let Some(v) = version {
            call = call.header("if-match", v);
        }
        let resp = self.client.send(call).await?;
        match resp.status().as_u16() {
            200 | 206 => Ok(Got::Stream(driver_http::object_body(
                DRIVER, op, path, resp, "etag",
            ))),
            404 => Ok(Got::NotFound),
            416 => Ok(Got::PastEnd),
            412 => Ok(Got::Changed),
            _ => Err(client::status_error(op, path, resp).await),
        }
    }

    /// A PUT through `replace`: a large object it replaces loses its segments, unless
    /// the PUT was superseded (a concurrent write with a newer timestamp won). A parked
    /// upload (`<name>#upload`) is never a large object: one PUT.
    async fn put(&self, cx: Cx<'_>, key: &str, data: Bytes) -> Result<()> {
        let put = self.put_object(cx.op, cx.path, &self.p.container, key, data);
        if key.ends_with(&park_key("")) {
            return put.await.map(drop);
        }
        self.replace(cx.op, cx.path, key, put).await.map(drop)
    }

    /// A COPY of the bytes: the copy is independent of the source, also for a large
    /// object (which Swift joins into one object, at most `max_file_size`).
    async fn copy(&self, cx: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()> {
        self.copy_object(cx, &src.key, dst, false).await.map(drop)
    }

    /// Overrides copy-then-delete: a large object moves by its manifest. A copy of the
    /// bytes would read and write the whole object (and fail past `max_file_size`), and
    /// a manifest copy followed by the default delete would remove the segments the
    /// copy now names. So the manifest is copied (`multipart-manifest=get`) and the
    /// source deleted plainly, keeping its segments, now the destination's; with its
    /// segments only when a concurrent write to the destination won (the copy was
    /// superseded, so no manifest names them).
    async fn move_object(&self, cx: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()> {
        let copied = self.copy_object(cx, &src.key, dst, src.segmented).await?;
        let segments_too = src.segmented && copied == Put::Superseded;
        self.delete_object(cx, &src.key, segments_too)
            .await
            .map(drop)
    }

    /// A HEAD tells a large object and whether there is anything; then one DELETE (see
    /// `delete_any`).
    async fn delete(&self, cx: Cx<'_>, key: &str, _report: bool) -> Result<bool> {
        self.delete_any(cx, key).await
    }

    /// The plain objects in one bulk-delete request; each large object (the listing's
    /// `slo_etag`, or a Dynamic Large Object the listing found) with its own HEAD and
    /// DELETE (`delete_any`: the HEAD says which kind, and a DLO's segment prefix), at the
    /// same time. A
    /// parked upload (`<name>#upload`, see the `writer` module) is read first and its
    /// segments, in the segments container, bulk-deleted before the batch.
    async fn delete_batch(&self, cx: Cx<'_>, objects: &[ObjectMeta]) -> Result<()> {
        let c = &self.p.container;
        let suffix = park_key("");
        let parked: Vec<&str> = objects
            .iter()
            .filter(|o| o.key.ends_with(&suffix))
            .map(|o| o.key.as_str())
            .collect();
        let segments = futures::stream::iter(0..parked.len())
            .map(|i| writer::parked_segments(self, cx, parked[i]))
            .buffer_unordered(self.delete_concurrency())
            .try_collect::<Vec<Option<Vec<String>>>>()
            .await?;
        let segments: Vec<String> = segments.into_iter().flatten().flatten().collect();
        // Segments first: a parked object left by a failure still names them.
        self.bulk_delete(cx.op, cx.path, segments).await?;
        let plain: Vec<String> = objects
            .iter()
            .filter(|o| !o.segmented)
            .map(|o| format!("/{c}/{}", o.key))
            .collect();
        let large: Vec<&str> = objects
            .iter()
            .filter(|o| o.segmented)
            .map(|o| o.key.as_str())
            .collect();
        let large = futures::stream::iter(0..large.len())
            .map(|i| self.delete_any(cx, large[i]))
            .buffer_unordered(self.delete_concurrency())
            .try_collect::<Vec<bool>>();
        futures::try_join!(self.bulk_delete(cx.op, cx.path, plain), large).map(drop)
    }

    async fn list_page(&self, cx: Cx<'_>, req: &ListRequest<'_>) -> Result<ListPage> {
        self.list_container(cx, &self.p.container, req).await
    }

    /// Ends upload `upload` at `key`, one an open parked object names (the core records
    /// every upload when it starts: the service cannot list them): its segments.
    async fn abort_upload(&self, cx: Cx<'_>, key: &str, upload: &str) -> Result<()> {
        driver_objectstore::MultipartBackend::abort(self, cx, key, upload, &[]).await
    }

    /// Discards the uncommitted upload parked for the key itself (`<key>#upload` is not
    /// below `<key>/`, so the tree delete did not list it), with its segments; those
    /// parked below the key went with their batches (see
    /// [`delete_batch`](Self::delete_batch)).
    async fn after_delete(&self, cx: Cx<'_>, key: &str) -> Result<()> {
        writer::discard_parked(self, cx, key).await
    }

    async fn redirect_url(
        &self,
        _cx: Cx<'_>,
        request: &RedirectRequest,
        key: &str,
    ) -> Result<Option<String>> {
        let Some(secret) = &self.p.secret_key else {
            return Ok(None);
        };
        // A HEAD is allowed on a URL signed for GET (as Distribution signs it).
        let wanted = match request.method {
            RedirectMethod::Head => "HEAD",
            _ => "GET",
        };
        if !self.p.temp_url_methods.iter().any(|m| m == wanted) {
            return Ok(None);
        }
        let expiry = request.lifetime();
        let expires = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + expiry.as_secs().max(1);
        self.client
            .temp_url(
                secret,
                self.temp_url_digest,
                "GET",
                &self.p.container,
                key,
                expires,
            )
            .await
            .map(Some)
    }

    async fn writer(
        this: Arc<Self>,
        path: &StoragePath,
        key: String,
        append: bool,
    ) -> Result<Box<dyn FileWriter>> {
        if !append {
            // An earlier uncommitted upload at the path goes first, with its segments.
            writer::discard_parked(&this, Cx::new(Operation::Writer, path), &key).await?;
        }
        MultipartWriter::open(this, path, key, append).await
    }
}
