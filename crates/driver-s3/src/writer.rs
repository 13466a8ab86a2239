//! Resumable uploads on S3 multipart uploads.
//!
//! A writer holds at most one chunk (`chunksize`) in memory. Full chunks become parts of a
//! multipart upload, created on the first full chunk; an upload that never fills one is
//! written with a single `PutObject` at commit.
//!
//! `close` makes the upload resumable: what is buffered becomes a part if S3 accepts it as
//! a non-final part (at least 5 MiB); anything smaller is parked in a hidden object
//! `<key>#upload` (hidden because `#` cannot appear in a path) whose metadata names the
//! multipart upload. `S3Writer::resume` reads that object (or, failing it, finds the
//! upload with `ListMultipartUploads`), lists the parts with `ListParts`, and continues
//! with the same size. `commit` uploads the rest as the final part and completes the
//! upload; `cancel` aborts it. Both remove the parked object.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use driver_api::chunks::Chunker;
use driver_api::{async_trait, FileWriter, Result, StorageError, StoragePath};

use crate::client::map_err;
use crate::params::MIN_CHUNK;
use driver_objectstore::{Cx, ObjectBackend};

use crate::{S3Backend as Inner, DRIVER};

/// Metadata key of the parked object naming its multipart upload.
const META_UPLOAD_ID: &str = "upload-id";

pub(crate) struct S3Writer {
    s: Arc<Inner>,
    path: StoragePath,
    key: String,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    parts_size: u64,
    chunks: Chunker,
    /// Resumed from a parked tail: commit removes it only after the commit succeeded, so a
    /// failed commit stays resumable. (A fresh writer removes any stale one in parallel.)
    from_parked: bool,
    /// Bytes written in all (parts, parked tail and buffer); what `size` reports, also
    /// after commit.
    size: u64,
}

fn park_key(key: &str) -> String {
    format!("{key}#upload")
}

impl S3Writer {
    pub(crate) fn new(s: Arc<Inner>, path: StoragePath) -> Self {
        let key = s.keys.key(&path);
        let chunk = s.p.chunk_size as usize;
        Self {
            s,
            path,
            key,
            upload_id: None,
            parts: Vec::new(),
            parts_size: 0,
            chunks: Chunker::new(chunk),
            from_parked: false,
            size: 0,
        }
    }

