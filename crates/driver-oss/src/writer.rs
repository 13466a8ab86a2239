//! OSS multipart uploads: the steps of the object-store core's resumable writer
//! ([`driver_objectstore::upload`], which holds the protocol: chunking, parts in flight,
//! parking the tail as `<key>#upload`, resume, commit and cancel).
//!
//! An upload starts with `InitiateMultipartUpload` (not retried: a retry would leave the
//! first upload behind); a part is `UploadPart` (`maxconcurrency` in flight), listed back
//! with `ListParts` (paged by `part-number-marker`); the object is published by
//! `CompleteMultipartUpload` (with the `Content-MD5` of its body) and an upload is
//! discarded by `AbortMultipartUpload`. An upload closed without a parked object is found
//! with `ListMultipartUploads` (the most recently initiated one at exactly the key). Parts
//! below 5 MiB ([`MIN_CHUNK`]) may only be the last one, so a shorter tail is parked.
//!
//! Why multipart rather than `AppendObject`: an appendable object is visible (and
//! readable, half written) at its path from the first byte, so a cancelled or abandoned
//! upload would leave a partial file where the contract says there is none; its size is
//! capped at 5 GB; and it cannot take server-side part copies. Multipart parts stay
//! invisible until `CompleteMultipartUpload` publishes the object in one step.

use bytes::Bytes;
use driver_api::{async_trait, Result, StorageError};
use driver_http::RestClient as _;
use driver_objectstore::{Cx, MultipartBackend, OpenUpload, Part};
use reqwest::Method;

use crate::client::{Call, Client};
use crate::params::MIN_CHUNK;
use crate::{content_md5, xml, OssBackend, DRIVER};

#[async_trait]
impl MultipartBackend for OssBackend {
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

    /// `InitiateMultipartUpload`.
    async fn initiate(&self, cx: Cx<'_>, key: &str) -> Result<String> {
        let url = self.client.object_url(key, &[("uploads", "")]);
        // Not retried here: a retry could leave the first upload behind; the core sweeps
        // the key and tries again instead (`SWEEPS`).
        let call = self.client.new_object(
            Call::new(cx.op, cx.path, Method::POST, url)
                .header("content-type", "application/octet-stream")
                .once(),
        );
        let body = self.client.text(call).await?;
        let r: xml::InitiateMultipartUploadResult = xml::parse(&body, cx.op, cx.path)?;
        Ok(r.upload_id)
    }

    /// `UploadPart`.
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
        let n = number.to_string();
        let url = self
            .client
            .object_url(key, &[("partNumber", &n), ("uploadId", upload)]);
        let call = Call::new(cx.op, cx.path, Method::PUT, url).body(data);
        let resp = self.client.expect(call, &[200]).await?;
        Ok(Part {
            number,
            size,
            etag: Client::header(&resp, "etag").unwrap_or_default().to_owned(),
        })
    }

    /// `CompleteMultipartUpload`, with the `Content-MD5` of its body.
    async fn complete(&self, cx: Cx<'_>, key: &str, upload: &str, parts: &[Part]) -> Result<()> {
        let url = self.client.object_url(key, &[("uploadId", upload)]);
        let body = xml::complete_body(parts);
        let md5 = content_md5(body.as_bytes());
        let call =
            Client::xml_call(cx.op, cx.path, Method::POST, url, body).header("content-md5", md5);
        self.client.expect(call, &[200]).await.map(drop)
    }

    /// `AbortMultipartUpload` (an upload already gone is not an error).
    async fn abort(&self, cx: Cx<'_>, key: &str, upload: &str, _: &[Part]) -> Result<()> {
        let url = self.client.object_url(key, &[("uploadId", upload)]);
        let call = Call::new(cx.op, cx.path, Method::DELETE, url);
        self.client.expect(call, &[200, 204, 404]).await.map(drop)
    }

    /// `ListParts`, page by page (`part-number-marker`).
    async fn list_parts(&self, cx: Cx<'_>, key: &str, upload: &str) -> Result<Vec<Part>> {
        let mut parts = Vec::new();
        let mut marker = String::new();
        loop {
            let mut q = vec![("uploadId", upload)];
            if !marker.is_empty() {
                q.push(("part-number-marker", &marker));
            }
            let url = self.client.object_url(key, &q);
            let body = self
                .client
                .text(Call::new(cx.op, cx.path, Method::GET, url))
                .await?;
            let out: xml::ListPartsResult = xml::parse(&body, cx.op, cx.path)?;
            parts.extend(out.parts.into_iter().map(|p| Part {
                number: p.part_number,
                size: p.size,
                etag: p.etag,
            }));
            match out.next_part_number_marker.filter(|m| !m.is_empty()) {
                Some(m) if out.is_truncated && m != marker => marker = m,
                _ => return Ok(parts),
            }
        }
    }

    /// `ListMultipartUploads` under the key as a prefix, page by page: the most recently
    /// initiated upload whose key is exactly `key`.
    async fn find_upload(&self, cx: Cx<'_>, key: &str) -> Result<Option<String>> {
        let uploads = self.uploads_under(cx, key).await?;
        Ok(uploads
            .into_iter()
            .filter(|u| u.key == key)
            .max_by_key(|u| u.started)
            .map(|u| u.id))
    }
}

impl OssBackend {
    /// The multipart uploads in progress for keys starting with `prefix`
    /// (`ListMultipartUploads`, every page).
    pub(crate) async fn uploads_under(&self, cx: Cx<'_>, prefix: &str) -> Result<Vec<OpenUpload>> {
        let mut key_marker = String::new();
        let mut id_marker = String::new();
        let mut found = Vec::new();
        loop {
            let mut q = vec![("uploads", ""), ("prefix", prefix)];
            if !key_marker.is_empty() {
                q.push(("key-marker", &key_marker));
                q.push(("upload-id-marker", &id_marker));
            }
            let url = self.client.bucket_url(&q);
            let body = self
                .client
                .text(Call::new(cx.op, cx.path, Method::GET, url))
                .await?;
            let out: xml::ListMultipartUploadsResult = xml::parse(&body, cx.op, cx.path)?;
            found.extend(out.uploads.into_iter().map(|u| OpenUpload {
                started: Some(xml::iso_time(&u.initiated)),
                key: u.key,
                id: u.upload_id,
            }));
            let next_key = out.next_key_marker.unwrap_or_default();
            let next_id = out.next_upload_id_marker.unwrap_or_default();
            if !out.is_truncated || (next_key.is_empty() && next_id.is_empty()) {
                return Ok(found);
            }
            if next_key == key_marker && next_id == id_marker {
                return Err(StorageError::backend(
                    DRIVER,
                    cx.op,
                    cx.path,
                    "ListMultipartUploads did not advance",
                ));
            }
            (key_marker, id_marker) = (next_key, next_id);
        }
    }
}
