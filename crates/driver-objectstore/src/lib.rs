//! The object-store core: one storage driver, written once, over a small backend trait
//! that each object store (S3, Azure Blob, GCS, Aliyun OSS, OpenStack Swift) implements
//! with one request per method.
//!
//! Object stores have no directories and no rename; what turns one into Distribution's
//! filesystem-like store is the same everywhere: paths become keys under a root, a
//! directory is a key prefix, `stat` of a directory is a one-key listing, `list` pages
//! through a delimited listing, `walk` reorders one flat listing, a tree delete pages
//! through the subtree deleting as it goes, and a move is a copy then a delete. This crate
//! owns those loops ([`ObjectStore`] implements [`StorageDriver`] on top of any
//! [`ObjectBackend`]); a backend supplies only the steps:
//!
//! | step | S3 | Azure | GCS | OSS | Swift |
//! |---|---|---|---|---|---|
//! | [`head`](ObjectBackend::head) | HeadObject | Get Blob Properties | objects.get (metadata) | HeadObject | HEAD |
//! | [`get`](ObjectBackend::get) | ranged GetObject | ranged Get Blob | `alt=media` | ranged GetObject | ranged GET |
//! | [`put`](ObjectBackend::put) | PutObject | Put Blob | media upload | PutObject | PUT |
//! | [`copy`](ObjectBackend::copy) | CopyObject / UploadPartCopy | Copy Blob | rewrite | CopyObject / UploadPartCopy | COPY |
//! | [`list_page`](ObjectBackend::list_page) | ListObjectsV2 | List Blobs | objects.list | ListObjectsV2 | container GET |
//! | [`delete_batch`](ObjectBackend::delete_batch) | DeleteObjects (1,000) | blob batch (256) | one at a time | DeleteMultipleObjects (1,000) | bulk delete (1,000) |
//!
//! A backend overrides a provided step where its service really differs: Swift's
//! [`move_object`](ObjectBackend::move_object) copies a large object's manifest and
//! keeps its segments, and its [`after_delete`](ObjectBackend::after_delete) removes
//! upload state kept in another container.
//!
//! # Memory
//!
//! Every loop holds at most one listing page: `list` keeps the children it returns, a
//! walk keeps what [`FlatWalk`] must reorder, and a tree
//! delete of any size holds one page of keys ([`ObjectStore::with_page_size`] lowers the
//! page, so tests cross page boundaries with a few keys).
//!
//! # Example: a backend
//!
//! `examples/` of the driver crates are the real thing; in outline a backend is
//!
//! ```ignore
//! #[async_trait]
//! impl ObjectBackend for MyStore {
//!     const NAME: &'static str = "mystore";
//!     const START_AFTER: bool = true;
//!     fn keys(&self) -> &KeySpace { &self.keys }
//!     async fn head(&self, cx: Cx<'_>, key: &str) -> Result<Option<ObjectMeta>> { /* HEAD */ }
//!     async fn get(&self, cx: Cx<'_>, key: &str, offset: u64, version: Option<&str>) -> Result<Got> { /* GET */ }
//!     // put, copy, delete, list_page, writer ...
//! }
//! pub type MyDriver = driver_objectstore::ObjectStore<MyStore>;
//! ```

pub mod auth;
mod delete;
mod leftovers;
pub mod network;
mod pager;
pub mod read;
pub mod upload;

use driver_api::Operation;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use driver_api::keys::{Children, KeySpace};
use driver_api::walk::flat::FlatWalk;
use driver_api::{
    ByteStream, Capabilities, FileInfo, FileWriter, Leftover, Parameters, RedirectRequest, Result,
    StorageDriver, StorageError, StoragePath, WalkFn, WalkOptions,
};
use futures::{StreamExt, TryStreamExt};

pub use crate::leftovers::OpenUpload;
pub use crate::network::{Network, Retry};
use crate::pager::Pager;
pub use crate::read::Body;

#[doc(hidden)]
pub mod __private {
    pub use driver_api::{ParamKind, ParamSpec};
}
pub use crate::upload::{MultipartBackend, MultipartWriter, ParkedUpload, Part};

/// What a backend call is for: the operation and the path, so that its errors name both.
#[derive(Debug, Clone, Copy)]
pub struct Cx<'a> {
    /// The operation (`"stat"`, `"delete"`, ...).
    pub op: Operation,
    /// The path the operation is on.
    pub path: &'a StoragePath,
}

impl<'a> Cx<'a> {
    /// `op` on `path`.
    pub fn new(op: Operation, path: &'a StoragePath) -> Self {
        Self { op, path }
    }
}

