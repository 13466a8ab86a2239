//! The Azure Blob Storage driver, registered as `"azure"`.
//!
//! It speaks the Blob REST API over `reqwest` (see docs/drivers/azure.md for why not an
//! SDK), signs with `reqsign`'s Azure signer (shared key, SAS token, or Entra ID bearer
//! tokens from a client secret or the default chain), and maps the storage contract onto
//! block blobs:
//!
//! * a path `/a/b` is the blob `<rootdirectory>/a/b` in `container`; directories are
//!   implicit (a name prefix);
//! * `put_content` is one `Put Blob`; `reader` a ranged `Get Blob`, streamed;
//! * the writer stages blocks on the target blob and commits them with one
//!   `Put Block List` (atomic, resumable: see the `writer` module);
//! * `rename` is `Copy Blob` (server side, polled while pending) then `Delete Blob`;
//! * `delete` lists the prefix and deletes the blobs, `maxconcurrency` at a time;
//! * `list` lists with the `/` delimiter; `walk` is one flat paginated listing
//!   ([`driver_api::walk::flat`]);
//! * `redirect_url` is a read-only SAS URL (service SAS from the account key, or a
//!   user-delegation SAS with Entra ID credentials), valid 20 minutes by default.
//!
//! ```no_run
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_api::Parameters;
//! let d = driver_api::factory::create(
//!     "azure",
//!     Parameters::new()
//!         .with("accountname", "devstoreaccount1")
//!         .with("accountkey", "...")
//!         .with("container", "registry")
//!         .with("serviceurl", "http://127.0.0.1:10000/devstoreaccount1"),
//! )
//! .await?;
//! d.put_content("/hello", "world").await?;
//! # Ok(()) }
//! ```

mod client;
pub mod params;
mod writer;
mod xml;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use driver_api::keys::{Children, KeySpace};
use driver_api::walk::flat::FlatWalk;
use driver_api::{
    register_driver, ByteStream, FileInfo, FileWriter, Parameters, RedirectRequest, Result,
    StorageDriver, StorageError, StoragePath, WalkFn, WalkOptions,
};
use driver_http::RestClient as _;
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, Response};

use crate::client::{Call, Client};
use crate::params::{Auth, AzureParams};
use crate::writer::AzureWriter;
use crate::xml::{EnumerationResults, Item};

/// The registered name.
pub const DRIVER: &str = "azure";

/// Deletions per `Blob Batch` request (Azure's maximum).
const BATCH: usize = 256;
/// Longest wait for a pending server-side copy.
const COPY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

register_driver! {
    name: DRIVER,
    description: "Azure Blob Storage (Blob REST API; shared key, SAS or Entra ID)",
    parameters: params::PARAMS,
    create: AzureDriver::from_parameters,
}

/// The Azure driver. Cheap to clone (one shared client).
#[derive(Clone)]
pub struct AzureDriver {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    client: Client,
    keys: KeySpace,
    /// The service refused a blob batch: delete one by one from now on.
    no_batch: std::sync::atomic::AtomicBool,
    p: AzureParams,
    /// `List Blobs` requests sent.
    list_requests: std::sync::atomic::AtomicU64,
    /// Deletion requests (`Delete Blob` and `Blob Batch`) sent.
    delete_requests: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AzureDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureDriver")
            .field("params", &self.inner.p)
            .finish_non_exhaustive()
    }
}

impl AzureDriver {
    /// Creates the driver from factory parameters.
    pub async fn from_parameters(params: Parameters) -> Result<Self> {
        Self::new(AzureParams::parse(params)?)
    }

