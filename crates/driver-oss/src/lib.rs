//! The Aliyun OSS driver, registered as `"oss"`.
//!
//! It speaks OSS's native REST API over `reqwest` (there is no official Rust OSS SDK),
//! signs every request with `reqsign`'s Aliyun OSS signer — V4 (`OSS4-HMAC-SHA256`) by
//! default, V1 where configured (see docs/drivers/oss.md for why) — and stores a path
//! `/a/b` as the object `<rootdirectory>/a/b` in `bucket` (directories are implicit: a
//! key prefix).
//!
//! The driver is [`OssDriver`], the object-store core's
//! [`ObjectStore`](driver_objectstore::ObjectStore) over [`OssBackend`]. The core drives
//! the loops (paging, `stat` of a directory, `list`, `walk`, the streaming tree delete,
//! move as copy then delete); the backend sends one OSS request per step:
//!
//! * `head` is `HeadObject`; `get` a ranged `GetObject`, streamed (416 is past the end);
//!   `put` one `PutObject`;
//! * `copy` is a server-side `CopyObject`, or above `multipartcopythreshold` one
//!   service-side multipart copy (`UploadPartCopy` part by part, `maxconcurrency` at a
//!   time);
//! * `delete` is `DeleteObject` (with a `HeadObject` first when the core asks whether
//!   the object existed: OSS answers 204 either way); `delete_batch` is
//!   `DeleteMultipleObjects`, 1,000 keys per request, `maxconcurrency` requests in
//!   flight;
//! * `list_page` is one `ListObjectsV2` page (`start-after`, continuation token,
//!   `max-keys`, the `/` delimiter);
//! * `redirect_url` is a presigned URL (V4 or V1 like the requests), valid 20 minutes by
//!   default and at most 7 days;
//! * the writer is the core's resumable [`MultipartWriter`] (the protocol is in
//!   [`driver_objectstore::upload`]) over OSS multipart uploads; [`OssBackend`]
//!   implements its [`MultipartBackend`] steps: `InitiateMultipartUpload` at the first
//!   full `chunksize`, `UploadPart` with up to `maxconcurrency` parts in flight,
//!   `CompleteMultipartUpload` on commit (one `PutObject` if no part was ever full),
//!   `AbortMultipartUpload` on cancel, `ListParts` and `ListMultipartUploads` to resume.
//!   `close` parks a tail under 5 MiB in the hidden object `<key>#upload`, so
//!   `writer(path, true)` continues the upload from any instance or process.
//!
//! Errors from OSS carry a typed [`ServiceError`] (code, message, request id) as their
//! source, and name the driver, the operation and the path.
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
mod writer;
mod xml;

#[cfg(test)]
mod signing_vectors;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use driver_api::keys::KeySpace;
use driver_api::{
    register_driver, FileWriter, Parameters, RedirectMethod, RedirectRequest, Result, StorageError,
    StoragePath,
};
use driver_http::RestClient as _;
use driver_objectstore::{
    Cx, Got, ListPage, ListRequest, MultipartBackend, MultipartWriter, ObjectBackend, ObjectMeta,
    OpenUpload, Part,
};
use futures::{StreamExt, TryStreamExt};
use md5::Digest as _;
use reqwest::{Method, Response};

pub use crate::client::ServiceError;
use crate::client::{Call, Client};
use crate::params::OssParams;

/// The registered name.
pub const DRIVER: &str = "oss";

/// Keys per `DeleteMultipleObjects` request (OSS's maximum).
const DELETE_BATCH: usize = 1000;

/// Keys per `ListObjectsV2` page unless the core asks for fewer (OSS's maximum).
const LIST_PAGE: u32 = 1000;

register_driver! {
    name: DRIVER,
    description: "Aliyun Object Storage Service (native API, V4 or V1 signatures, STS tokens)",
    parameters: params::PARAMS,
    create: OssDriver::from_parameters,
}

/// The OSS driver: the object-store core over [`OssBackend`]. Cheap to clone (one shared
/// client); `OssDriver::from_parameters(params)` creates it without a request.
pub type OssDriver = driver_objectstore::ObjectStore<OssBackend>;

/// OSS's requests, one per step of the object-store core (see the crate docs).
pub struct OssBackend {
    client: Client,
    keys: KeySpace,
    p: OssParams,
}

impl std::fmt::Debug for OssBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OssBackend")
            .field("params", &self.p)
            .finish_non_exhaustive()
    }
}

/// The `Content-MD5` header value of `body`.
fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

impl OssBackend {
    /// The backend for parsed parameters. No request is made.
    pub fn new(p: OssParams) -> Result<Self> {
        Ok(Self {
            client: Client::new(&p)?,
            keys: KeySpace::new(&p.root),
            p,
        })
    }

