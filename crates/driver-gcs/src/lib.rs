//! The Google Cloud Storage driver, registered as `"gcs"`.
//!
//! It speaks the GCS JSON API over `reqwest` (see docs/drivers/gcs.md for why not an
//! SDK), authenticates with `google-cloud-auth` (a service-account key from `keyfile` or
//! `credentials`, Application Default Credentials, or nothing for emulators), and maps
//! the storage contract onto objects:
//!
//! * a path `/a/b` is the object `<rootdirectory>/a/b` in `bucket`; directories are
//!   implicit (a name prefix);
//! * `put_content` is one simple upload; `reader` a ranged media download, streamed;
//! * the writer sends chunks to a resumable upload session and finalises it on commit
//!   (resumable from another process after `close`: see the `writer` module);
//! * `rename` is `objects.rewrite` (server side, looped until done) then a delete;
//! * `delete` lists the prefix and deletes the objects, `maxconcurrency` at a time;
//! * `list` lists with the `/` delimiter; `walk` is one flat paginated listing
//!   ([`driver_api::walk::flat`]) starting at `startOffset`;
//! * `redirect_url` is a V4 signed URL (`GOOG4-RSA-SHA256`) when a service-account key
//!   is configured, valid 20 minutes by default, at most 7 days; otherwise `None`.
//!
//! ```no_run
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_api::Parameters;
//! let d = driver_api::factory::create(
//!     "gcs",
//!     Parameters::new()
//!         .with("bucket", "registry")
//!         .with("keyfile", "/etc/registry/gcs-key.json"),
//! )
//! .await?;
//! d.put_content("/hello", "world").await?;
//! # Ok(()) }
//! ```

mod client;
pub mod params;
pub mod sign;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use driver_api::keys::{Children, KeySpace};
use driver_api::walk::flat::FlatWalk;
use driver_api::{
    register_driver, ByteStream, FileInfo, FileWriter, Parameters, RedirectMethod, RedirectRequest,
    Result, StorageDriver, StorageError, StoragePath, WalkFn, WalkOptions,
};
use driver_http::Call;
use driver_http::RestClient as _;
use futures::{StreamExt, TryStreamExt};
use reqwest::Method;

use crate::client::{Client, Object, ObjectList, Rewrite};
use crate::params::GcsParams;
use crate::writer::GcsWriter;

/// The registered name.
pub const DRIVER: &str = "gcs";

register_driver! {
    name: DRIVER,
    description: "Google Cloud Storage (JSON API; service-account key, ADC or anonymous)",
    parameters: params::PARAMS,
    create: GcsDriver::from_parameters,
}

/// The GCS driver. Cheap to clone (one shared client).
#[derive(Clone)]
pub struct GcsDriver {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    client: Client,
    keys: KeySpace,
    p: GcsParams,
    /// `objects.list` requests sent.
    list_requests: AtomicU64,
}

impl std::fmt::Debug for GcsDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsDriver")
            .field("params", &self.inner.p)
            .finish_non_exhaustive()
    }
}

impl GcsDriver {
    /// Creates the driver from factory parameters (a key file is read off the async
    /// workers).
    pub async fn from_parameters(params: Parameters) -> Result<Self> {
        let p = tokio::task::spawn_blocking(move || GcsParams::parse(params))
            .await
            .map_err(|e| StorageError::Config {
                driver: DRIVER.into(),
                message: format!("reading the parameters failed: {e}"),
            })??;
        Self::new(p)
    }

    /// `objects.list` requests this driver (and its clones) sent so far: a metric, and how
    /// the tests prove that a walk is one listing pass.
    pub fn list_requests(&self) -> u64 {
        self.inner.list_requests.load(Relaxed)
    }

    /// Creates the driver from parsed parameters. No request is made.
    pub fn new(p: GcsParams) -> Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                client: Client::new(&p)?,
                keys: KeySpace::new(&p.root),
                p,
                list_requests: AtomicU64::new(0),
            }),
        })
    }
}

impl Inner {
    /// The object name of `path`.
    pub(crate) fn name(&self, path: &StoragePath) -> String {
        self.keys.key(path)
    }

    /// The metadata of the object at `path`, if it exists.
    pub(crate) async fn head(
        &self,
        op: &'static str,
        path: &StoragePath,
    ) -> Result<Option<Object>> {
        let mut url = self.client.object_url(&self.name(path));
        url.query_pairs_mut()
            .append_pair("fields", "name,size,updated");
        let resp = self
            .client
            .send(Call::new(op, path, Method::GET, url))
            .await?;
        match resp.status().as_u16() {
            200 => self.client.json(op, path, resp).await.map(Some),
            404 => Ok(None),
            _ => Err(self.client.error(op, path, resp).await),
        }
    }