    /// Continues the upload in progress at `path` (see the module docs), or starts a new
    /// one over committed empty content; anything else is refused.
    pub(crate) async fn resume(s: Arc<Inner>, path: StoragePath) -> Result<Self> {
        let mut w = Self::new(s.clone(), path.clone());
        // 1. The parked object written by `close`.
        let parked = s
            .client
            .get_object()
            .bucket(s.bucket())
            .key(park_key(&w.key))
            .send()
            .await;
        match parked {
            Ok(out) => {
                let upload_id = out
                    .metadata()
                    .and_then(|m| m.get(META_UPLOAD_ID))
                    .filter(|id| !id.is_empty())
                    .cloned();
                let tail = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| StorageError::backend(DRIVER, "writer", &path, e))?
                    .into_bytes();
                if let Some(id) = upload_id {
                    w.load_parts(&id).await?;
                    w.upload_id = Some(id);
                }
                w.chunks.extend(&tail);
                w.size = w.parts_size + tail.len() as u64;
                w.from_parked = true;
                return Ok(w);
            }
            Err(e) => match map_err("writer", &path, e) {
                StorageError::PathNotFound { .. } => {}
                other => return Err(other),
            },
        }
        // 2. A multipart upload at exactly this key (e.g. closed before any parking).
        if let Some(id) = w.find_upload().await? {
            w.load_parts(&id).await?;
            w.upload_id = Some(id);
            w.size = w.parts_size;
            return Ok(w);
        }
        // 3. Committed content: only an empty object may be appended to (replaced).
        let s2 = &s;
        match s2
            .head(Cx::new("writer", &path), &w.key)
            .await?
            .map(|o| o.size)
        {
            None => Err(StorageError::not_found(DRIVER, &path)),
            Some(0) => Ok(w),
            Some(size) => Err(StorageError::append_to_committed(DRIVER, &path, size)),
        }
    }

    /// The most recently initiated multipart upload whose key is exactly ours.
    async fn find_upload(&self) -> Result<Option<String>> {
        let s = &self.s;
        let mut key_marker = None;
        let mut id_marker = None;
        let mut best: Option<(aws_sdk_s3::primitives::DateTime, String)> = None;
        loop {
            let out = match s
                .client
                .list_multipart_uploads()
                .bucket(s.bucket())
                .prefix(&self.key)
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
                        return Ok(None);
                    }
                    return Err(map_err("writer", &self.path, e));
                }
            };
            for u in out.uploads() {
                if u.key() != Some(self.key.as_str()) {
                    continue;
                }
                let (Some(id), Some(at)) = (u.upload_id(), u.initiated()) else {
                    continue;
                };
                if best.as_ref().is_none_or(|(t, _)| at > t) {
                    best = Some((*at, id.to_owned()));
                }
            }
            if out.is_truncated() == Some(true) {
                key_marker = out.next_key_marker().map(str::to_owned);
                id_marker = out.next_upload_id_marker().map(str::to_owned);
                if key_marker.is_none() && id_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    /// Lists the parts of upload `id` into `self.parts`.
    async fn load_parts(&mut self, id: &str) -> Result<()> {
        let s = self.s.clone();
        let mut marker = None;
        self.parts.clear();
        self.parts_size = 0;
        loop {
            let out = s
                .client
                .list_parts()
                .bucket(s.bucket())
                .key(&self.key)
                .upload_id(id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_err("writer", &self.path, e))?;
            for p in out.parts() {
                self.parts_size += p.size().unwrap_or(0).max(0) as u64;
                self.parts.push(
                    CompletedPart::builder()
                        .set_part_number(p.part_number())
                        .set_e_tag(p.e_tag().map(str::to_owned))
                        .build(),
                );
            }
            match out.next_part_number_marker() {
                Some(m) if out.is_truncated() == Some(true) => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        self.parts.sort_by_key(|p| p.part_number());
        Ok(())
    }

    async fn ensure_upload(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let s = &self.s;
        let out = crate::new_object!(
            s.client
                .create_multipart_upload()
                .bucket(s.bucket())
                .key(&self.key),
            s
        )
        .send()
        .await
        .map_err(|e| map_err("write", &self.path, e))?;
        let id = out
            .upload_id()
            .ok_or_else(|| {
                StorageError::backend(
                    DRIVER,
                    "write",
                    &self.path,
                    "CreateMultipartUpload returned no upload id",
                )
            })?
            .to_owned();
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    async fn upload_part(&mut self, data: Bytes) -> Result<()> {
        let id = self.ensure_upload().await?;
        let n = self.parts.len() as i32 + 1;
        let len = data.len() as u64;
        let s = &self.s;
        let out = s
            .client
            .upload_part()
            .bucket(s.bucket())
            .key(&self.key)
            .upload_id(id)
            .part_number(n)
            .body(SdkStream::from(data))
            .send()
            .await
            .map_err(|e| map_err("write", &self.path, e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
        self.parts_size += len;
        Ok(())
    }

    async fn remove_parked(&self) -> Result<()> {
        let s = &self.s;
        s.client
            .delete_object()
            .bucket(s.bucket())
            .key(park_key(&self.key))
            .send()
            .await
            .map_err(|e| map_err("writer", &self.path, e))?;
        Ok(())
    }
}

#[async_trait]
impl FileWriter for S3Writer {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        while let Some(part) = self.chunks.next_part(&mut data) {
            self.upload_part(part).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(&mut self) -> Result<()> {
        if self.chunks.len() as u64 >= MIN_CHUNK {
            let part = self.chunks.take();
            self.upload_part(part).await?;
        }
        let s = self.s.clone();
        let mut put = s
            .client
            .put_object()
            .bucket(s.bucket())
            .key(park_key(&self.key))
            .content_type("application/octet-stream")
            .body(SdkStream::from(Bytes::copy_from_slice(
                self.chunks.buffered(),
            )));
        if let Some(id) = &self.upload_id {
            put = put.metadata(META_UPLOAD_ID, id);
        }
        put.send()
            .await
            .map_err(|e| map_err("close", &self.path, e))?;
        self.chunks.clear();
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        self.chunks.clear();
        if let Some(id) = self.upload_id.take() {
            self.s.abort(&self.path, &self.key, &id).await;
        }
        self.remove_parked().await
    }

    async fn commit(&mut self) -> Result<()> {
        let s = self.s.clone();
        if let Some(id) = self.upload_id.clone() {
            if !self.chunks.is_empty() {
                let last = self.chunks.take();
                self.upload_part(last).await?;
            }
            let complete = s
                .client
                .complete_multipart_upload()
                .bucket(s.bucket())
                .key(&self.key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(self.parts.clone()))
                        .build(),
                )
                .send();
            let (res, parked) = if self.from_parked {
                (complete.await, None)
            } else {
                // A stale parked tail goes in parallel: one round trip, not two.
                let (res, parked) = futures::future::join(complete, self.remove_parked()).await;
                (res, Some(parked))
            };
            if let Err(e) = res {
                let err = map_err("commit", &self.path, e);
                s.abort(&self.path, &self.key, &id).await;
                return Err(err);
            }
            match parked {
                Some(r) => r,
                None => self.remove_parked().await,
            }
        } else {
            // Never reached a chunk: one PutObject.
            let body = self.chunks.take();
            let put = s.put_object(&self.path, &self.key, body);
            if self.from_parked {
                put.await?;
                self.remove_parked().await
            } else {
                let (put, parked) = futures::future::join(put, self.remove_parked()).await;
                put.and(parked)
            }
        }
    }
}
