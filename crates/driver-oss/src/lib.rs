//! The Aliyun OSS driver, registered as `"oss"`.
//!
//! It speaks OSS's native REST API over `reqwest` (there is no official Rust OSS SDK),
//! signs every request with `reqsign`'s Aliyun OSS signer — V4 (`OSS4-HMAC-SHA256`) by
//! default, V1 where configured (see docs/drivers/oss.md for why) — and maps the storage
//! contract onto objects:
//!
//! * a path `/a/b` is the object `<rootdirectory>/a/b` in `bucket`; directories are
//!   implicit (a key prefix);
//! * `put_content` is one `PutObject`; `reader` a ranged `GetObject`, streamed;
//! * the writer uploads chunks as parts of a multipart upload and completes it on commit
//!   (resumable from another process after `close`: see the `writer` module);
//! * `rename` is a server-side `CopyObject` (or, above `multipartcopythreshold`,
//!   `UploadPartCopy` part by part, `maxconcurrency` at a time), then a delete;
//! * `delete` lists the prefix and removes the objects with `DeleteMultipleObjects`,
//!   1,000 keys per request;
//! * `list` lists with the `/` delimiter; `walk` is one flat paginated `ListObjectsV2`
//!   listing ([`driver_api::walk::flat`]) starting after the hint;
//! * `redirect_url` is a presigned URL (V4 or V1 like the requests), valid 20 minutes by
//!   default and at most 7 days.
//!
//! Errors from OSS carry a typed [`ServiceError`] (code, message, request id) as their
//! source.
//!
//! ```no_run
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_api::Parameters;
//! let d = driver_api::factory::create(
//!     "oss",
//!     Parameters::new()
//!         .with("accesskeyid", "LTAI...")
//!         .with("accesskeysecret", "...")
//!         .with("region", "oss-cn-hangzhou")
//!         .with("bucket", "registry"),
//! )
//! .await?;
//! d.put_content("/hello", "world").await?;
//! # Ok(()) }
//! ```

mod client;
pub mod params;
pub mod writer;
mod xml;

#[cfg(test)]
mod signing_vectors;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use driver_api::keys::{Children, KeySpace};
use driver_api::walk::flat::FlatWalk;
use driver_api::{
    register_driver, ByteStream, FileInfo, FileWriter, Parameters, RedirectMethod, RedirectRequest,
    Result, StorageDriver, StorageError, StoragePath, WalkFn, WalkOptions,
};
use driver_http::RestClient as _;
use futures::{StreamExt, TryStreamExt};
use md5::Digest as _;
use reqwest::Method;

pub use crate::client::ServiceError;
use crate::client::{Call, Client};
use crate::params::OssParams;
use crate::writer::OssWriter;
use crate::xml::Part;

/// The registered name.
pub const DRIVER: &str = "oss";

/// Keys per `DeleteMultipleObjects` request (OSS's maximum).
const DELETE_BATCH: usize = 1000;

register_driver! {
    name: DRIVER,
    description: "Aliyun Object Storage Service (native API, V4 or V1 signatures, STS tokens)",
    parameters: params::PARAMS,
    create: OssDriver::from_parameters,
}

/// The OSS driver. Cheap to clone (one shared client).
#[derive(Clone)]
pub struct OssDriver {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    client: Client,
    keys: KeySpace,
    p: OssParams,
    /// `ListObjectsV2` requests sent.
    list_requests: AtomicU64,
}

impl std::fmt::Debug for OssDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OssDriver")
            .field("params", &self.inner.p)
            .finish_non_exhaustive()
    }
}

impl OssDriver {
    /// Creates the driver from factory parameters. No request is made.
    pub async fn from_parameters(params: Parameters) -> Result<Self> {
        Self::new(OssParams::parse(params)?)
    }

    /// Creates the driver from parsed parameters. No request is made.
    pub fn new(p: OssParams) -> Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                client: Client::new(&p)?,
                keys: KeySpace::new(&p.root),
                p,
                list_requests: AtomicU64::new(0),
            }),
        })
    }

    /// `ListObjectsV2` requests this driver (and its clones) sent so far: a metric, and
    /// how the tests prove that a walk is one listing pass.
    pub fn list_requests(&self) -> u64 {
        self.inner.list_requests.load(Relaxed)
    }
}