    /// Creates the driver from parsed parameters. No request is made.
    pub fn new(p: AzureParams) -> Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                client: Client::new(&p)?,
                keys: KeySpace::new(&p.root),
                no_batch: std::sync::atomic::AtomicBool::new(false),
                p,
                list_requests: Default::default(),
                delete_requests: Default::default(),
            }),
        })
    }

    /// `List Blobs` requests this driver (and its clones) sent so far: a metric, and how
    /// the tests prove that a walk is one listing pass.
    pub fn list_requests(&self) -> u64 {
        self.inner
            .list_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Deletion requests (`Delete Blob` and `Blob Batch`) this driver sent so far: how the
    /// tests prove that deletes are batched.
    pub fn delete_requests(&self) -> u64 {
        self.inner
            .delete_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Creates the container if it does not exist. For tests and first-time setup: the
    /// driver itself never creates containers (that needs account-level rights).
    pub async fn create_container(&self) -> Result<()> {
        self.inner
            .client
            .container_op(Method::PUT, &[201, 409])
            .await
    }

    /// Deletes the whole container and everything in it, in one request. For tests and
    /// teardown: `delete("/")` is the contract's way and removes blob by blob.
    pub async fn delete_container(&self) -> Result<()> {
        self.inner
            .client
            .container_op(Method::DELETE, &[202, 404])
            .await
    }
}

impl Inner {
    /// The blob name of `path`.
    pub(crate) fn name(&self, path: &StoragePath) -> String {
        self.keys.key(path)
    }

    /// `Get Blob Properties`: the size, or `None` if there is no such blob.
    pub(crate) async fn stat_blob(
        &self,
        op: &'static str,
        path: &StoragePath,
    ) -> Result<Option<u64>> {
        Ok(self.head(op, path).await?.map(|(size, _)| size))
    }

    /// Size and time of the blob at `path`, if it exists.
    async fn head(
        &self,
        op: &'static str,
        path: &StoragePath,
    ) -> Result<Option<(u64, SystemTime)>> {
        let url = self.client.blob_url(&self.name(path));
        let resp = self
            .client
            .send(Call::new(op, path, Method::HEAD, url))
            .await?;
        match resp.status().as_u16() {
            200 => Ok(Some((content_length(&resp), last_modified(&resp)))),
            404 => Ok(None),
            _ => Err(self.client.error(op, path, resp).await),
        }
    }

    /// `Put Blob`: the whole content in one request.
    pub(crate) async fn put_blob(
        &self,
        op: &'static str,
        path: &StoragePath,
        data: Bytes,
    ) -> Result<()> {
        let url = self.client.blob_url(&self.name(path));
        let call = Call::new(op, path, Method::PUT, url)
            .header("x-ms-blob-type", "BlockBlob")
            .header("x-ms-blob-content-type", "application/octet-stream")
            .body(data);
        self.client.expect(call, &[201]).await.map(drop)
    }

    /// One page of `List Blobs` under `prefix`.
    async fn list_page(
        &self,
        op: &'static str,
        path: &StoragePath,
        prefix: &str,
        delimiter: bool,
        marker: Option<&str>,
        max: Option<u32>,
    ) -> Result<EnumerationResults> {
        let mut url = self
            .client
            .container_url(&[("restype", "container"), ("comp", "list")]);
        {
            let mut q = url.query_pairs_mut();
            if !prefix.is_empty() {
                q.append_pair("prefix", prefix);
            }
            if delimiter {
                q.append_pair("delimiter", "/");
            }
            if let Some(m) = marker {
                q.append_pair("marker", m);
            }
            if let Some(n) = max {
                q.append_pair("maxresults", &n.to_string());
            }
        }
        self.list_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = self
            .client
            .expect(Call::new(op, path, Method::GET, url), &[200])
            .await?;
        let body = resp
            .text()
            .await
            .map_err(|e| driver_http::transport_error(DRIVER, op, path, e))?;
        xml::parse(&body, op, path)
    }

    /// The URL a `Copy Blob` of `name` reads from (with the SAS token, when that is how
    /// the driver authenticates).
    fn copy_source(&self, name: &str) -> String {
        let mut url = self.client.blob_url(name);
        if let Auth::Sas(token) = &self.p.auth {
            url.set_query(Some(token));
        }
        url.into()
    }

    /// Waits for a pending copy into `dst` to finish.
    async fn wait_copy(&self, dst: &StoragePath) -> Result<()> {
        let fail = |what: String| StorageError::backend(DRIVER, "rename", dst, what);
        if self.p.max_retries == 0 {
            return Err(fail(
                "the copy did not complete at once and max_retries is -1".into(),
            ));
        }
        let started = std::time::Instant::now();
        let mut delay = self.p.retry_delay;
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.p.max_retry_delay);
            let url = self.client.blob_url(&self.name(dst));
            let resp = self
                .client
                .expect(Call::new("rename", dst, Method::HEAD, url), &[200])
                .await?;
            match Client::header(&resp, "x-ms-copy-status") {
                Some("success") | None => return Ok(()),
                Some("pending") if started.elapsed() < COPY_TIMEOUT => continue,
                Some("pending") => {
                    return Err(fail(format!("copy still pending after {COPY_TIMEOUT:?}")))
                }
                Some(other) => {
                    let why = Client::header(&resp, "x-ms-copy-status-description").unwrap_or("");
                    return Err(fail(format!("copy {other}: {why}")));
                }
            }
        }
    }

    /// Deletes blobs `names` (listed a moment ago): batches of 256 where the service
    /// takes batches, else one request each, `maxconcurrency` in flight. Whether any was
    /// deleted.
    async fn delete_many(&self, path: &StoragePath, names: Vec<String>) -> Result<bool> {
        use std::sync::atomic::Ordering::Relaxed;
        if names.is_empty() {
            return Ok(false);
        }
        if !self.no_batch.load(Relaxed) {
            let chunks: Vec<Vec<String>> = names.chunks(BATCH).map(<[String]>::to_vec).collect();
            let batches: Vec<Option<Vec<u16>>> = futures::stream::iter(chunks)
                .map(|chunk| async move {
                    self.delete_requests
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.client.delete_batch(path, &chunk).await
                })
                .buffer_unordered(self.p.max_concurrency.div_ceil(BATCH / 8).max(1))
                .try_collect()
                .await?;
            if batches.iter().all(Option::is_some) {
                let mut any = false;
                for status in batches.into_iter().flatten().flatten() {
                    match status {
                        202 => any = true,
                        404 => {}
                        s => {
                            return Err(driver_http::status_error(
                                DRIVER,
                                "delete",
                                path,
                                reqwest::StatusCode::from_u16(s)
                                    .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR),
                                "a blob of the batch was not deleted",
                            ))
                        }
                    }
                }
                return Ok(any);
            }
            tracing::debug!("blob batch refused; deleting one by one");
            self.no_batch.store(true, Relaxed);
        }
        let deleted: Vec<bool> = futures::stream::iter(names)
            .map(|n| async move { self.delete_blob(path, &n).await })
            .buffer_unordered(self.p.max_concurrency)
            .try_collect()
            .await?;
        Ok(deleted.contains(&true))
    }

    /// Deletes blob `name`; whether it existed.
    async fn delete_blob(&self, path: &StoragePath, name: &str) -> Result<bool> {
        self.delete_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = self.client.blob_url(name);
        let call = Call::new("delete", path, Method::DELETE, url)
            .header("x-ms-delete-snapshots", "include");
        let resp = self.client.send(call).await?;
        match resp.status().as_u16() {
            202 => Ok(true),
            404 => Ok(false),
            _ => Err(self.client.error("delete", path, resp).await),
        }
    }
}

