//! The `s3` storage driver: Amazon S3 and S3-compatible services, on `aws-sdk-s3`.
//!
//! Registered with the factory as `"s3"`, with Distribution's s3 driver's parameters (see
//! [`params::PARAMS`] and docs/drivers/s3.md). How the contract maps onto S3:
//!
//! * a path `/a/b` is the key `<rootdirectory>/a/b`; directories are implicit (key
//!   prefixes), as in Distribution;
//! * `reader` is a ranged `GetObject`, streamed; `stat` is `HeadObject`, falling back to a
//!   one-key listing for directories;
//! * writers buffer one `chunksize` and upload it as a multipart part; an upload that never
//!   reaches a chunk commits with one `PutObject`. `close` uploads what it can as a part and
//!   parks the rest (< 5 MiB, S3's minimum part) in a hidden `<key>#upload` object naming
//!   the upload, so `writer(path, true)`, from any instance or process, finds the upload
//!   (that object, else `ListMultipartUploads`), lists its parts (`ListParts`) and
//!   continues with the right size;
//! * `rename` is `CopyObject`, or concurrent `UploadPartCopy` above
//!   `multipartcopythresholdsize`, then `DeleteObject`; `delete` lists the subtree and
//!   removes it with `DeleteObjects`, 1,000 keys a request;
//! * `walk` is one flat `ListObjectsV2` listing, reordered into the walk's component order
//!   and with directories synthesised ([`driver_api::walk::flat`]); `list` uses the delimiter;
//! * `redirect_url` presigns `GetObject`/`HeadObject` (20 minutes by default, at most 7
//!   days), for `redirectendpoint` when set.
//!
//! Names that the path grammar cannot express (such as `#upload` objects, or keys written
//! by other tools) are invisible to `list` and `walk`.

mod client;
pub mod params;
mod writer;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use driver_api::keys::Children;
use driver_api::{
    register_driver, ByteStream, Capabilities, FileInfo, FileWriter, Parameters, RedirectMethod,
    RedirectRequest, Result, StorageDriver, StorageError, StoragePath, WalkFn, WalkOptions,
};
use futures::StreamExt;

use crate::client::map_err;
use crate::params::S3Params;

/// The registered name.
pub const DRIVER: &str = "s3";

static LIST_REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `ListObjectsV2` requests this process has sent so far, all drivers together (a metric,
/// and how the tests prove that a walk is one listing pass).
pub fn list_requests() -> u64 {
    LIST_REQUESTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Keys per `DeleteObjects` request (S3's maximum).
const DELETE_BATCH: usize = 1000;

register_driver! {
    name: DRIVER,
    description: "Amazon S3 and S3-compatible object stores (aws-sdk-s3)",
    parameters: params::PARAMS,
    create: S3Driver::from_parameters,
}

/// Applies the settings every new object gets (content type, storage class, ACL,
/// encryption) to a PutObject, CreateMultipartUpload or CopyObject builder; `$s` is the
/// driver's `Inner`.
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

/// The continuation token of a truncated listing page, `None` on the last page.
fn next_token(
    page: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output,
) -> Option<String> {
    match page.next_continuation_token() {
        Some(t) if page.is_truncated() == Some(true) => Some(t.to_owned()),
        _ => None,
    }
}

/// The S3 driver. Cheap to clone (one shared client).
#[derive(Clone)]
pub struct S3Driver {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    client: Client,
    /// Signs redirect URLs for `redirectendpoint` (same client when unset).
    presign_client: Client,
    keys: driver_api::keys::KeySpace,
    p: S3Params,
}

impl std::fmt::Debug for S3Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Driver")
            .field("params", &self.inner.p)
            .finish_non_exhaustive()
    }
}

impl S3Driver {
    /// Creates the driver from factory parameters.
    pub async fn from_parameters(params: Parameters) -> Result<Self> {
        Self::new(S3Params::parse(params)?).await
    }

    /// Creates the driver from parsed parameters.
    pub async fn new(p: S3Params) -> Result<Self> {
        let client = client::build(&p, p.region_endpoint.as_deref()).await?;
        let presign_client = match &p.redirect_endpoint {
            Some(e) => client::build(&p, Some(e)).await?,
            None => client.clone(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                presign_client,
                keys: driver_api::keys::KeySpace::new(&p.root),
                p,
            }),
        })
    }
}