/// An object as a listing or a HEAD describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The whole key.
    pub key: String,
    /// Its size in bytes (a large object's whole size, not its manifest's).
    pub size: u64,
    /// Its modification time (`UNIX_EPOCH` where the service gives none).
    pub mod_time: SystemTime,
    /// A manifest whose segments live in other objects (Swift's large objects), which
    /// deleting must remove too. Always `false` on services without such objects.
    pub segmented: bool,
}

impl ObjectMeta {
    /// A plain object.
    pub fn new(key: impl Into<String>, size: u64, mod_time: SystemTime) -> Self {
        Self {
            key: key.into(),
            size,
            mod_time,
            segmented: false,
        }
    }
}

/// One listing request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListRequest<'a> {
    /// Keys starting with this.
    pub prefix: &'a str,
    /// List one level: keys without a further `/` after the prefix, and the common
    /// prefixes (ending in `/`) of the rest.
    pub delimiter: bool,
    /// The continuation a previous page returned ([`ListPage::next`]).
    pub token: Option<&'a str>,
    /// Keys after this one (backends with [`ObjectBackend::START_AFTER`]; an inclusive
    /// start, as GCS's `startOffset`, is fine too: a walk filters by its hint, and a tree
    /// delete's start key is one it has already deleted). The core sends it with every
    /// page of a walk, token or not: a backend whose tokens count from the start (as
    /// fake-gcs-server's do) must keep sending it; one whose tokens are positions may
    /// ignore it when `token` is set.
    pub start_after: Option<&'a str>,
    /// At most this many entries (`None`: the service's page).
    pub max: Option<u32>,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ObjectMeta>,
    /// Common prefixes (delimited listings only), each ending in `/`.
    pub prefixes: Vec<String>,
    /// How to ask for the next page; `None` on the last one.
    pub next: Option<String>,
}

impl ListPage {
    /// The last key or prefix of the page.
    fn last_key(&self) -> Option<&str> {
        let o = self.objects.last().map(|o| o.key.as_str());
        let p = self.prefixes.last().map(String::as_str);
        o.max(p)
    }
}

/// The answer to a ranged read.
pub enum Got {
    /// The object's bytes from the offset on.
    Stream(Body),
    /// No object at the key.
    NotFound,
    /// The service refused the range as starting at or past the end (HTTP 416); the core
    /// asks [`ObjectBackend::head`] for the size to tell which.
    PastEnd,
    /// The object is no longer the version asked for (HTTP 412 to a pinned read).
    Changed,
}

impl fmt::Debug for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Got::Stream(b) => b.fmt(f),
            Got::NotFound => f.write_str("NotFound"),
            Got::PastEnd => f.write_str("PastEnd"),
            Got::Changed => f.write_str("Changed"),
        }
    }
}

