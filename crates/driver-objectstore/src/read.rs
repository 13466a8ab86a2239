//! Reads that survive a broken connection: [`resuming`] turns one ranged GET into a
//! stream that, when the response is cut mid-body, asks for the rest from the next byte
//! not yet delivered, pinned to the version the first response named, so the caller sees
//! one unbroken stream of one version of the object.
//!
//! # Why pinned
//!
//! A reconnect after a cut is a second GET. If the object was replaced in between, the
//! second GET would return the new object's bytes from the offset, and the caller would
//! get the old object's head glued to the new one's tail: a torn read nobody can detect
//! afterwards. Every resume therefore names the version the stream started with
//! (`If-Match` on the ETag, GCS's `ifGenerationMatch`), and a service that answers "not
//! that version any more" (HTTP 412), or no object at all, ends the stream with
//! [`StorageError::Changed`]. A backend whose answer names no version is never resumed:
//! its cut streams end with the transport's error, as before.
//!
//! # When it gives up
//!
//! Only retryable errors are resumed (a reset, a timeout, a truncated body); each resume
//! is one [`get`](crate::ObjectBackend::get), which carries the backend's own retries. A
//! stream that fails [`MAX_IDLE_RESUMES`] times in a row without delivering a byte in
//! between ends with the last error.

use driver_api::Operation;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use driver_api::{ByteStream, Result, StorageError, StoragePath};
use futures::stream::{self, StreamExt};

use crate::{Cx, Got, ObjectBackend};

/// Resumes in a row, without a byte delivered in between, before a read gives up.
pub const MAX_IDLE_RESUMES: u32 = 3;

/// One response's body as a backend hands it over.
pub struct Body {
    /// The bytes, from the requested offset on.
    pub stream: ByteStream,
    /// The version of the object the bytes are of (an ETag, a GCS generation); `None` if
    /// the service did not say, which turns resumption off for this stream.
    pub version: Option<String>,
    /// How many bytes the body holds (its `Content-Length`), if known: a body that ends
    /// early without an error is then caught and resumed too.
    pub len: Option<u64>,
}

impl Body {
    /// A body of unknown version and length (never resumed).
    pub fn new(stream: ByteStream) -> Self {
        Self {
            stream,
            version: None,
            len: None,
        }
    }

    /// The version the bytes are of.
    pub fn version(mut self, version: Option<String>) -> Self {
        self.version = version;
        self
    }

    /// The body's length.
    pub fn len(mut self, len: Option<u64>) -> Self {
        self.len = len;
        self
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("version", &self.version)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Where a resuming stream is.
struct State<B> {
    backend: Arc<B>,
    op: Operation,
    path: StoragePath,
    key: String,
    /// Offset of the next byte to deliver.
    pos: u64,
    /// Offset one past the last byte, when the first response said.
    end: Option<u64>,
    version: Option<String>,
    body: Option<ByteStream>,
    /// Resumes since the last byte delivered.
    idle: u32,
    done: bool,
}

/// The stream of `first` (the answer to a GET of `key` at `offset`), resumed after
/// retryable failures as the module docs say.
pub fn resuming<B: ObjectBackend>(
    backend: Arc<B>,
    cx: Cx<'_>,
    key: String,
    offset: u64,
    first: Body,
) -> ByteStream {
    let state = State {
        backend,
        op: cx.op,
        path: cx.path.clone(),
        key,
        pos: offset,
        end: first.len.map(|n| offset + n),
        version: first.version,
        body: Some(first.stream),
        idle: 0,
        done: false,
    };
    stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        match s.next().await {
            Some(Ok(b)) => Some((Ok(b), s)),
            Some(Err(e)) => {
                s.done = true;
                Some((Err(e), s))
            }
            None => None,
        }
    })
    .boxed()
}

impl<B: ObjectBackend> State<B> {
    /// The next chunk, resuming as needed; `None` at the end.
    async fn next(&mut self) -> Option<Result<Bytes>> {
        loop {
            let failure = match self.body.as_mut() {
                Some(body) => match body.next().await {
                    Some(Ok(b)) => {
                        self.pos += b.len() as u64;
                        self.idle = 0;
                        return Some(Ok(b));
                    }
                    Some(Err(e)) => e,
                    None if self.end.is_some_and(|end| self.pos < end) => StorageError::backend(
                        B::NAME,
                        self.op,
                        &self.path,
                        format!(
                            "the response body ended at byte {} of {}",
                            self.pos,
                            self.end.unwrap_or_default()
                        ),
                    )
                    .with_retryable(true),
                    None => return None,
                },
                None => return None,
            };
            self.body = None;
            if !failure.is_retryable() || self.version.is_none() || self.idle >= MAX_IDLE_RESUMES {
                return Some(Err(failure));
            }
            self.idle += 1;
            tracing::debug!(
                driver = B::NAME,
                path = %self.path,
                offset = self.pos,
                attempt = self.idle,
                error = %failure,
                "resuming a cut read"
            );
            // A short pause: the backend's own retries wait longer for a server that is
            // down; this one only keeps a flapping link from spinning.
            tokio::time::sleep(Duration::from_millis(20 << self.idle)).await;
            match self.reopen().await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// A new GET from `pos` of the same version: `Ok(false)` when there is nothing left.
    async fn reopen(&mut self) -> Result<bool> {
        let cx = Cx::new(self.op, &self.path);
        let got = self
            .backend
            .get(cx, &self.key, self.pos, self.version.as_deref())
            .await;
        let changed = || StorageError::changed(B::NAME, &self.path, self.pos);
        match got {
            Ok(Got::Stream(body)) => {
                if body.version.is_some() && body.version != self.version {
                    return Err(changed());
                }
                self.body = Some(body.stream);
                Ok(true)
            }
            // The cut came after the last byte.
            Ok(Got::PastEnd) if self.end.is_none_or(|end| self.pos >= end) => Ok(false),
            Ok(Got::PastEnd | Got::NotFound | Got::Changed) => Err(changed()),
            // The next failure decides: a retryable one resumes again (up to the cap).
            Err(e) if e.is_retryable() => {
                self.body = Some(stream::iter([Err(e)]).boxed());
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }
}

/// The whole object at `key`, read through a resuming stream; `None` if there is none.
pub async fn read_all<B: ObjectBackend>(
    backend: &Arc<B>,
    cx: Cx<'_>,
    key: &str,
) -> Result<Option<Bytes>> {
    let body = match backend.get(cx, key, 0, None).await? {
        Got::Stream(body) => body,
        Got::NotFound => return Ok(None),
        Got::PastEnd => return Ok(Some(Bytes::new())),
        Got::Changed => return Err(StorageError::changed(B::NAME, cx.path, 0)),
    };
    let len = body.len;
    let mut s = resuming(backend.clone(), cx, key.to_owned(), 0, body);
    let Some(first) = s.next().await.transpose()? else {
        return Ok(Some(Bytes::new()));
    };
    if len == Some(first.len() as u64) {
        return Ok(Some(first));
    }
    // (A length the server claims is a hint, not a promise: at most 64 MiB up front.)
    let cap = len.map_or(first.len() * 2, |n| n.min(64 << 20) as usize);
    let mut out = BytesMut::with_capacity(cap.max(first.len()));
    out.extend_from_slice(&first);
    while let Some(b) = s.next().await.transpose()? {
        out.extend_from_slice(&b);
    }
    Ok(Some(out.freeze()))
}
