//! The `s3` storage driver: Amazon S3 and S3-compatible services, on `aws-sdk-s3`.
//!
//! Registered with the factory as `"s3"`, with Distribution's s3 driver's parameters (see
//! [`params::PARAMS`] and docs/drivers/s3.md). [`S3Driver`] is the object-store core's
//! generic driver ([`driver_objectstore::ObjectStore`]) over [`S3Backend`], which sends
//! one S3 request per step; the core drives the loops (paging, stat by a one-key listing,
//! the walk over one flat listing, the streaming tree delete, move as copy then delete).
//! How the steps map onto S3:
//!
//! * a path `/a/b` is the key `<rootdirectory>/a/b`; directories are implicit (key
//!   prefixes), as in Distribution;
//! * head is `HeadObject`; a read is a ranged `GetObject`, streamed; a put is `PutObject`;
//! * a listing page is `ListObjectsV2` (with `StartAfter`, so a tree delete continues
//!   after the last key it deleted); a batch delete is `DeleteObjects`, 1,000 keys a
//!   request;
//! * copy is `CopyObject`, or concurrent `UploadPartCopy` at or above
//!   `multipartcopythresholdsize`;
//! * writers buffer one `chunksize` and upload it as a multipart part; an upload that never
//!   reaches a chunk commits with one `PutObject`. `close` uploads what it can as a part and
//!   parks the rest (< 5 MiB, S3's minimum part) in a hidden `<key>#upload` object naming
//!   the upload, so `writer(path, true)`, from any instance or process, finds the upload
//!   (that object, else `ListMultipartUploads`), lists its parts (`ListParts`) and
//!   continues with the right size;
//! * `redirect_url` presigns `GetObject`/`HeadObject` (20 minutes by default, at most 7
//!   days), for `redirectendpoint` when set.
//!
//! Names that the path grammar cannot express (such as `#upload` objects, or keys written
//! by other tools) are invisible to `list` and `walk`.

mod client;
mod idle;
pub mod params;
mod writer;

use driver_api::Operation;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use driver_api::keys::KeySpace;
use driver_api::{
    register_driver, ByteStream, FileWriter, Parameters, RedirectMethod, RedirectRequest, Result,
    StorageError, StoragePath,
};
use driver_objectstore::{
    Body, Cx, Got, ListPage, ListRequest, MultipartBackend, MultipartWriter, ObjectBackend,
    ObjectMeta, ObjectStore, OpenUpload, Part, Retry,
};
use futures::{StreamExt, TryStreamExt};

use crate::client::map_err;
use crate::params::S3Params;

/// The registered name.
pub const DRIVER: &str = "s3";

/// Keys per `DeleteObjects` request (S3's maximum).
const DELETE_BATCH: usize = 1000;

/// The S3 driver: the object-store core over [`S3Backend`]. Cheap to clone.
pub type S3Driver = ObjectStore<S3Backend>;

register_driver! {
    name: DRIVER,
    description: "Amazon S3 and S3-compatible object stores (aws-sdk-s3)",
    parameters: params::PARAMS,
    create: S3Driver::from_parameters,
}

/// Applies the settings every new object gets (content type, storage class, ACL,
/// encryption) to a PutObject, CreateMultipartUpload or CopyObject builder; `$s` is the
/// [`S3Backend`].
macro_rules! new_object {
    ($builder:expr, $s:expr) => {
        $builder
            .content_type("application/octet-stream")
            .set_storage_class($s.storage_class())
            .set_acl($s.acl())
            .set_server_side_encryption($s.sse())
            .set_ssekms_key_id($s.kms_key())
    };
}
pub(crate) use new_object;