    /// Reads a 404 answer: `Ok` when it means there is no such object (`NoSuchKey`, or a
    /// bodiless 404 of a HEAD), else the error it is (`NoSuchBucket`, ...).
    async fn absent(&self, cx: Cx<'_>, resp: Response) -> Result<()> {
        match self.client.error(cx.op, cx.path, resp).await {
            e if e.is_not_found() => Ok(()),
            e => Err(e),
        }
    }

    /// A multipart upload at `dst` of `UploadPartCopy` ranges of `src`, `maxconcurrency`
    /// parts at a time (aborted if a part or the completion fails).
    async fn copy_parts(&self, cx: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()> {
        let (op, path, size) = (cx.op, cx.path, src.size);
        let source = self.client.copy_source(&src.key);
        let id = self.initiate(cx, dst).await?;
        let chunk = self.p.copy_chunk;
        let parts = futures::stream::iter(0..size.div_ceil(chunk))
            .map(|i| {
                let (source, id) = (&source, &id);
                async move {
                    let start = i * chunk;
                    let end = (start + chunk).min(size) - 1;
                    let number = (i + 1).to_string();
                    let url = self
                        .client
                        .object_url(dst, &[("partNumber", &number), ("uploadId", id)]);
                    let call = Call::new(op, path, Method::PUT, url)
                        .header("x-oss-copy-source", source.clone())
                        .header("x-oss-copy-source-range", format!("bytes={start}-{end}"));
                    let body = self.client.text(call).await?;
                    let r: xml::CopyPartResult = xml::parse(&body, op, path)?;
                    Ok::<_, StorageError>(Part {
                        number: i as u32 + 1,
                        size: end + 1 - start,
                        etag: r.etag,
                    })
                }
            })
            .buffered(self.p.max_concurrency)
            .try_collect::<Vec<Part>>()
            .await;
        let done = match parts {
            Ok(parts) => self.complete(cx, dst, &id, &parts).await,
            Err(e) => Err(e),
        };
        if done.is_err() {
            if let Err(e) = self.abort(cx, dst, &id, &[]).await {
                tracing::warn!(driver = DRIVER, %path, error = %e, "aborting a multipart copy failed");
            }
        }
        done
    }
}

#[async_trait]
impl ObjectBackend for OssBackend {
    const NAME: &'static str = DRIVER;
    /// `ListObjectsV2` takes `start-after`.
    const START_AFTER: bool = true;

    async fn from_parameters(params: Parameters) -> Result<Self> {
        Self::new(OssParams::parse(params)?)
    }

    fn keys(&self) -> &KeySpace {
        &self.keys
    }

    fn delete_batch_size(&self) -> usize {
        DELETE_BATCH
    }

    fn delete_concurrency(&self) -> usize {
        self.p.max_concurrency
    }

    /// `HeadObject`.
    async fn head(&self, cx: Cx<'_>, key: &str) -> Result<Option<ObjectMeta>> {
        let url = self.client.object_url(key, &[]);
        let resp = self
            .client
            .send(Call::new(cx.op, cx.path, Method::HEAD, url))
            .await?;
        match resp.status().as_u16() {
            200 => {
                let size = Client::header(&resp, "content-length")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| {
                        StorageError::backend(DRIVER, cx.op, cx.path, "HEAD without Content-Length")
                    })?;
                let time = Client::header(&resp, "last-modified")
                    .and_then(|v| httpdate::parse_http_date(v).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Ok(Some(ObjectMeta::new(key, size, time)))
            }
            404 => self.absent(cx, resp).await.map(|()| None),
            _ => Err(self.client.error(cx.op, cx.path, resp).await),
        }
    }

    /// `GetObject`, ranged from `offset` with `x-oss-range-behavior: standard` (so a
    /// start past the end is 416, not the whole object with 200).
    async fn get(&self, cx: Cx<'_>, key: &str, offset: u64, version: Option<&str>) -> Result<Got> {
        let url = self.client.object_url(key, &[]);
        let mut call = Call::new(cx.op, cx.path, Method::GET, url);
        if offset > 0 {
            call = call
                .header("range", format!("bytes={offset}-"))
                .header("x-oss-range-behavior", "standard");
        }
        if let Some(v) = version {
            call = call.header("if-match", v);
        }
        let resp = self.client.send(call).await?;
        let body = |resp| driver_http::object_body(DRIVER, cx.op, cx.path, resp, "etag");
        match resp.status().as_u16() {
            206 => Ok(Got::Stream(body(resp))),
            200 if offset == 0 => Ok(Got::Stream(body(resp))),
            200 => Err(StorageError::backend(
                DRIVER,
                cx.op,
                cx.path,
                "the server ignored the Range header",
            )),
            416 => Ok(Got::PastEnd),
            412 => Ok(Got::Changed),
            404 => self.absent(cx, resp).await.map(|()| Got::NotFound),
            _ => Err(self.client.error(cx.op, cx.path, resp).await),
        }
    }