/// The `Content-MD5` header value of `body`.
fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

impl Inner {
    /// The object key of `path`.
    pub(crate) fn key(&self, path: &StoragePath) -> String {
        self.keys.key(path)
    }

    /// Size and modification time of object `key`, if it exists.
    pub(crate) async fn head(
        &self,
        op: &'static str,
        path: &StoragePath,
        key: &str,
    ) -> Result<Option<(u64, SystemTime)>> {
        let url = self.client.object_url(key, &[]);
        let resp = self
            .client
            .send(Call::new(op, path, Method::HEAD, url))
            .await?;
        match resp.status().as_u16() {
            200 => {
                let size = Client::header(&resp, "content-length")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| {
                        StorageError::backend(DRIVER, op, path, "HEAD without Content-Length")
                    })?;
                let time = Client::header(&resp, "last-modified")
                    .and_then(|v| httpdate::parse_http_date(v).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Ok(Some((size, time)))
            }
            404 => Ok(None),
            _ => Err(self.client.error(op, path, resp).await),
        }
    }

    /// One `PutObject` of `data` as `key`.
    pub(crate) async fn put_object(
        &self,
        op: &'static str,
        path: &StoragePath,
        key: &str,
        data: Bytes,
    ) -> Result<()> {
        let url = self.client.object_url(key, &[]);
        let call = Call::new(op, path, Method::PUT, url)
            .header("content-type", "application/octet-stream")
            .body(data);
        self.client
            .expect(self.client.new_object(call), &[200])
            .await
            .map(drop)
    }

    /// Deletes object `key` (OSS answers 204 whether or not it existed).
    pub(crate) async fn delete_object(
        &self,
        op: &'static str,
        path: &StoragePath,
        key: &str,
    ) -> Result<()> {
        let url = self.client.object_url(key, &[]);
        self.client
            .expect(Call::new(op, path, Method::DELETE, url), &[200, 204, 404])
            .await
            .map(drop)
    }

    /// Starts a multipart upload at `key`; its id.
    pub(crate) async fn initiate(
        &self,
        op: &'static str,
        path: &StoragePath,
        key: &str,
    ) -> Result<String> {
        let url = self.client.object_url(key, &[("uploads", "")]);
        // Not retried: a retry would leave the first upload behind.
        let call = self.client.new_object(
            Call::new(op, path, Method::POST, url)
                .header("content-type", "application/octet-stream")
                .once(),
        );
        let body = self.client.text(call).await?;
        let r: xml::InitiateMultipartUploadResult = xml::parse(&body, op, path)?;
        Ok(r.upload_id)
    }

    /// Completes upload `id` of `key` from `parts`.
    pub(crate) async fn complete(
        &self,
        op: &'static str,
        path: &StoragePath,
        key: &str,
        id: &str,
        parts: &[Part],
    ) -> Result<()> {
        let url = self.client.object_url(key, &[("uploadId", id)]);
        let body = xml::complete_body(parts);
        let md5 = content_md5(body.as_bytes());
        let call = Client::xml_call(op, path, Method::POST, url, body).header("content-md5", md5);
        self.client.expect(call, &[200]).await.map(drop)
    }

    /// Aborts upload `id` of `key`, logging (not returning) a failure: callers abort while
    /// cleaning up after another error, or on cancel where the parts expire anyway.
    pub(crate) async fn abort(&self, path: &StoragePath, key: &str, id: &str) {
        let url = self.client.object_url(key, &[("uploadId", id)]);
        let call = Call::new("abort", path, Method::DELETE, url);
        if let Err(e) = self.client.expect(call, &[200, 204, 404]).await {
            tracing::warn!(driver = DRIVER, %path, error = %e, "aborting a multipart upload failed");
        }
    }