/// S3's requests, one per step of the object-store core (see the crate docs).
pub struct S3Backend {
    client: Client,
    /// Signs redirect URLs for `redirectendpoint` (same client when unset).
    presign_client: Client,
    keys: KeySpace,
    p: S3Params,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Driver")
            .field("params", &self.p)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    /// The backend for parsed parameters.
    pub async fn new(p: S3Params) -> Result<Self> {
        let client = client::build(&p, p.region_endpoint.as_deref()).await?;
        let presign_client = match &p.redirect_endpoint {
            Some(e) => client::build(&p, Some(e)).await?,
            None => client.clone(),
        };
        Ok(Self {
            client,
            presign_client,
            keys: KeySpace::new(&p.root),
            p,
        })
    }

    /// The retry policy of the calls that opt out of the SDK's retries (`client::long_call`).
    fn retry(&self) -> Retry {
        Retry::from(&self.p.network)
    }

    fn bucket(&self) -> &str {
        &self.p.bucket
    }

    /// `x-amz-copy-source` for `key`: bucket and URL-encoded key.
    fn copy_source(&self, key: &str) -> String {
        let mut s = String::with_capacity(self.bucket().len() + key.len() + 1);
        s.push_str(self.bucket());
        s.push('/');
        for b in key.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
                s.push(b as char);
            } else {
                s.push_str(&format!("%{b:02X}"));
            }
        }
        s
    }

    fn storage_class(&self) -> Option<aws_sdk_s3::types::StorageClass> {
        self.p.storage_class.as_deref().map(Into::into)
    }
    fn acl(&self) -> Option<aws_sdk_s3::types::ObjectCannedAcl> {
        self.p.acl.as_deref().map(Into::into)
    }
    fn sse(&self) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
        use aws_sdk_s3::types::ServerSideEncryption as Sse;
        match (self.p.encrypt, &self.p.key_id) {
            (false, _) => None,
            (true, None) => Some(Sse::Aes256),
            (true, Some(_)) => Some(Sse::AwsKms),
        }
    }
    fn kms_key(&self) -> Option<String> {
        if self.p.encrypt {
            self.p.key_id.clone()
        } else {
            None
        }
    }

    /// A server-side copy in parts: one multipart upload of concurrent `UploadPartCopy`
    /// ranges of `multipartcopychunksize`, aborted if any part fails.
    async fn multipart_copy(&self, cx: Cx<'_>, src: &ObjectMeta, dst_key: &str) -> Result<()> {
        let source = self.copy_source(&src.key);
        let upload = self.initiate(cx, dst_key).await?;
        let (size, chunk) = (src.size, self.p.copy_chunk_size);
        let parts: Result<Vec<Part>> = futures::stream::iter(0..size.div_ceil(chunk))
            .map(|i| {
                let (source, upload) = (&source, &upload);
                async move {
                    let start = i * chunk;
                    let end = (start + chunk).min(size) - 1;
                    let number = i as u32 + 1;
                    let out = self
                        .retry()
                        .run(|| async {
                            self.client
                                .upload_part_copy()
                                .bucket(self.bucket())
                                .key(dst_key)
                                .upload_id(upload)
                                .part_number(number as i32)
                                .copy_source(source)
                                .copy_source_range(format!("bytes={start}-{end}"))
                                .customize()
                                .config_override(client::long_call(&self.p))
                                .send()
                                .await
                                .map_err(|e| map_err(cx.op, cx.path, e))
                        })
                        .await?;
                    let etag = out.copy_part_result().and_then(|r| r.e_tag());
                    Ok(Part {
                        number,
                        size: end + 1 - start,
                        etag: etag.unwrap_or_default().to_owned(),
                    })
                }
            })
            .buffer_unordered(self.p.copy_max_concurrency)
            .try_collect()
            .await;
        let done = match parts {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.number);
                self.complete(cx, dst_key, &upload, &parts).await
            }
            Err(e) => Err(e),
        };
        if done.is_err() {
            if let Err(e) = self.abort(cx, dst_key, &upload, &[]).await {
                tracing::warn!(path = %cx.path, error = %e, "aborting a multipart copy failed");
            }
        }
        done
    }
}

