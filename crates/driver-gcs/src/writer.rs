//! GCS resumable upload sessions: the steps of the object-store core's resumable writer
//! ([`driver_objectstore::upload`], which holds the protocol: chunking, parking the tail
//! as `<key>#upload`, resume, commit and cancel).
//!
//! * initiate opens a session (`uploadType=resumable`); the upload id the core keeps is
//!   the session URI;
//! * a part is a `PUT` to the session with `Content-Range: bytes a-b/*` (308); every
//!   non-final part is a multiple of 256 KiB, so `close` sends the largest such share of
//!   what is buffered and parks the rest;
//! * the last part is always sent, even empty, because it tells the session the total
//!   (`bytes a-b/total`, or `bytes */total`) and so finalises the object; completing then
//!   has nothing left to do;
//! * abort is a `DELETE` of the session URI.
//!
//! A session cannot list its parts without a status query (an empty `Content-Range: bytes
//! */*` request, which some emulators take as "finalise"), so the core records them in
//! the parked object instead. A session takes bytes in order: one part is in flight.
//!
//! The session URI is a credential (it allows uploading without a token): it is never
//! logged or put in an error.

use bytes::Bytes;
use driver_api::{async_trait, Result, StorageError};
use driver_http::Call;
use driver_http::RestClient as _;
use driver_objectstore::{Cx, MultipartBackend, Part};
use reqwest::{Method, Response, Url};

use crate::params::CHUNK_ALIGN;
use crate::{GcsBackend, DRIVER};

impl GcsBackend {
    /// The session URI `upload` (the core's upload id).
    fn session(&self, cx: Cx<'_>, upload: &str) -> Result<Url> {
        // The parse error does not quote its input: the URI stays out of the message.
        Url::parse(upload)
            .map(|u| self.client.session_at_endpoint(u))
            .map_err(|e| fail(cx, format!("bad session URI in the upload state: {e}")))
    }

    /// An error about the session (404/410: it expired or was cancelled).
    async fn session_error(&self, cx: Cx<'_>, resp: Response) -> StorageError {
        match resp.status().as_u16() {
            404 | 410 => fail(
                cx,
                format!(
                    "the upload session is gone (HTTP {}): it expired or was cancelled",
                    resp.status().as_u16()
                ),
            ),
            _ => self.client.error(cx.op, cx.path, resp).await,
        }
    }
}

fn fail(cx: Cx<'_>, what: String) -> StorageError {
    StorageError::backend(DRIVER, cx.op, cx.path, what)
}

/// Bytes a session holds, from the `Range: bytes=0-N` of a 308 answer (none: 0).
fn persisted(resp: &Response) -> Option<u64> {
    let v = resp.headers().get("range")?.to_str().ok()?;
    let end = v.strip_prefix("bytes=0-")?.trim().parse::<u64>().ok()?;
    Some(end + 1)
}

#[async_trait]
impl MultipartBackend for GcsBackend {
    /// `chunksize`, a multiple of 256 KiB.
    fn part_size(&self) -> usize {
        self.p.chunk_size
    }

    fn min_part_size(&self) -> usize {
        CHUNK_ALIGN as usize
    }

    /// The largest multiple of 256 KiB.
    fn sendable_tail(&self, len: usize) -> usize {
        len - len % CHUNK_ALIGN as usize
    }

    /// Only a status query would say (see the module docs).
    const LISTS_PARTS: bool = false;

    /// Sessions cannot be listed: record each one when it starts, so a killed writer's
    /// session is found and cancelled (`storagectl uploads`).
    const PARK_AT_START: bool = true;

    /// A session takes bytes in order.
    fn max_concurrency(&self) -> usize {
        1
    }

    async fn initiate(&self, cx: Cx<'_>, key: &str) -> Result<String> {
        let url = self.client.upload_url("resumable", key);
        let call = Call::new(cx.op, cx.path, Method::POST, url)
            .header("content-type", "application/json; charset=UTF-8")
            .header("x-upload-content-type", "application/octet-stream")
            .body(Bytes::from_static(
                br#"{"contentType":"application/octet-stream"}"#,
            ));
        let resp = self.client.expect(call, &[200, 201]).await?;
        resp.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Url::parse(v).ok())
            .map(String::from)
            .ok_or_else(|| {
                fail(
                    cx,
                    "no session URI in the answer to a resumable upload".to_owned(),
                )
            })
    }

    /// A non-final chunk. GCS may keep less than it was sent (it says so in `Range`): the
    /// rest is sent again.
    async fn put_part(
        &self,
        cx: Cx<'_>,
        _key: &str,
        upload: &str,
        number: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<Part> {
        let session = self.session(cx, upload)?;
        let mut sent = 0usize;
        for _ in 0..16 {
            let rest = data.slice(sent..);
            let first = offset + sent as u64;
            let last = first + rest.len() as u64 - 1;
            let call = Call::new(cx.op, cx.path, Method::PUT, session.clone())
                .header("content-range", format!("bytes {first}-{last}/*"))
                .header("content-type", "application/octet-stream")
                .body(rest);
            let resp = self.client.send(call).await?;
            if resp.status().as_u16() != 308 {
                return Err(self.session_error(cx, resp).await);
            }
            let held = persisted(&resp).unwrap_or(0);
            if held < first || held > last + 1 {
                return Err(fail(
                    cx,
                    format!("the session holds {held} bytes after a chunk of {first}..={last}"),
                ));
            }
            sent = (held - offset) as usize;
            if sent == data.len() {
                return Ok(Part {
                    number,
                    size: data.len() as u64,
                    etag: String::new(),
                });
            }
        }
        Err(fail(cx, "the session keeps refusing a chunk".to_owned()))
    }

    /// The final request, always sent (even empty): it tells the session the total size,
    /// which finalises the object.
    async fn put_last_part(
        &self,
        cx: Cx<'_>,
        _key: &str,
        upload: &str,
        number: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<Option<Part>> {
        let session = self.session(cx, upload)?;
        let size = data.len() as u64;
        let total = offset + size;
        let range = if data.is_empty() {
            format!("bytes */{total}")
        } else {
            format!("bytes {offset}-{}/{total}", total - 1)
        };
        let call = Call::new(cx.op, cx.path, Method::PUT, session)
            .header("content-range", range)
            .header("content-type", "application/octet-stream")
            .body(data);
        let resp = self.client.send(call).await?;
        if !matches!(resp.status().as_u16(), 200 | 201) {
            return Err(self.session_error(cx, resp).await);
        }
        Ok(Some(Part {
            number,
            size,
            etag: String::new(),
        }))
    }

    /// Nothing: the last part finalised the object (GCS answered it with the object).
    async fn complete(&self, _cx: Cx<'_>, _key: &str, _upload: &str, _: &[Part]) -> Result<()> {
        Ok(())
    }

    /// `DELETE` of the session URI (499: cancelled; 404/410: already gone).
    async fn abort(&self, cx: Cx<'_>, _key: &str, upload: &str, _: &[Part]) -> Result<()> {
        let session = self.session(cx, upload)?;
        let resp = self
            .client
            .send(Call::new(cx.op, cx.path, Method::DELETE, session))
            .await?;
        if matches!(resp.status().as_u16(), 200 | 204 | 404 | 410 | 499) {
            Ok(())
        } else {
            Err(self.client.error(cx.op, cx.path, resp).await)
        }
    }
}