fn content_length(resp: &Response) -> u64 {
    Client::header(resp, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn last_modified(resp: &Response) -> SystemTime {
    Client::header(resp, "last-modified")
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn parse_time(s: &str) -> SystemTime {
    httpdate::parse_http_date(s).unwrap_or(SystemTime::UNIX_EPOCH)
}

#[async_trait]
impl StorageDriver for AzureDriver {
    fn name(&self) -> &str {
        DRIVER
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        let s = &self.inner;
        let url = s.client.blob_url(&s.name(path));
        let resp = s
            .client
            .expect(Call::new("get_content", path, Method::GET, url), &[200])
            .await?;
        resp.bytes()
            .await
            .map_err(|e| driver_http::transport_error(DRIVER, "get_content", path, e))
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        self.inner.put_blob("put_content", path, content).await
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let s = &self.inner;
        let url = s.client.blob_url(&s.name(path));
        let mut call = Call::new("reader", path, Method::GET, url);
        if offset > 0 {
            call = call.header("x-ms-range", format!("bytes={offset}-"));
        }
        let resp = s.client.send(call).await?;
        match resp.status().as_u16() {
            200 | 206 => Ok(driver_http::body_stream(DRIVER, "reader", path, resp)),
            416 => {
                // The range starts at or past the end: empty at the end, else an error.
                let size = s
                    .stat_blob("reader", path)
                    .await?
                    .ok_or_else(|| StorageError::not_found(DRIVER, path))?;
                driver_api::keys::read_past_end(DRIVER, path, offset, size)
            }
            _ => Err(s.client.error("reader", path, resp).await),
        }
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>> {
        let s = self.inner.clone();
        let w = if append {
            AzureWriter::resume(s, path.clone()).await?
        } else {
            AzureWriter::new(s, path.clone())
        };
        Ok(Box::new(w))
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let s = &self.inner;
        let first_below = || async {
            let page = s
                .list_page("stat", path, &s.keys.dir_prefix(path), false, None, Some(1))
                .await?;
            Ok(match page.blobs.items.first() {
                Some(Item::Blob(b)) => Some(parse_time(&b.properties.last_modified)),
                _ => None,
            })
        };
        driver_api::keys::stat(DRIVER, path, || s.head("stat", path), first_below).await
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        let s = &self.inner;
        let prefix = s.keys.dir_prefix(path);
        let mut children = Children::new(path, &prefix);
        let mut marker = None;
        loop {
            let page = s
                .list_page("list", path, &prefix, true, marker.as_deref(), None)
                .await?;
            for item in &page.blobs.items {
                children.push(match item {
                    Item::Blob(b) => &b.name,
                    Item::BlobPrefix(p) => &p.name,
                });
            }
            marker = page.next();
            if marker.is_none() {
                break;
            }
        }
        children.finish(DRIVER)
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let s = &self.inner;
        if src == dst {
            // Copying onto itself then deleting would lose it.
            return s
                .stat_blob("rename", src)
                .await?
                .map(drop)
                .ok_or_else(|| StorageError::not_found(DRIVER, src));
        }
        let url = s.client.blob_url(&s.name(dst));
        let call = Call::new("rename", src, Method::PUT, url)
            .header("x-ms-copy-source", s.copy_source(&s.name(src)));
        let resp = s.client.send(call).await?;
        match resp.status().as_u16() {
            201 | 202 => {
                if Client::header(&resp, "x-ms-copy-status") == Some("pending") {
                    s.wait_copy(dst).await?;
                }
            }
            404 => return Err(StorageError::not_found(DRIVER, src)),
            _ => return Err(s.client.error("rename", src, resp).await),
        }
        s.delete_blob(src, &s.name(src)).await.map(drop)
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let prefix = s.keys.dir_prefix(path);
        let mut any = s.delete_blob(path, &s.name(path)).await?;
        let mut marker = None;
        loop {
            let page = s
                .list_page("delete", path, &prefix, false, marker.as_deref(), None)
                .await?;
            let names: Vec<String> = page
                .blobs
                .items
                .iter()
                .filter_map(|i| match i {
                    Item::Blob(b) => Some(b.name.clone()),
                    Item::BlobPrefix(_) => None,
                })
                .collect();
            let deleted = s.delete_many(path, names).await?;
            any |= deleted;
            marker = page.next();
            if marker.is_none() {
                break;
            }
        }
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
        s.client
            .read_url(path, &s.name(path), request.lifetime())
            .await
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
        let mut marker = None;
        'pages: loop {
            let page = s
                .list_page("walk", path, &prefix, false, marker.as_deref(), None)
                .await?;
            for item in &page.blobs.items {
                if let Item::Blob(b) = item {
                    let rel = b.name.get(prefix.len()..).unwrap_or("");
                    let time = parse_time(&b.properties.last_modified);
                    if !walk.push(rel, b.properties.content_length, time) {
                        break 'pages;
                    }
                }
            }
            marker = page.next();
            if marker.is_none() {
                break;
            }
        }
        walk.finish(DRIVER)
    }
}