    /// `PutObject`.
    async fn put(&self, cx: Cx<'_>, key: &str, data: Bytes) -> Result<()> {
        let url = self.client.object_url(key, &[]);
        let call = Call::new(cx.op, cx.path, Method::PUT, url)
            .header("content-type", "application/octet-stream")
            .body(data);
        self.client
            .expect(self.client.new_object(call), &[200])
            .await
            .map(drop)
    }

    /// `CopyObject` up to `multipartcopythreshold`, else one multipart upload of
    /// `UploadPartCopy` ranges: either way the bytes stay on the service.
    async fn copy(&self, cx: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()> {
        if src.size > self.p.copy_threshold {
            return self.copy_parts(cx, src, dst).await;
        }
        let url = self.client.object_url(dst, &[]);
        let call = Call::new(cx.op, cx.path, Method::PUT, url)
            .header("x-oss-copy-source", self.client.copy_source(&src.key));
        self.client
            .expect(self.client.new_object(call), &[200])
            .await
            .map(drop)
    }

    /// `DeleteObject`. OSS answers 204 whether or not the key existed, so `report` asks
    /// with a `HeadObject` first.
    async fn list_uploads(&self, cx: Cx<'_>, prefix: &str) -> Result<Vec<OpenUpload>> {
        self.uploads_under(cx, prefix).await
    }

    async fn abort_upload(&self, cx: Cx<'_>, key: &str, upload: &str) -> Result<()> {
        // A 404 (gone already) is fine there.
        MultipartBackend::abort(self, cx, key, upload, &[]).await
    }

    async fn delete(&self, cx: Cx<'_>, key: &str, report: bool) -> Result<bool> {
        if report && self.head(cx, key).await?.is_none() {
            return Ok(false);
        }
        let url = self.client.object_url(key, &[]);
        self.client
            .expect(
                Call::new(cx.op, cx.path, Method::DELETE, url),
                &[200, 204, 404],
            )
            .await
            .map(|_| true)
    }

    /// One `DeleteMultipleObjects` (quiet, with the `Content-MD5` OSS requires).
    async fn delete_batch(&self, cx: Cx<'_>, objects: &[ObjectMeta]) -> Result<()> {
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        let url = self
            .client
            .bucket_url(&[("delete", ""), ("encoding-type", "url")]);
        let body = xml::delete_body(&keys);
        let md5 = content_md5(body.as_bytes());
        let call =
            Client::xml_call(cx.op, cx.path, Method::POST, url, body).header("content-md5", md5);
        self.client.expect(call, &[200]).await.map(drop)
    }

    /// One `ListObjectsV2` page, with `encoding-type=url` (decoded here) so that any key
    /// survives XML.
    async fn list_page(&self, cx: Cx<'_>, req: &ListRequest<'_>) -> Result<ListPage> {
        let max = req.max.unwrap_or(LIST_PAGE).to_string();
        let mut q: Vec<(&str, &str)> = vec![
            ("list-type", "2"),
            ("prefix", req.prefix),
            ("max-keys", &max),
            ("encoding-type", "url"),
        ];
        if req.delimiter {
            q.push(("delimiter", "/"));
        }
        match (req.token, req.start_after) {
            (Some(t), _) => q.push(("continuation-token", t)),
            (None, Some(s)) => q.push(("start-after", s)),
            (None, None) => {}
        }
        let url = self.client.bucket_url(&q);
        let body = self
            .client
            .text(Call::new(cx.op, cx.path, Method::GET, url))
            .await?;
        let list: xml::ListBucketResult = xml::parse(&body, cx.op, cx.path)?;
        let next = list.next();
        let objects = list
            .contents
            .into_iter()
            .map(|o| {
                let time = o.mod_time();
                ObjectMeta::new(xml::url_decoded(&o.key), o.size, time)
            })
            .collect();
        let prefixes = list
            .common_prefixes
            .iter()
            .map(|p| xml::url_decoded(&p.prefix))
            .collect();
        Ok(ListPage {
            objects,
            prefixes,
            next,
        })
    }

    /// A presigned `GET` or `HEAD` URL.
    async fn redirect_url(
        &self,
        cx: Cx<'_>,
        request: &RedirectRequest,
        key: &str,
    ) -> Result<Option<String>> {
        let method = match request.method {
            RedirectMethod::Head => Method::HEAD,
            _ => Method::GET,
        };
        self.client
            .presign(cx.path, method, key, request.lifetime())
            .await
            .map(Some)
    }

    async fn writer(
        this: Arc<Self>,
        path: &StoragePath,
        key: String,
        append: bool,
    ) -> Result<Box<dyn FileWriter>> {
        MultipartWriter::open(this, path, key, append).await
    }
}