    /// One page of `ListObjectsV2` under `prefix`.
    async fn list_page(
        &self,
        op: &'static str,
        path: &StoragePath,
        prefix: &str,
        page: Page<'_>,
    ) -> Result<xml::ListBucketResult> {
        let max = page.max.unwrap_or(1000).to_string();
        let mut q: Vec<(&str, &str)> = vec![
            ("list-type", "2"),
            ("prefix", prefix),
            ("max-keys", &max),
            ("encoding-type", "url"),
        ];
        if page.delimiter {
            q.push(("delimiter", "/"));
        }
        if let Some(t) = page.token {
            q.push(("continuation-token", t));
        }
        if let Some(s) = page.start {
            q.push(("start-after", s));
        }
        self.list_requests.fetch_add(1, Relaxed);
        let url = self.client.bucket_url(&q);
        let body = self
            .client
            .text(Call::new(op, path, Method::GET, url))
            .await?;
        xml::parse(&body, op, path)
    }

    /// Every page of a listing, fed to `each` until it returns `false`.
    async fn list_all(
        &self,
        op: &'static str,
        path: &StoragePath,
        prefix: &str,
        page: Page<'_>,
        mut each: impl FnMut(xml::ListBucketResult) -> bool,
    ) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            let this = Page {
                token: token.as_deref(),
                ..page
            };
            let list = self.list_page(op, path, prefix, this).await?;
            let next = list.next();
            if !each(list) {
                return Ok(());
            }
            match next {
                Some(t) if token.as_deref() != Some(t.as_str()) => token = Some(t),
                _ => return Ok(()),
            }
        }
    }

    /// Deletes `keys` with `DeleteMultipleObjects`, [`DELETE_BATCH`] per request,
    /// `maxconcurrency` requests at a time.
    async fn delete_keys(&self, path: &StoragePath, keys: Vec<String>) -> Result<()> {
        let batches: Vec<Vec<String>> = keys.chunks(DELETE_BATCH).map(<[_]>::to_vec).collect();
        futures::stream::iter(batches)
            .map(|batch| async move {
                let url = self
                    .client
                    .bucket_url(&[("delete", ""), ("encoding-type", "url")]);
                let body = xml::delete_body(&batch);
                let md5 = content_md5(body.as_bytes());
                let call = Client::xml_call("delete", path, Method::POST, url, body)
                    .header("content-md5", md5);
                self.client.expect(call, &[200]).await.map(drop)
            })
            .buffer_unordered(self.p.max_concurrency)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// Copies `from` (of `size` bytes) to `to` on the server: one `CopyObject` up to the
    /// threshold, else a multipart upload of `UploadPartCopy` ranges.
    async fn copy(&self, path: &StoragePath, from: &str, to: &str, size: u64) -> Result<()> {
        let op = "rename";
        let source = self.client.copy_source(from);
        if size <= self.p.copy_threshold {
            let url = self.client.object_url(to, &[]);
            let call = Call::new(op, path, Method::PUT, url).header("x-oss-copy-source", source);
            return self
                .client
                .expect(self.client.new_object(call), &[200])
                .await
                .map(drop);
        }
        let id = self.initiate(op, path, to).await?;
        let chunk = self.p.copy_chunk;
        let count = size.div_ceil(chunk);
        let parts = futures::stream::iter(0..count)
            .map(|i| {
                let (source, id) = (&source, &id);
                async move {
                    let start = i * chunk;
                    let end = (start + chunk).min(size) - 1;
                    let number = (i + 1).to_string();
                    let url = self
                        .client
                        .object_url(to, &[("partNumber", &number), ("uploadId", id)]);
                    let call = Call::new(op, path, Method::PUT, url)
                        .header("x-oss-copy-source", source.clone())
                        .header("x-oss-copy-source-range", format!("bytes={start}-{end}"));
                    let body = self.client.text(call).await?;
                    let r: xml::CopyPartResult = xml::parse(&body, op, path)?;
                    Ok::<_, StorageError>(Part {
                        part_number: i as u32 + 1,
                        etag: r.etag,
                        size: end + 1 - start,
                    })
                }
            })
            .buffered(self.p.max_concurrency)
            .try_collect::<Vec<Part>>()
            .await;
        let done = match parts {
            Ok(parts) => self.complete(op, path, to, &id, &parts).await,
            Err(e) => Err(e),
        };
        if done.is_err() {
            self.abort(path, to, &id).await;
        }
        done
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
impl StorageDriver for OssDriver {
    fn name(&self) -> &str {
        DRIVER
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        let s = &self.inner;
        let url = s.client.object_url(&s.key(path), &[]);
        let resp = s
            .client
            .expect(Call::new("get_content", path, Method::GET, url), &[200])
            .await?;
        resp.bytes()
            .await
            .map_err(|e| driver_http::transport_error(DRIVER, "get_content", path, e))
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        let s = &self.inner;
        s.put_object("put_content", path, &s.key(path), content)
            .await
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let s = &self.inner;
        let url = s.client.object_url(&s.key(path), &[]);
        let mut call = Call::new("reader", path, Method::GET, url);
        if offset > 0 {
            // "standard": a range past the end is 416, not the whole object with 200.
            call = call
                .header("range", format!("bytes={offset}-"))
                .header("x-oss-range-behavior", "standard");
        }
        let resp = s.client.send(call).await?;
        match resp.status().as_u16() {
            206 => Ok(driver_http::body_stream(DRIVER, "reader", path, resp)),
            200 if offset == 0 => Ok(driver_http::body_stream(DRIVER, "reader", path, resp)),
            200 => Err(StorageError::backend(
                DRIVER,
                "reader",
                path,
                "the server ignored the Range header",
            )),
            416 => {
                // The range starts at or past the end: empty at the end, else an error.
                let (size, _) = s
                    .head("reader", path, &s.key(path))
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
            OssWriter::resume(s, path.clone()).await?
        } else {
            OssWriter::new(s, path.clone())
        };
        Ok(Box::new(w))
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let s = &self.inner;
        let key = s.key(path);
        let object = || s.head("stat", path, &key);
        let first_below = || async {
            let page = Page {
                max: Some(1),
                ..Page::default()
            };
            let list = s
                .list_page("stat", path, &s.keys.dir_prefix(path), page)
                .await?;
            Ok(list.contents.first().map(|o| o.mod_time()))
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
            let names = list.contents.iter().map(|o| &o.key);
            for name in names.chain(list.common_prefixes.iter().map(|p| &p.prefix)) {
                children.push(&xml::url_decoded(name));
            }
            true
        })
        .await?;
        children.finish(DRIVER)
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let (from, to) = (s.key(src), s.key(dst));
        let (size, _) = s
            .head("rename", src, &from)
            .await?
            .ok_or_else(|| StorageError::not_found(DRIVER, src))?;
        if src == dst {
            // Copying onto itself then deleting would lose it.
            return Ok(());
        }
        s.copy(src, &from, &to, size).await?;
        s.delete_object("rename", src, &from).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let prefix = s.keys.dir_prefix(path);
        let mut keys = Vec::new();
        if !path.is_root() {
            let key = s.key(path);
            if s.head("delete", path, &key).await?.is_some() {
                keys.push(key);
            }
        }
        // List everything first, then delete: deleting while paging could skip names.
        s.list_all("delete", path, &prefix, Page::default(), |list| {
            keys.extend(list.contents.iter().map(|o| xml::url_decoded(&o.key)));
            true
        })
        .await?;
        if keys.is_empty() {
            return Err(StorageError::not_found(DRIVER, path));
        }
        s.delete_keys(path, keys).await
    }

    async fn redirect_url(
        &self,
        request: &RedirectRequest,
        path: &StoragePath,
    ) -> Result<Option<String>> {
        let s = &self.inner;
        let method = match request.method {
            RedirectMethod::Head => Method::HEAD,
            _ => Method::GET,
        };
        s.client
            .presign(path, method, &s.key(path), request.lifetime())
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
        let page = Page {
            start: start.as_deref(),
            ..Page::default()
        };
        s.list_all("walk", path, &prefix, page, |list| {
            for o in &list.contents {
                let key = xml::url_decoded(&o.key);
                let rel = key.get(prefix.len()..).unwrap_or("");
                if !walk.push(rel, o.size, o.mod_time()) {
                    return false;
                }
            }
            true
        })
        .await?;
        walk.finish(DRIVER)
    }
}
