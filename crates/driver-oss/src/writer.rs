//! Resumable uploads on OSS multipart uploads.
//!
//! A writer holds at most one chunk (`chunksize`) in memory. Full chunks become parts of
//! a multipart upload, initiated on the first full chunk; an upload that never fills one
//! is written with a single `PutObject` at commit.
//!
//! `close` makes the upload resumable: what is buffered becomes a part if it may be a
//! non-final part (at least the minimum chunk, 5 MiB); anything smaller is parked in a
//! hidden object `<key>#upload` (hidden because `#` cannot appear in a path) whose
//! `x-oss-meta-upload-id` names the multipart upload. `OssWriter::resume` reads that
//! object (or, failing it, finds the upload with `ListMultipartUploads`), lists the parts
//! with `ListParts`, and continues with the same size. `commit` uploads the rest as the
//! final part and completes the upload; `cancel` aborts it. Both remove the parked object.
//!
//! Why multipart rather than `AppendObject`: an appendable object is visible (and
//! readable, half written) at its path from the first byte, so a cancelled or abandoned
//! upload would leave a partial file where the contract says there is none; its size is
//! capped at 5 GB; and it cannot take server-side part copies. Multipart parts stay
//! invisible until `CompleteMultipartUpload` publishes the object in one step.

use std::sync::Arc;

use bytes::Bytes;
use driver_api::chunks::Chunker;
use driver_api::{async_trait, FileWriter, Result, StorageError, StoragePath};
use driver_http::RestClient as _;
use reqwest::Method;

use driver_objectstore::{Cx, ObjectBackend as _};

use crate::client::{Call, Client};
use crate::params::MIN_CHUNK;
use crate::xml::{self, Part};
use crate::{OssBackend, DRIVER};

/// Metadata header of the parked object naming its multipart upload.
const META_UPLOAD_ID: &str = "x-oss-meta-upload-id";

pub(crate) fn park_key(key: &str) -> String {
    format!("{key}#upload")
}

pub(crate) struct OssWriter {
    s: Arc<OssBackend>,
    path: StoragePath,
    key: String,
    upload_id: Option<String>,
    parts: Vec<Part>,
    parts_size: u64,
    chunks: Chunker,
    /// Resumed from a parked tail: commit removes it only after the commit succeeded, so
    /// a failed commit stays resumable.
    from_parked: bool,
    /// Bytes written in all (parts, parked tail and buffer); what `size` reports.
    size: u64,
}

impl OssWriter {
    pub(crate) fn new(s: Arc<OssBackend>, path: StoragePath, key: String) -> Self {
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
    pub(crate) async fn resume(s: Arc<OssBackend>, path: StoragePath, key: String) -> Result<Self> {
        let mut w = Self::new(s.clone(), path.clone(), key);
        // 1. The parked object written by `close`.
        let url = s.client.object_url(&park_key(&w.key), &[]);
        let resp = s
            .client
            .send(Call::new("writer", &path, Method::GET, url))
            .await?;
        match resp.status().as_u16() {
            200 => {
                let upload_id = Client::header(&resp, META_UPLOAD_ID)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned);
                let tail = resp
                    .bytes()
                    .await
                    .map_err(|e| driver_http::transport_error(DRIVER, "writer", &path, e))?;
                if let Some(id) = upload_id {
                    w.load_parts(&id).await?;
                    w.upload_id = Some(id);
                }
                w.chunks.extend(&tail);
                w.size = w.parts_size + tail.len() as u64;
                w.from_parked = true;
                return Ok(w);
            }
            404 => drop(resp),
            _ => return Err(s.client.error("writer", &path, resp).await),
        }
        // 2. A multipart upload at exactly this key (e.g. closed before any parking).
        if let Some(id) = w.find_upload().await? {
            w.load_parts(&id).await?;
            w.upload_id = Some(id);
            w.size = w.parts_size;
            return Ok(w);
        }
        // 3. Committed content: only an empty object may be appended to (replaced).
        match s
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
        let mut key_marker = String::new();
        let mut id_marker = String::new();
        let mut best: Option<(String, String)> = None;
        loop {
            let mut q = vec![("uploads", ""), ("prefix", self.key.as_str())];
            if !key_marker.is_empty() {
                q.push(("key-marker", &key_marker));
                q.push(("upload-id-marker", &id_marker));
            }
            let url = s.client.bucket_url(&q);
            let body = s
                .client
                .text(Call::new("writer", &self.path, Method::GET, url))
                .await?;
            let out: xml::ListMultipartUploadsResult = xml::parse(&body, "writer", &self.path)?;
            for u in out.uploads {
                if u.key != self.key {
                    continue;
                }
                // ISO 8601 times of one format compare as text.
                if best.as_ref().is_none_or(|(t, _)| u.initiated > *t) {
                    best = Some((u.initiated, u.upload_id));
                }
            }
            let next_key = out.next_key_marker.unwrap_or_default();
            let next_id = out.next_upload_id_marker.unwrap_or_default();
            if !out.is_truncated || (next_key.is_empty() && next_id.is_empty()) {
                break;
            }
            if next_key == key_marker && next_id == id_marker {
                return Err(StorageError::backend(
                    DRIVER,
                    "writer",
                    &self.path,
                    "ListMultipartUploads did not advance",
                ));
            }
            (key_marker, id_marker) = (next_key, next_id);
        }
        Ok(best.map(|(_, id)| id))
    }

