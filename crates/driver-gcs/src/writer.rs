//! Resumable uploads on GCS resumable upload sessions.
//!
//! A writer holds at most one chunk (`chunksize`, a multiple of 256 KiB) in memory. The
//! first full chunk opens a resumable upload session and every full chunk is sent to it
//! (`Content-Range: bytes a-b/*`); a writer that never fills a chunk is written with one
//! simple upload at commit.
//!
//! `close` keeps the upload for a later `writer(path, true)`, from this process or
//! another: what is buffered goes to the session as far as GCS takes it (a multiple of
//! 256 KiB), and the state is written to a hidden object `<name>#upload` (hidden because
//! `#` cannot appear in a path): one JSON line naming the session URI and the bytes the
//! session holds, followed by the rest of the bytes (less than 256 KiB). Resuming reads
//! that object, so it never has to ask the session for its status (an empty
//! `Content-Range: bytes */*` query, which some emulators take as "finalise").
//!
//! `commit` sends the rest as the final request (`bytes a-b/total`, or `bytes */total`
//! when nothing is left), or one simple upload when no session exists; `cancel` deletes
//! the session. Both remove the state object; a commit removes it only once it
//! succeeded, so a failed commit stays resumable. The session URI is a credential (it
//! allows uploading without a token): it is never logged.

use std::sync::Arc;

use bytes::Bytes;
use driver_api::chunks::Chunker;
use driver_api::{async_trait, FileWriter, Result, StorageError, StoragePath};
use driver_http::Call;
use driver_http::RestClient as _;
use driver_objectstore::{Cx, ObjectBackend};
use reqwest::{Method, Response, Url};
use serde::{Deserialize, Serialize};

use crate::params::CHUNK_ALIGN;
use crate::{GcsBackend, DRIVER};

/// The first line of a state object.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// Format version.
    v: u32,
    /// The resumable session, if one was opened.
    session: Option<String>,
    /// Bytes the session holds.
    offset: u64,
}

/// The name of the state object of `name`.
pub(crate) fn state_name(name: &str) -> String {
    format!("{name}#upload")
}

pub(crate) struct GcsWriter {
    s: Arc<GcsBackend>,
    path: StoragePath,
    name: String,
    session: Option<Url>,
    /// Bytes the session holds.
    uploaded: u64,
    chunks: Chunker,
    /// Resumed from a state object (removed only after a successful commit or cancel).
    from_state: bool,
    /// Bytes written in all; what `size` reports.
    size: u64,
}

impl GcsWriter {
    /// A fresh upload of `path`, object `name`.
    pub(crate) fn new(s: Arc<GcsBackend>, path: StoragePath, name: String) -> Self {
        let chunk = s.p.chunk_size;
        Self {
            s,
            path,
            name,
            session: None,
            uploaded: 0,
            chunks: Chunker::new(chunk),
            from_state: false,
            size: 0,
        }
    }

    /// Continues the upload closed at `path` (see the module docs), or starts a new one
    /// over committed empty content; anything else is refused.
    pub(crate) async fn resume(
        s: Arc<GcsBackend>,
        path: StoragePath,
        name: String,
    ) -> Result<Self> {
        let mut w = Self::new(s.clone(), path.clone(), name);
        let cx = Cx::new("writer", &path);
        if let Some(bytes) = s.get_bytes(cx, &state_name(&w.name)).await? {
            let nl = bytes
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(bytes.len());
            let state: State = serde_json::from_slice(&bytes[..nl]).map_err(|e| {
                StorageError::backend(DRIVER, "writer", &path, format!("bad upload state: {e}"))
            })?;
            let tail = bytes.slice((nl + 1).min(bytes.len())..);
            w.session = match state.session {
                Some(u) => Some(Url::parse(&u).map_err(|e| {
                    StorageError::backend(DRIVER, "writer", &path, format!("bad session: {e}"))
                })?),
                None => None,
            };
            w.uploaded = state.offset;
            w.size = state.offset + tail.len() as u64;
            w.chunks.extend(&tail);
            w.from_state = true;
            return Ok(w);
        }
        match s.head(cx, &w.name).await? {
            None => Err(StorageError::not_found(DRIVER, &path)),
            Some(o) if o.size == 0 => Ok(w),
            Some(o) => Err(StorageError::append_to_committed(DRIVER, &path, o.size)),
        }
    }