    /// The whole content of object `name`, if it exists.
    pub(crate) async fn get_object(
        &self,
        op: &'static str,
        path: &StoragePath,
        name: &str,
    ) -> Result<Option<Bytes>> {
        let mut url = self.client.object_url(name);
        url.query_pairs_mut().append_pair("alt", "media");
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
            _ => Err(self.client.error(op, path, resp).await),
        }
    }

    /// A simple (one request) upload of `data` as object `name`.
    pub(crate) async fn put_object(
        &self,
        op: &'static str,
        path: &StoragePath,
        name: &str,
        data: Bytes,
    ) -> Result<()> {
        let url = self.client.upload_url("media", name);
        let call = Call::new(op, path, Method::POST, url)
            .header("content-type", "application/octet-stream")
            .body(data);
        self.client.expect(call, &[200, 201]).await.map(drop)
    }

    /// Deletes object `name`; whether it existed.
    pub(crate) async fn delete_object(
        &self,
        op: &'static str,
        path: &StoragePath,
        name: &str,
    ) -> Result<bool> {
        let url = self.client.object_url(name);
        let resp = self
            .client
            .send(Call::new(op, path, Method::DELETE, url))
            .await?;
        match resp.status().as_u16() {
            200 | 204 => Ok(true),
            404 => Ok(false),
            _ => Err(self.client.error(op, path, resp).await),
        }
    }

    /// One page of `objects.list` under `prefix`.
    async fn list_page(
        &self,
        op: &'static str,
        path: &StoragePath,
        prefix: &str,
        page: Page<'_>,
    ) -> Result<ObjectList> {
        let mut q: Vec<(&str, &str)> = vec![("prefix", prefix)];
        if page.delimiter {
            q.push(("delimiter", "/"));
            q.push(("fields", "items(name),prefixes,nextPageToken"));
        } else {
            q.push(("fields", "items(name,size,updated),nextPageToken"));
        }
        if let Some(t) = page.token {
            q.push(("pageToken", t));
        }
        if let Some(s) = page.start {
            q.push(("startOffset", s));
        }
        // GCS's page maximum, asked for explicitly (some servers default to everything).
        let max = Some(page.max.unwrap_or(1000).to_string());
        if let Some(m) = &max {
            q.push(("maxResults", m));
        }
        self.list_requests.fetch_add(1, Relaxed);
        let url = self.client.objects_url(&q);
        let resp = self
            .client
            .send(Call::new(op, path, Method::GET, url))
            .await?;
        if resp.status().as_u16() != 200 {
            return Err(self.client.list_error(op, path, resp).await);
        }
        self.client.json(op, path, resp).await
    }

    /// Every page of a listing, fed to `each` until it returns `false`.
    async fn list_all(
        &self,
        op: &'static str,
        path: &StoragePath,
        prefix: &str,
        page: Page<'_>,
        mut each: impl FnMut(ObjectList) -> bool,
    ) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            // Later pages repeat the first page's parameters, plus the token.
            let this = Page {
                token: token.as_deref(),
                ..page
            };
            let list = self.list_page(op, path, prefix, this).await?;
            let next = list.next_page_token.clone().filter(|t| !t.is_empty());
            if !each(list) {
                return Ok(());
            }
            match next {
                Some(t) => token = Some(t),
                None => return Ok(()),
            }
        }
    }
}

/// How to list.
#[derive(Clone, Copy, Default)]
struct Page<'a> {
    delimiter: bool,
    token: Option<&'a str>,
    start: Option<&'a str>,
    max: Option<u32>,
}