/// The SDK's body as the driver API's stream; a failure mid-body is retryable (the core
/// resumes the read) and keeps its cause in the message.
fn body_stream(op: Operation, path: &StoragePath, body: SdkStream) -> ByteStream {
    let path = path.clone();
    futures::stream::unfold(Some(body), move |state| {
        let path = path.clone();
        async move {
            let mut body = state?;
            match body.next().await {
                None => None,
                Some(Ok(b)) => Some((Ok(b), Some(body))),
                Some(Err(e)) => {
                    let text = format!("response body failed: {}", driver_api::error_chain(&e));
                    let e = StorageError::backend(DRIVER, op, &path, text).with_retryable(true);
                    Some((Err(e), None))
                }
            }
        }
    })
    .boxed()
}

fn mod_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[async_trait]
impl ObjectBackend for S3Backend {
    const NAME: &'static str = DRIVER;
    const START_AFTER: bool = true;

    async fn from_parameters(params: Parameters) -> Result<Self> {
        Self::new(S3Params::parse(params)?).await
    }

    fn keys(&self) -> &KeySpace {
        &self.keys
    }

    fn delete_batch_size(&self) -> usize {
        DELETE_BATCH
    }

    async fn head(&self, cx: Cx<'_>, key: &str) -> Result<Option<ObjectMeta>> {
        match self
            .client
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(ObjectMeta::new(
                key,
                o.content_length().unwrap_or(0).max(0) as u64,
                mod_time(o.last_modified()),
            ))),
            Err(e) => match map_err(cx.op, cx.path, e) {
                StorageError::PathNotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Ranged `GetObject`; a pinned read sends `If-Match` with the ETag.
    async fn get(&self, cx: Cx<'_>, key: &str, offset: u64, version: Option<&str>) -> Result<Got> {
        let req = self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .set_if_match(version.map(str::to_owned));
        let req = if offset > 0 {
            req.range(format!("bytes={offset}-"))
        } else {
            req
        };
        match req.send().await {
            Ok(out) => {
                let len = out.content_length().and_then(|n| u64::try_from(n).ok());
                let version = out.e_tag().map(str::to_owned);
                let stream = body_stream(cx.op, cx.path, out.body);
                Ok(Got::Stream(Body::new(stream).version(version).len(len)))
            }
            Err(e) => {
                let (code, status) = client::classify(&e);
                if status == Some(416) || code.as_deref() == Some("InvalidRange") {
                    return Ok(Got::PastEnd);
                }
                if status == Some(412) || code.as_deref() == Some("PreconditionFailed") {
                    return Ok(Got::Changed);
                }
                match map_err(cx.op, cx.path, e) {
                    StorageError::PathNotFound { .. } => Ok(Got::NotFound),
                    other => Err(other),
                }
            }
        }
    }

    async fn put(&self, cx: Cx<'_>, key: &str, data: Bytes) -> Result<()> {
        self.retry()
            .run(|| async {
                new_object!(
                    self.client.put_object().bucket(self.bucket()).key(key),
                    self
                )
                .body(SdkStream::from(data.clone()))
                .customize()
                .config_override(client::long_call(&self.p))
                .send()
                .await
                .map_err(|e| map_err(cx.op, cx.path, e))
            })
            .await?;
        Ok(())
    }

    async fn copy(&self, cx: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()> {
        if src.size >= self.p.copy_threshold && src.size > 0 {
            return self.multipart_copy(cx, src, dst).await;
        }
        self.retry()
            .run(|| async {
                new_object!(
                    self.client
                        .copy_object()
                        .bucket(self.bucket())
                        .key(dst)
                        .copy_source(self.copy_source(&src.key)),
                    self
                )
                .customize()
                .config_override(client::long_call(&self.p))
                .send()
                .await
                .map_err(|e| map_err(cx.op, cx.path, e))
            })
            .await?;
        Ok(())
    }

    async fn list_uploads(&self, cx: Cx<'_>, prefix: &str) -> Result<Vec<OpenUpload>> {
        self.uploads_under(cx, prefix).await
    }

    async fn abort_upload(&self, cx: Cx<'_>, key: &str, upload: &str) -> Result<()> {
        match MultipartBackend::abort(self, cx, key, upload, &[]).await {
            // Gone already (completed, aborted, expired).
            Err(StorageError::PathNotFound { .. }) => Ok(()),
            other => other,
        }
    }

    async fn delete(&self, cx: Cx<'_>, key: &str, report: bool) -> Result<bool> {
        // DeleteObject answers 204 whether or not the key existed: a HEAD tells.
        if report && self.head(cx, key).await?.is_none() {
            return Ok(false);
        }
        match self
            .client
            .delete_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match map_err(cx.op, cx.path, e) {
                StorageError::PathNotFound { .. } => Ok(false),
                other if !report && other.is_retryable() && cx.op == Operation::Delete => {
                    // After its subtree: servers that store keys as files (s3s-fs) answer
                    // a server error for the emptied "directory" key itself; on S3 this
                    // is only reached after the SDK's retries.
                    tracing::warn!(path = %cx.path, error = %other, "deleting the key after its subtree failed");
                    Ok(true)
                }
                other => Err(other),
            },
        }
    }

    async fn delete_batch(&self, cx: Cx<'_>, objects: &[ObjectMeta]) -> Result<()> {
        let fail = |e| StorageError::backend(DRIVER, cx.op, cx.path, e);
        let ids = objects
            .iter()
            .map(|o| ObjectIdentifier::builder().key(&o.key).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(fail)?;
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(fail)?;
        let out = self
            .client
            .delete_objects()
            .bucket(self.bucket())
            .delete(delete)
            .send()
            .await
            .map_err(|e| map_err(cx.op, cx.path, e))?;
        if let Some(first) = out.errors().first() {
            return Err(StorageError::backend(
                DRIVER,
                cx.op,
                cx.path,
                format!(
                    "{} of the keys were not deleted, e.g. {}: {} {}",
                    out.errors().len(),
                    first.key().unwrap_or("?"),
                    first.code().unwrap_or("?"),
                    first.message().unwrap_or("")
                ),
            )
            .with_retryable(true));
        }
        Ok(())
    }

    async fn list_page(&self, cx: Cx<'_>, req: &ListRequest<'_>) -> Result<ListPage> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(req.prefix)
            .set_delimiter(req.delimiter.then(|| "/".to_owned()))
            .set_continuation_token(req.token.map(str::to_owned))
            .set_start_after(req.start_after.map(str::to_owned))
            .set_max_keys(req.max.map(|m| m.min(i32::MAX as u32) as i32))
            .send()
            .await
            .map_err(|e| map_err(cx.op, cx.path, e))?;
        let next = match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => Some(t.to_owned()),
            _ => None,
        };
        Ok(ListPage {
            objects: out
                .contents()
                .iter()
                .map(|o| {
                    ObjectMeta::new(
                        o.key().unwrap_or_default(),
                        o.size().unwrap_or(0).max(0) as u64,
                        mod_time(o.last_modified()),
                    )
                })
                .collect(),
            prefixes: out
                .common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned))
                .collect(),
            next,
        })
    }

    async fn redirect_url(
        &self,
        cx: Cx<'_>,
        request: &RedirectRequest,
        key: &str,
    ) -> Result<Option<String>> {
        let config = PresigningConfig::expires_in(request.lifetime())
            .map_err(|e| StorageError::backend(DRIVER, cx.op, cx.path, e))?;
        let presigned = match request.method {
            RedirectMethod::Get => self
                .presign_client
                .get_object()
                .bucket(self.bucket())
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| map_err(cx.op, cx.path, e))?,
            RedirectMethod::Head => self
                .presign_client
                .head_object()
                .bucket(self.bucket())
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| map_err(cx.op, cx.path, e))?,
        };
        Ok(Some(presigned.uri().to_owned()))
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