/// One object store's requests: each method is one request (or one service-side
/// operation), and [`ObjectStore`] drives them. See the crate docs.
#[async_trait]
pub trait ObjectBackend: fmt::Debug + Send + Sync + Sized + 'static {
    /// The driver's registered name, carried by every error.
    const NAME: &'static str;

    /// Whether [`list_page`](Self::list_page) honours [`ListRequest::start_after`]. A
    /// tree delete then continues each page after the last key it listed, which stays
    /// right whatever the service's page tokens mean; without it, it follows the tokens.
    const START_AFTER: bool;

    /// Creates the backend from the factory's parameters.
    async fn from_parameters(params: Parameters) -> Result<Self>;

    /// Where paths live: the root prefix.
    fn keys(&self) -> &KeySpace;

    /// What the driver can do (see [`Capabilities`]).
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Keys one [`delete_batch`](Self::delete_batch) request takes.
    fn delete_batch_size(&self) -> usize {
        1
    }

    /// Delete requests a tree delete keeps in flight.
    fn delete_concurrency(&self) -> usize {
        4
    }

    /// The object at `key`, if there is one.
    async fn head(&self, cx: Cx<'_>, key: &str) -> Result<Option<ObjectMeta>>;

    /// The bytes of `key` from `offset` on. With a `version` (one that an earlier
    /// answer's [`Body::version`] named), only that version: anything else is
    /// [`Got::Changed`] (`If-Match`, GCS's `ifGenerationMatch`). The core resumes cut
    /// streams with it ([`read`]), so a backend only has to say which version it sent.
    async fn get(&self, cx: Cx<'_>, key: &str, offset: u64, version: Option<&str>) -> Result<Got>;

    /// Replaces the object at `key` with `data`, atomically.
    async fn put(&self, cx: Cx<'_>, key: &str, data: Bytes) -> Result<()>;

    /// Copies `src` to `dst` on the service, replacing `dst`.
    async fn copy(&self, cx: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()>;

    /// Moves `src` to `dst`: by default [`copy`](Self::copy), then
    /// [`delete`](Self::delete) of the source.
    async fn move_object(&self, cx: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()> {
        self.copy(cx, src, dst).await?;
        self.delete(cx, &src.key, false).await.map(drop)
    }

    /// Deletes the object at `key`: whether it existed. Where the service does not say,
    /// `report` asks the backend to find out (a HEAD first); without it `true` will do.
    async fn delete(&self, cx: Cx<'_>, key: &str, report: bool) -> Result<bool>;

    /// Deletes `objects` (at most [`delete_batch_size`](Self::delete_batch_size), just
    /// listed); a missing one is fine. The default deletes them one by one,
    /// [`delete_concurrency`](Self::delete_concurrency) at a time.
    async fn delete_batch(&self, cx: Cx<'_>, objects: &[ObjectMeta]) -> Result<()> {
        // (Indices, not references: a closure over `&ObjectMeta` is not general enough
        // for the Send bound of the boxed future.)
        futures::stream::iter(0..objects.len())
            .map(|i| self.delete(cx, &objects[i].key, false))
            .buffer_unordered(self.delete_concurrency())
            .try_collect::<Vec<bool>>()
            .await
            .map(drop)
    }

    /// One page of a listing.
    async fn list_page(&self, cx: Cx<'_>, req: &ListRequest<'_>) -> Result<ListPage>;

    /// After a delete of `key` and everything below it: removes what the backend keeps
    /// elsewhere for those paths (upload state in another container). Default: nothing.
    async fn after_delete(&self, _cx: Cx<'_>, _key: &str) -> Result<()> {
        Ok(())
    }

    /// The uploads the service holds for keys starting with `prefix`, where it can list
    /// them (S3 and OSS multipart uploads, Azure blobs with only uncommitted blocks), in
    /// any order; the core reports those that no
    /// parked object names as orphans (`storagectl uploads`). Default: none (the service
    /// cannot list them, or keeps nothing between requests).
    async fn list_uploads(&self, _cx: Cx<'_>, _prefix: &str) -> Result<Vec<OpenUpload>> {
        Ok(Vec::new())
    }

    /// Aborts the upload `upload` at `key`, one that [`list_uploads`](Self::list_uploads)
    /// reported or an open parked object names (see
    /// [`MultipartBackend::PARK_AT_START`]).
    /// Default: `Unsupported`.
    async fn abort_upload(&self, cx: Cx<'_>, _key: &str, _upload: &str) -> Result<()> {
        Err(StorageError::Unsupported {
            driver: Self::NAME.into(),
            operation: cx.op,
            feature: "aborting an upload".into(),
            path: Some(cx.path.to_string()),
        })
    }

    /// A URL a client may fetch `key` from directly, if the backend can sign one.
    async fn redirect_url(
        &self,
        _cx: Cx<'_>,
        _request: &RedirectRequest,
        _key: &str,
    ) -> Result<Option<String>> {
        Ok(None)
    }

    /// A writer for `path` (at `key`): fresh, or resuming the upload in progress.
    async fn writer(
        this: Arc<Self>,
        path: &StoragePath,
        key: String,
        append: bool,
    ) -> Result<Box<dyn FileWriter>>;
}

/// Requests the core has sent, for tests and metrics.
#[derive(Debug, Default)]
struct Counters {
    list: AtomicU64,
    delete: AtomicU64,
}

/// The storage driver over backend `B` (see the crate docs). Cheap to clone.
pub struct ObjectStore<B> {
    backend: Arc<B>,
    page_size: Option<u32>,
    counters: Arc<Counters>,
}

impl<B> Clone for ObjectStore<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            page_size: self.page_size,
            counters: self.counters.clone(),
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for ObjectStore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.backend.fmt(f)
    }
}

impl<B: ObjectBackend> ObjectStore<B> {
    /// The driver over `backend`.
    pub fn new(backend: B) -> Self {
        Self {
            backend: Arc::new(backend),
            page_size: None,
            counters: Arc::default(),
        }
    }

    /// The driver from the factory's parameters.
    pub async fn from_parameters(params: Parameters) -> Result<Self> {
        B::from_parameters(params).await.map(Self::new)
    }

    /// Lists at most `n` entries a page (tests use this to cross page boundaries with a
    /// few keys; the default is the service's page).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n.max(1));
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Listing pages requested so far by this driver and its clones.
    pub fn list_requests(&self) -> u64 {
        self.counters.list.load(Relaxed)
    }

    /// Batch delete requests sent so far by tree deletes of this driver and its clones.
    pub fn delete_requests(&self) -> u64 {
        self.counters.delete.load(Relaxed)
    }

    fn key(&self, path: &StoragePath) -> String {
        self.backend.keys().key(path)
    }

    fn pager<'a>(&'a self, cx: Cx<'a>, prefix: &'a str, delimiter: bool) -> Pager<'a, B> {
        Pager::new(
            &self.backend,
            &self.counters.list,
            cx,
            ListRequest {
                prefix,
                delimiter,
                max: self.page_size,
                ..ListRequest::default()
            },
        )
    }

    /// The object at `path`, or `PathNotFound`.
    async fn object(&self, cx: Cx<'_>) -> Result<ObjectMeta> {
        self.backend
            .head(cx, &self.key(cx.path))
            .await?
            .ok_or_else(|| StorageError::not_found(B::NAME, cx.path))
    }
}

#[async_trait]
impl<B: ObjectBackend> StorageDriver for ObjectStore<B> {
    fn name(&self) -> &str {
        B::NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        let cx = Cx::new(Operation::GetContent, path);
        read::read_all(&self.backend, cx, &self.key(path))
            .await?
            .ok_or_else(|| StorageError::not_found(B::NAME, path))
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        let cx = Cx::new(Operation::PutContent, path);
        self.backend.put(cx, &self.key(path), content).await
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let cx = Cx::new(Operation::Reader, path);
        let key = self.key(path);
        match self.backend.get(cx, &key, offset, None).await? {
            Got::Stream(body) => Ok(read::resuming(self.backend.clone(), cx, key, offset, body)),
            Got::NotFound => Err(StorageError::not_found(B::NAME, path)),
            Got::Changed => Err(StorageError::changed(B::NAME, path, offset)),
            Got::PastEnd => {
                let size = self.object(cx).await?.size;
                driver_api::keys::read_past_end(B::NAME, path, offset, size)
            }
        }
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>> {
        B::writer(self.backend.clone(), path, self.key(path), append).await
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let cx = Cx::new(Operation::Stat, path);
        let object = || async {
            let o = self.backend.head(cx, &self.key(path)).await?;
            Ok(o.map(|o| (o.size, o.mod_time)))
        };
        let first_below = || async {
            let prefix = self.backend.keys().dir_prefix(path);
            let mut pager = self.pager(cx, &prefix, false);
            pager.set_max(1);
            let page = pager.next().await?;
            Ok(page.and_then(|p| p.objects.first().map(|o| o.mod_time)))
        };
        driver_api::keys::stat(B::NAME, path, object, first_below).await
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        let cx = Cx::new(Operation::List, path);
        let prefix = self.backend.keys().dir_prefix(path);
        let mut children = Children::new(path, &prefix);
        let mut pager = self.pager(cx, &prefix, true);
        while let Some(page) = pager.next().await? {
            for o in &page.objects {
                children.push(&o.key);
            }
            for p in &page.prefixes {
                children.push(p);
            }
        }
        children.finish(B::NAME)
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let cx = Cx::new(Operation::Rename, src);
        let object = self.object(cx).await?;
        if src == dst {
            // Copying onto itself then deleting would lose it.
            return Ok(());
        }
        self.backend.move_object(cx, &object, &self.key(dst)).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        delete::tree(self, Cx::new(Operation::Delete, path)).await
    }

    async fn redirect_url(
        &self,
        request: &RedirectRequest,
        path: &StoragePath,
    ) -> Result<Option<String>> {
        let cx = Cx::new(Operation::RedirectUrl, path);
        self.backend
            .redirect_url(cx, request, &self.key(path))
            .await
    }

    async fn walk(
        &self,
        path: &StoragePath,
        options: &WalkOptions,
        f: &mut WalkFn<'_>,
    ) -> Result<()> {
        let cx = Cx::new(Operation::Walk, path);
        let prefix = self.backend.keys().dir_prefix(path);
        let mut walk = FlatWalk::new(path, options, f);
        let mut pager = self.pager(cx, &prefix, false);
        if let Some(after) = walk.start_after() {
            pager.start_after(format!("{prefix}{after}"));
        }
        'pages: while let Some(page) = pager.next().await? {
            for o in &page.objects {
                let rel = o.key.get(prefix.len()..).unwrap_or("");
                if !walk.push(rel, o.size, o.mod_time) {
                    break 'pages;
                }
            }
        }
        walk.finish(B::NAME)
    }

    async fn uploads(&self, path: &StoragePath) -> Result<Vec<Leftover>> {
        self.find_leftovers(path).await
    }

    async fn purge_upload(&self, leftover: &Leftover) -> Result<()> {
        self.purge_leftover(leftover).await
    }
}

#[cfg(test)]
mod tests;