    /// Lists the parts of upload `id` into `self.parts`.
    async fn load_parts(&mut self, id: &str) -> Result<()> {
        let s = self.s.clone();
        let mut marker = String::new();
        self.parts.clear();
        self.parts_size = 0;
        loop {
            let mut q = vec![("uploadId", id)];
            if !marker.is_empty() {
                q.push(("part-number-marker", &marker));
            }
            let url = s.client.object_url(&self.key, &q);
            let body = s
                .client
                .text(Call::new("writer", &self.path, Method::GET, url))
                .await?;
            let out: xml::ListPartsResult = xml::parse(&body, "writer", &self.path)?;
            for p in out.parts {
                self.parts_size += p.size;
                self.parts.push(p);
            }
            match out.next_part_number_marker.filter(|m| !m.is_empty()) {
                Some(m) if out.is_truncated && m != marker => marker = m,
                _ => break,
            }
        }
        self.parts.sort_by_key(|p| p.part_number);
        Ok(())
    }

    async fn ensure_upload(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let id = self
            .s
            .initiate(Cx::new("write", &self.path), &self.key)
            .await?;
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    async fn upload_part(&mut self, data: Bytes) -> Result<()> {
        let id = self.ensure_upload().await?;
        let n = self.parts.len() as u32 + 1;
        let len = data.len() as u64;
        let s = &self.s;
        let number = n.to_string();
        let url = s
            .client
            .object_url(&self.key, &[("partNumber", &number), ("uploadId", &id)]);
        let resp = s
            .client
            .expect(
                Call::new("write", &self.path, Method::PUT, url).body(data),
                &[200],
            )
            .await?;
        let etag = Client::header(&resp, "etag").unwrap_or_default().to_owned();
        self.parts.push(Part {
            part_number: n,
            etag,
            size: len,
        });
        self.parts_size += len;
        Ok(())
    }

    async fn remove_parked(&self) -> Result<()> {
        self.s
            .delete(Cx::new("writer", &self.path), &park_key(&self.key), false)
            .await
            .map(drop)
    }
}

#[async_trait]
impl FileWriter for OssWriter {
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
        let url = s.client.object_url(&park_key(&self.key), &[]);
        let mut call = Call::new("close", &self.path, Method::PUT, url)
            .header("content-type", "application/octet-stream")
            .body(Bytes::copy_from_slice(self.chunks.buffered()));
        if let Some(id) = &self.upload_id {
            call = call.header(META_UPLOAD_ID, id.clone());
        }
        s.client.expect(call, &[200]).await?;
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
            let complete = s.complete(Cx::new("commit", &self.path), &self.key, &id, &self.parts);
            let (res, parked) = if self.from_parked {
                (complete.await, None)
            } else {
                // A stale parked tail goes in parallel: one round trip, not two.
                let (res, parked) = futures::future::join(complete, self.remove_parked()).await;
                (res, Some(parked))
            };
            if let Err(e) = res {
                s.abort(&self.path, &self.key, &id).await;
                return Err(e);
            }
            match parked {
                Some(r) => r,
                None => self.remove_parked().await,
            }
        } else {
            // Never reached a chunk: one PutObject.
            let body = self.chunks.take();
            let put = s.put(Cx::new("commit", &self.path), &self.key, body);
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