impl Inner {
    fn bucket(&self) -> &str {
        &self.p.bucket
    }

    /// The object key of `path`.
    pub(crate) fn key(&self, path: &StoragePath) -> String {
        self.keys.key(path)
    }

    /// The key prefix of everything below `path`.
    fn dir_prefix(&self, path: &StoragePath) -> String {
        self.keys.dir_prefix(path)
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

    async fn head(&self, path: &StoragePath) -> Result<Option<(u64, SystemTime)>> {
        match self
            .client
            .head_object()
            .bucket(self.bucket())
            .key(self.key(path))
            .send()
            .await
        {
            Ok(o) => Ok(Some((
                o.content_length().unwrap_or(0).max(0) as u64,
                o.last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            ))),
            Err(e) => match map_err("stat", path, e) {
                StorageError::PathNotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn put_object(&self, path: &StoragePath, key: &str, body: Bytes) -> Result<()> {
        new_object!(
            self.client.put_object().bucket(self.bucket()).key(key),
            self
        )
        .body(SdkStream::from(body))
        .send()
        .await
        .map_err(|e| map_err("put", path, e))?;
        Ok(())
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

    /// Deletes `keys` (at most 1,000) in one request.
    async fn delete_batch(&self, path: &StoragePath, keys: Vec<String>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let objects = keys
            .into_iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| StorageError::backend(DRIVER, "delete", path, e))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| StorageError::backend(DRIVER, "delete", path, e))?;
        let out = self
            .client
            .delete_objects()
            .bucket(self.bucket())
            .delete(delete)
            .send()
            .await
            .map_err(|e| map_err("delete", path, e))?;
        if let Some(first) = out.errors().first() {
            return Err(StorageError::backend(
                DRIVER,
                "delete",
                path,
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

    /// One page of a `ListObjectsV2` listing.
    async fn list_page(
        &self,
        path: &StoragePath,
        prefix: &str,
        delimiter: bool,
        token: Option<String>,
        start_after: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output> {
        LIST_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.client
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(prefix)
            .set_delimiter(delimiter.then(|| "/".to_owned()))
            .set_continuation_token(token)
            .set_start_after(start_after)
            .set_max_keys(max_keys)
            .send()
            .await
            .map_err(|e| map_err("list", path, e))
    }

    async fn multipart_copy(&self, src: &StoragePath, dst: &StoragePath, size: u64) -> Result<()> {
        let dst_key = self.key(dst);
        let source = self.copy_source(&self.key(src));
        let upload = new_object!(
            self.client
                .create_multipart_upload()
                .bucket(self.bucket())
                .key(&dst_key),
            self
        )
        .send()
        .await
        .map_err(|e| map_err("rename", dst, e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();
        let chunk = self.p.copy_chunk_size;
        let ranges: Vec<(i32, u64, u64)> = (0..size.div_ceil(chunk))
            .map(|i| {
                let start = i * chunk;
                let end = (start + chunk).min(size) - 1;
                (i as i32 + 1, start, end)
            })
            .collect();
        let parts: Vec<Result<aws_sdk_s3::types::CompletedPart>> = futures::stream::iter(ranges)
            .map(|(n, start, end)| {
                let (source, dst_key, upload_id) = (&source, &dst_key, &upload_id);
                async move {
                    let out = self
                        .client
                        .upload_part_copy()
                        .bucket(self.bucket())
                        .key(dst_key)
                        .upload_id(upload_id)
                        .part_number(n)
                        .copy_source(source)
                        .copy_source_range(format!("bytes={start}-{end}"))
                        .send()
                        .await
                        .map_err(|e| map_err("rename", src, e))?;
                    let etag = out
                        .copy_part_result()
                        .and_then(|r| r.e_tag())
                        .unwrap_or_default()
                        .to_owned();
                    Ok(aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(n)
                        .e_tag(etag)
                        .build())
                }
            })
            .buffer_unordered(self.p.copy_max_concurrency)
            .collect()
            .await;
        let mut done = Vec::with_capacity(parts.len());
        let mut failure = None;
        for p in parts {
            match p {
                Ok(p) => done.push(p),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            self.abort(dst, &dst_key, &upload_id).await;
            return Err(e);
        }
        done.sort_by_key(|p| p.part_number());
        let res = self
            .client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(&dst_key)
            .upload_id(&upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = res {
            self.abort(dst, &dst_key, &upload_id).await;
            return Err(map_err("rename", dst, e));
        }
        Ok(())
    }

    /// Aborts a multipart upload, logging (not returning) a failure: used on error paths.
    pub(crate) async fn abort(&self, path: &StoragePath, key: &str, upload_id: &str) {
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            tracing::warn!(path = %path, error = %map_err("abort", path, e), "aborting a multipart upload failed");
        }
    }
}

fn body_stream(path: &StoragePath, body: SdkStream) -> ByteStream {
    let path = path.clone();
    futures::stream::unfold(Some(body), move |state| {
        let path = path.clone();
        async move {
            let mut body = state?;
            match body.next().await {
                None => None,
                Some(Ok(b)) => Some((Ok(b), Some(body))),
                Some(Err(e)) => Some((
                    Err(StorageError::backend(DRIVER, "read", &path, e).with_retryable(true)),
                    None,
                )),
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
impl StorageDriver for S3Driver {
    fn name(&self) -> &str {
        DRIVER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        let s = &self.inner;
        let out = s
            .client
            .get_object()
            .bucket(s.bucket())
            .key(s.key(path))
            .send()
            .await
            .map_err(|e| map_err("get", path, e))?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| StorageError::backend(DRIVER, "get", path, e).with_retryable(true))?;
        Ok(data.into_bytes())
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        let s = &self.inner;
        s.put_object(path, &s.key(path), content).await
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let s = &self.inner;
        let req = s.client.get_object().bucket(s.bucket()).key(s.key(path));
        let req = if offset > 0 {
            req.range(format!("bytes={offset}-"))
        } else {
            req
        };
        match req.send().await {
            Ok(out) => Ok(body_stream(path, out.body)),
            Err(e) => {
                let (code, status) = client::classify(&e);
                if status == Some(416) || code.as_deref() == Some("InvalidRange") {
                    // Past the end: an empty stream exactly at the end, an error beyond it.
                    let (size, _) = s
                        .head(path)
                        .await?
                        .ok_or_else(|| StorageError::not_found(DRIVER, path))?;
                    if offset == size {
                        return Ok(futures::stream::empty().boxed());
                    }
                    return Err(StorageError::invalid_offset(DRIVER, path, offset, size));
                }
                Err(map_err("read", path, e))
            }
        }
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>> {
        let w = if append {
            writer::S3Writer::resume(self.inner.clone(), path.clone()).await?
        } else {
            writer::S3Writer::new(self.inner.clone(), path.clone())
        };
        Ok(Box::new(w))
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let s = &self.inner;
        let first_below = || async {
            let page = s
                .list_page(path, &s.dir_prefix(path), false, None, None, Some(1))
                .await?;
            Ok(page.contents().first().map(|o| mod_time(o.last_modified())))
        };
        driver_api::keys::stat(DRIVER, path, || s.head(path), first_below).await
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        let s = &self.inner;
        let prefix = s.dir_prefix(path);
        let mut children = Children::new(path, &prefix);
        let mut token = None;
        loop {
            let page = s
                .list_page(path, &prefix, true, token.take(), None, None)
                .await?;
            for o in page.contents() {
                children.push(o.key().unwrap_or_default());
            }
            for cp in page.common_prefixes() {
                children.push(cp.prefix().unwrap_or_default());
            }
            token = next_token(&page);
            if token.is_none() {
                break;
            }
        }
        children.finish(DRIVER)
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let (size, _) = s
            .head(src)
            .await?
            .ok_or_else(|| StorageError::not_found(DRIVER, src))?;
        if src == dst {
            return Ok(());
        }
        if size >= s.p.copy_threshold && size > 0 {
            s.multipart_copy(src, dst, size).await?;
        } else {
            new_object!(
                s.client
                    .copy_object()
                    .bucket(s.bucket())
                    .key(s.key(dst))
                    .copy_source(s.copy_source(&s.key(src))),
                s
            )
            .send()
            .await
            .map_err(|e| map_err("rename", src, e))?;
        }
        s.client
            .delete_object()
            .bucket(s.bucket())
            .key(s.key(src))
            .send()
            .await
            .map_err(|e| map_err("rename", src, e))?;
        Ok(())
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let prefix = s.dir_prefix(path);
        let mut deleted = 0usize;
        let mut token = None;
        // The subtree: one listing, deleted a page (up to 1,000 keys) at a time.
        loop {
            let page = s
                .list_page(path, &prefix, false, token.take(), None, None)
                .await?;
            let keys: Vec<String> = page
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect();
            for batch in keys.chunks(DELETE_BATCH) {
                deleted += batch.len();
                s.delete_batch(path, batch.to_vec()).await?;
            }
            token = next_token(&page);
            if token.is_none() {
                break;
            }
        }
        // The object itself (never its siblings sharing the name as a prefix). After a
        // subtree, one quiet DeleteObject-if-present suffices; alone, a missing object
        // must be reported, which needs a HEAD.
        let exists = deleted > 0 || s.head(path).await?.is_some();
        if exists {
            match s
                .client
                .delete_object()
                .bucket(s.bucket())
                .key(s.key(path))
                .send()
                .await
            {
                Ok(_) => deleted += 1,
                Err(e) => match map_err("delete", path, e) {
                    StorageError::PathNotFound { .. } => {}
                    other if deleted > 0 && other.is_retryable() => {
                        // The subtree is gone. Servers that store keys as files (s3s-fs)
                        // answer a server error for the emptied "directory" key itself;
                        // on S3 this is only reached after the SDK's retries.
                        tracing::warn!(path = %path, error = %other, "deleting the key after its subtree failed");
                    }
                    other => return Err(other),
                },
            }
        }
        if deleted == 0 {
            return Err(StorageError::not_found(DRIVER, path));
        }
        Ok(())
    }

    async fn redirect_url(
        &self,
        request: &RedirectRequest,
        path: &StoragePath,
    ) -> Result<Option<String>> {
        let s = &self.inner;
        let expiry = request.lifetime();
        let config = PresigningConfig::expires_in(expiry)
            .map_err(|e| StorageError::backend(DRIVER, "redirect_url", path, e))?;
        let key = s.key(path);
        let presigned = match request.method {
            RedirectMethod::Get => s
                .presign_client
                .get_object()
                .bucket(s.bucket())
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| map_err("redirect_url", path, e))?,
            RedirectMethod::Head => s
                .presign_client
                .head_object()
                .bucket(s.bucket())
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| map_err("redirect_url", path, e))?,
        };
        Ok(Some(presigned.uri().to_owned()))
    }

    async fn walk(
        &self,
        path: &StoragePath,
        options: &WalkOptions,
        f: &mut WalkFn<'_>,
    ) -> Result<()> {
        walk::flat_walk(&self.inner, path, options, f).await
    }
}

mod walk {
    //! One flat listing per walk (see [`driver_api::walk::flat`]).

    use super::*;
    use driver_api::walk::flat::FlatWalk;

    pub(super) async fn flat_walk(
        s: &Inner,
        root: &StoragePath,
        options: &WalkOptions,
        f: &mut WalkFn<'_>,
    ) -> Result<()> {
        let prefix = s.dir_prefix(root);
        let mut walk = FlatWalk::new(root, options, f);
        let mut token = None;
        let mut start = walk.start_after().map(|rel| format!("{prefix}{rel}"));
        'pages: loop {
            let page = s
                .list_page(root, &prefix, false, token.take(), start.take(), None)
                .await?;
            for o in page.contents() {
                let key = o.key().unwrap_or_default();
                let rel = key.get(prefix.len()..).unwrap_or("");
                let size = o.size().unwrap_or(0).max(0) as u64;
                if !walk.push(rel, size, mod_time(o.last_modified())) {
                    break 'pages;
                }
            }
            token = next_token(&page);
            if token.is_none() {
                break;
            }
        }
        walk.finish(DRIVER)
    }
}
