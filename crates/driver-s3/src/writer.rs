//! S3 multipart uploads: the steps of the object-store core's resumable writer
//! ([`driver_objectstore::upload`], which holds the protocol: chunking, parts in flight,
//! parking the tail as `<key>#upload`, resume, commit and cancel).
//!
//! A part is `UploadPart`, listed back with `ListParts`; an upload closed without a parked
//! object is found with `ListMultipartUploads` (the most recently initiated one at exactly
//! the key). Parts below 5 MiB may only be the last one, so a shorter tail is parked.

use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use std::time::SystemTime;

use bytes::Bytes;
use driver_api::{async_trait, Result, StorageError};
use driver_objectstore::{Cx, MultipartBackend, OpenUpload, Part};

use crate::client::map_err;
use crate::params::MIN_CHUNK;
use crate::{S3Backend, DRIVER};

#[async_trait]
impl MultipartBackend for S3Backend {
    fn part_size(&self) -> usize {
        self.p.chunk_size as usize
    }

    fn min_part_size(&self) -> usize {
        MIN_CHUNK as usize
    }

    fn max_concurrency(&self) -> usize {
        self.p.max_concurrency
    }

    const SWEEPS: bool = true;

    /// `CreateMultipartUpload`, without the SDK's retries: a retry after a lost answer
    /// would leave the first upload behind; the core sweeps the key and tries again
    /// instead (`SWEEPS`).
    async fn initiate(&self, cx: Cx<'_>, key: &str) -> Result<String> {
        let once = aws_sdk_s3::config::Builder::new()
            .retry_config(aws_config::retry::RetryConfig::disabled());
        let out = crate::new_object!(
            self.client
                .create_multipart_upload()
                .bucket(self.bucket())
                .key(key),
            self
        )
        .customize()
        .config_override(once)
        .send()
        .await
        .map_err(|e| map_err(cx.op, cx.path, e))?;
        out.upload_id().map(str::to_owned).ok_or_else(|| {
            StorageError::backend(
                DRIVER,
                cx.op,
                cx.path,
                "CreateMultipartUpload returned no upload id",
            )
        })
    }

    async fn put_part(
        &self,
        cx: Cx<'_>,
        key: &str,
        upload: &str,
        number: u32,
        _offset: u64,
        data: Bytes,
    ) -> Result<Part> {
        let size = data.len() as u64;
        let out = self
            .retry()
            .run(|| async {
                self.client
                    .upload_part()
                    .bucket(self.bucket())
                    .key(key)
                    .upload_id(upload)
                    .part_number(number as i32)
                    .body(SdkStream::from(data.clone()))
                    .customize()
                    .config_override(crate::client::long_call(&self.p))
                    .send()
                    .await
                    .map_err(|e| map_err(cx.op, cx.path, e))
            })
            .await?;
        Ok(Part {
            number,
            size,
            etag: out.e_tag().unwrap_or_default().to_owned(),
        })
    }

    async fn complete(&self, cx: Cx<'_>, key: &str, upload: &str, parts: &[Part]) -> Result<()> {
        let parts: Vec<CompletedPart> = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        self.retry()
            .run(|| async {
                self.client
                    .complete_multipart_upload()
                    .bucket(self.bucket())
                    .key(key)
                    .upload_id(upload)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts.clone()))
                            .build(),
                    )
                    .customize()
                    .config_override(crate::client::long_call(&self.p))
                    .send()
                    .await
                    .map_err(|e| map_err(cx.op, cx.path, e))
            })
            .await?;
        Ok(())
    }

    async fn abort(&self, cx: Cx<'_>, key: &str, upload: &str, _: &[Part]) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload)
            .send()
            .await
            .map_err(|e| map_err(cx.op, cx.path, e))?;
        Ok(())
    }

    async fn list_parts(&self, cx: Cx<'_>, key: &str, upload: &str) -> Result<Vec<Part>> {
        let mut parts = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(self.bucket())
                .key(key)
                .upload_id(upload)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_err(cx.op, cx.path, e))?;
            parts.extend(out.parts().iter().map(|p| Part {
                number: p.part_number().unwrap_or(0).max(0) as u32,
                size: p.size().unwrap_or(0).max(0) as u64,
                etag: p.e_tag().unwrap_or_default().to_owned(),
            }));
            match out.next_part_number_marker() {
                Some(m) if out.is_truncated() == Some(true) => marker = Some(m.to_owned()),
                _ => return Ok(parts),
            }
        }
    }

    async fn find_upload(&self, cx: Cx<'_>, key: &str) -> Result<Option<String>> {
        let uploads = self.uploads_under(cx, key).await?;
        Ok(uploads
            .into_iter()
            .filter(|u| u.key == key)
            .max_by_key(|u| u.started)
            .map(|u| u.id))
    }
}

impl S3Backend {
    /// The multipart uploads in progress for keys starting with `prefix`
    /// (`ListMultipartUploads`, every page). A server that cannot list them has none.
    pub(crate) async fn uploads_under(&self, cx: Cx<'_>, prefix: &str) -> Result<Vec<OpenUpload>> {
        let mut key_marker = None;
        let mut id_marker = None;
        let mut found = Vec::new();
        loop {
            let out = match self
                .client
                .list_multipart_uploads()
                .bucket(self.bucket())
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let (code, _) = crate::client::classify(&e);
                    // Some S3-compatible servers do not list uploads: nothing to resume.
                    if code.as_deref() == Some("NotImplemented") {
                        return Ok(found);
                    }
                    return Err(map_err(cx.op, cx.path, e));
                }
            };
            for u in out.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                found.push(OpenUpload {
                    key: key.to_owned(),
                    id: id.to_owned(),
                    started: u.initiated().and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            id_marker = out.next_upload_id_marker().map(str::to_owned);
            if out.is_truncated() != Some(true) || (key_marker.is_none() && id_marker.is_none()) {
                return Ok(found);
            }
        }
    }
}