    /// Opens the resumable session.
    async fn open_session(&mut self) -> Result<Url> {
        if let Some(u) = &self.session {
            return Ok(u.clone());
        }
        let url = self.s.client.upload_url("resumable", &self.name);
        let call = Call::new("writer", &self.path, Method::POST, url)
            .header("content-type", "application/json; charset=UTF-8")
            .header("x-upload-content-type", "application/octet-stream")
            .body(Bytes::from_static(
                br#"{"contentType":"application/octet-stream"}"#,
            ));
        let resp = self.s.client.expect(call, &[200, 201]).await?;
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Url::parse(v).ok())
            .ok_or_else(|| {
                StorageError::backend(
                    DRIVER,
                    "writer",
                    &self.path,
                    "no session URI in the answer to a resumable upload".to_owned(),
                )
            })?;
        self.session = Some(loc.clone());
        Ok(loc)
    }

    /// Sends `data` (a multiple of 256 KiB) to the session as a non-final chunk.
    async fn send_chunk(&mut self, data: Bytes) -> Result<()> {
        let session = self.open_session().await?;
        let mut sent = 0usize;
        // GCS may keep less than it was sent (it says so in `Range`): send the rest again.
        for _ in 0..16 {
            let part = data.slice(sent..);
            let first = self.uploaded;
            let last = first + part.len() as u64 - 1;
            let call = Call::new("writer", &self.path, Method::PUT, session.clone())
                .header("content-range", format!("bytes {first}-{last}/*"))
                .header("content-type", "application/octet-stream")
                .body(part);
            let resp = self.s.client.send(call).await?;
            if resp.status().as_u16() != 308 {
                return Err(self.session_error(resp).await);
            }
            let held = persisted(&resp).unwrap_or(0);
            if held < first || held > last + 1 {
                return Err(self.fail(format!(
                    "the session holds {held} bytes after a chunk of {first}..={last}"
                )));
            }
            sent += (held - first) as usize;
            self.uploaded = held;
            if sent == data.len() {
                return Ok(());
            }
        }
        Err(self.fail("the session keeps refusing a chunk".into()))
    }

    /// An error about the session (404/410: it expired or was cancelled).
    async fn session_error(&self, resp: Response) -> StorageError {
        match resp.status().as_u16() {
            404 | 410 => self.fail(format!(
                "the upload session is gone (HTTP {}): it expired or was cancelled",
                resp.status().as_u16()
            )),
            _ => self.s.client.error("writer", &self.path, resp).await,
        }
    }

    /// What the writer's backend calls are for.
    fn cx(&self) -> Cx<'_> {
        Cx::new("writer", &self.path)
    }

    fn fail(&self, what: String) -> StorageError {
        StorageError::backend(DRIVER, "writer", &self.path, what)
    }

    async fn drop_state(&self) -> Result<()> {
        self.s
            .delete(self.cx(), &state_name(&self.name), false)
            .await
            .map(drop)
    }
}

/// Bytes a session holds, from the `Range: bytes=0-N` of a 308 answer (none: 0).
fn persisted(resp: &Response) -> Option<u64> {
    let v = resp.headers().get("range")?.to_str().ok()?;
    let end = v.strip_prefix("bytes=0-")?.trim().parse::<u64>().ok()?;
    Some(end + 1)
}

#[async_trait]
impl FileWriter for GcsWriter {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        while let Some(chunk) = self.chunks.next_part(&mut data) {
            self.send_chunk(chunk).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(&mut self) -> Result<()> {
        let aligned = self.chunks.len() - self.chunks.len() % CHUNK_ALIGN as usize;
        if aligned > 0 {
            let data = self.chunks.take_front(aligned);
            self.send_chunk(data).await?;
        }
        let state = State {
            v: 1,
            session: self.session.as_ref().map(|u| u.to_string()),
            offset: self.uploaded,
        };
        let mut body = serde_json::to_vec(&state).map_err(|e| self.fail(e.to_string()))?;
        body.push(b'\n');
        body.extend_from_slice(self.chunks.buffered());
        self.s
            .put(self.cx(), &state_name(&self.name), body.into())
            .await?;
        self.chunks.clear();
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        if let Some(session) = self.session.take() {
            let call = Call::new("writer", &self.path, Method::DELETE, session);
            let resp = self.s.client.send(call).await?;
            // 499: cancelled; 404/410: already gone.
            if !matches!(resp.status().as_u16(), 204 | 404 | 410 | 499) {
                return Err(self.s.client.error("writer", &self.path, resp).await);
            }
        }
        self.chunks.clear();
        self.drop_state().await
    }

    async fn commit(&mut self) -> Result<()> {
        let rest = self.chunks.take();
        match self.session.clone() {
            None => {
                // Nothing was sent yet: one simple upload; a stale state object from an
                // earlier, abandoned upload goes at the same time.
                let put = self.s.put(self.cx(), &self.name, rest);
                if self.from_state {
                    put.await?;
                } else {
                    let (put, _) = futures::join!(put, self.drop_state());
                    return put;
                }
            }
            Some(session) => {
                let total = self.uploaded + rest.len() as u64;
                let range = if rest.is_empty() {
                    format!("bytes */{total}")
                } else {
                    format!("bytes {}-{}/{total}", self.uploaded, total - 1)
                };
                let call = Call::new("writer", &self.path, Method::PUT, session)
                    .header("content-range", range)
                    .header("content-type", "application/octet-stream")
                    .body(rest);
                let resp = self.s.client.send(call).await?;
                if !matches!(resp.status().as_u16(), 200 | 201) {
                    return Err(self.session_error(resp).await);
                }
                self.session = None;
            }
        }
        self.drop_state().await
    }
}