#[async_trait]
impl StorageDriver for GcsDriver {
    fn name(&self) -> &str {
        DRIVER
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        let s = &self.inner;
        s.get_object("get_content", path, &s.name(path))
            .await?
            .ok_or_else(|| StorageError::not_found(DRIVER, path))
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        let s = &self.inner;
        s.put_object("put_content", path, &s.name(path), content)
            .await
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let s = &self.inner;
        let mut url = s.client.object_url(&s.name(path));
        url.query_pairs_mut().append_pair("alt", "media");
        let mut call = Call::new("reader", path, Method::GET, url);
        if offset > 0 {
            call = call.header("range", format!("bytes={offset}-"));
        }
        let resp = s.client.send(call).await?;
        match resp.status().as_u16() {
            200 | 206 => Ok(driver_http::body_stream(DRIVER, "reader", path, resp)),
            416 => {
                // The range starts at or past the end: empty at the end, else an error.
                let size = s
                    .head("reader", path)
                    .await?
                    .ok_or_else(|| StorageError::not_found(DRIVER, path))?
                    .size();
                driver_api::keys::read_past_end(DRIVER, path, offset, size)
            }
            _ => Err(s.client.error("reader", path, resp).await),
        }
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>> {
        let s = self.inner.clone();
        let w = if append {
            GcsWriter::resume(s, path.clone()).await?
        } else {
            GcsWriter::new(s, path.clone())
        };
        Ok(Box::new(w))
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let s = &self.inner;
        let object = || async {
            let o = s.head("stat", path).await?;
            Ok(o.map(|o| (o.size(), o.mod_time())))
        };
        let first_below = || async {
            let page = Page {
                max: Some(1),
                ..Page::default()
            };
            let list = s
                .list_page("stat", path, &s.keys.dir_prefix(path), page)
                .await?;
            Ok(list.items.first().map(|o| o.mod_time()))
        };
        driver_api::keys::stat(DRIVER, path, object, first_below).await
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        let s = &self.inner;
        let prefix = s.keys.dir_prefix(path);
        let mut children = Children::new(path, &prefix);
        let page = Page {
            delimiter: true,
            ..Page::default()
        };
        s.list_all("list", path, &prefix, page, |list| {
            let names = list.items.iter().map(|o| o.name.as_str());
            for name in names.chain(list.prefixes.iter().map(String::as_str)) {
                children.push(name);
            }
            true
        })
        .await?;
        children.finish(DRIVER)
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let (from, to) = (s.name(src), s.name(dst));
        if src == dst {
            // Rewriting onto itself then deleting would lose it.
            return s
                .head("rename", src)
                .await?
                .map(drop)
                .ok_or_else(|| StorageError::not_found(DRIVER, src));
        }
        let mut token: Option<String> = None;
        loop {
            let url = s.client.rewrite_url(&from, &to, token.as_deref());
            let resp = s
                .client
                .send(
                    Call::new("rename", src, Method::POST, url)
                        .header("content-type", "application/json"),
                )
                .await?;
            if resp.status().as_u16() != 200 {
                return Err(s.client.error("rename", src, resp).await);
            }
            let r: Rewrite = s.client.json("rename", src, resp).await?;
            if r.done {
                break;
            }
            token = r.rewrite_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Err(StorageError::backend(
                    DRIVER,
                    "rename",
                    src,
                    "rewrite not done and no rewriteToken".to_owned(),
                ));
            }
        }
        s.delete_object("rename", src, &from).await.map(drop)
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let prefix = s.keys.dir_prefix(path);
        let mut any = !path.is_root() && s.delete_object("delete", path, &s.name(path)).await?;
        // List everything first, then delete: deleting while paging could skip names.
        let mut names = Vec::new();
        s.list_all("delete", path, &prefix, Page::default(), |list| {
            names.extend(list.items.into_iter().map(|o| o.name));
            true
        })
        .await?;
        let deleted: Vec<bool> = futures::stream::iter(names)
            .map(|n| async move { s.delete_object("delete", path, &n).await })
            .buffer_unordered(s.p.max_concurrency)
            .try_collect()
            .await?;
        any |= deleted.contains(&true);
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
        let Some(signer) = &s.client.signer else {
            return Ok(None);
        };
        let method = match request.method {
            RedirectMethod::Head => "HEAD",
            _ => "GET",
        };
        let expiry = request.lifetime();
        signer
            .sign(
                s.client.endpoint(),
                method,
                s.client.bucket(),
                &s.name(path),
                jiff::Timestamp::now(),
                expiry,
            )
            .await
            .map(Some)
            .map_err(|e| {
                StorageError::backend(DRIVER, "redirect_url", path, format!("cannot sign: {e}"))
            })
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
        let page = Page {
            start: start.as_deref(),
            ..Page::default()
        };
        s.list_all("walk", path, &prefix, page, |list| {
            for o in &list.items {
                let rel = o.name.get(prefix.len()..).unwrap_or("");
                if !walk.push(rel, o.size(), o.mod_time()) {
                    return false;
                }
            }
            true
        })
        .await?;
        walk.finish(DRIVER)
    }
}
