//! The resumable writer, written once for services that upload an object in numbered
//! parts and publish it in one step (S3 and OSS multipart uploads): [`MultipartWriter`]
//! drives the protocol, a [`MultipartBackend`] supplies one request per step.
//!
//! # The protocol
//!
//! * `write` cuts the input into parts of [`part_size`](MultipartBackend::part_size)
//!   ([`Chunker`]); the first full part starts an upload
//!   ([`initiate`](MultipartBackend::initiate)); every full part is sent
//!   ([`put_part`](MultipartBackend::put_part)) with up to
//!   [`max_concurrency`](MultipartBackend::max_concurrency) parts in flight, so memory
//!   is at most (in flight + 1) parts. Part numbers are given in input order when a part
//!   is cut, so the order in which parts finish does not matter.
//! * `close` makes the upload resumable from any instance or process: what is buffered
//!   becomes a part as far as the service takes it as a non-final part
//!   ([`sendable_tail`](MultipartBackend::sendable_tail)); the rest is *parked* in a
//!   hidden object `<key>#upload` (hidden because `#` cannot appear in a path): one JSON
//!   line naming the upload and the parts stored, then the bytes.
//! * `writer(path, append = true)` reads the parked object (or, without one, asks
//!   [`find_upload`](MultipartBackend::find_upload)), takes the upload's parts (listed by
//!   the service, or as recorded where it cannot list them,
//!   [`LISTS_PARTS`](MultipartBackend::LISTS_PARTS)) and continues after the last part of
//!   the unbroken run from part 1 (a part that finished after an earlier one failed is
//!   sent again under its number, replacing it).
//! * `commit` waits for the parts in flight, sends the rest as the last part
//!   ([`put_last_part`](MultipartBackend::put_last_part)) and completes the upload (the
//!   parts in number order), or, when no part was ever full, writes the object with one
//!   `put`. A parked object goes after the commit succeeded; a fresh writer removes a
//!   stale one in parallel. A commit that fails leaves nothing behind: the upload is
//!   aborted and its parked object removed (the content at the key is untouched), and
//!   `cancel` may follow (it then has nothing to do).
//! * `cancel` aborts the upload and removes the parked object.
//!
//! A failed part fails the `write` (or `close`, `commit`) that waits for it and aborts
//! nothing: parts already stored stay, and so does the upload.

use driver_api::Operation;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use driver_api::chunks::Chunker;
use driver_api::{FileWriter, Result, StorageError, StoragePath};
use tokio::task::JoinSet;

use crate::{Cx, ObjectBackend};

/// A stored part of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its number, from 1.
    pub number: u32,
    /// Its size in bytes.
    pub size: u64,
    /// The service's tag for it, which completing the upload names.
    pub etag: String,
}

/// The requests of a multipart upload (see the module docs).
#[async_trait]
pub trait MultipartBackend: ObjectBackend {
    /// Bytes per part (the `chunksize` parameter).
    fn part_size(&self) -> usize;

    /// The smallest part the service accepts as a non-final part: a shorter tail is parked
    /// on `close` rather than sent.
    fn min_part_size(&self) -> usize;

    /// How much of a tail of `len` bytes `close` may send as a non-final part; the rest is
    /// parked. The default sends all of it once it reaches
    /// [`min_part_size`](Self::min_part_size); a service whose parts must be multiples of
    /// a unit (GCS: 256 KiB) sends the largest multiple.
    fn sendable_tail(&self, len: usize) -> usize {
        if len >= self.min_part_size() {
            len
        } else {
            0
        }
    }

    /// Whether [`list_parts`](Self::list_parts) answers for an upload. Where the service
    /// cannot say (an upload session, segments in a listing that may lag), a resumed
    /// writer takes the parts recorded in the parked object instead.
    const LISTS_PARTS: bool = true;

    /// Whether [`find_upload`](Self::find_upload) finds every upload in progress for a key
    /// (the latest first) and [`abort`](Self::abort) ends one whatever its parts, so that
    /// the core may *sweep* a key: after an `initiate` whose answer was lost (a reset, a
    /// timeout), the service may have started an upload nobody will complete; a fresh
    /// writer discards uncommitted uploads at its path anyway, so the core aborts every
    /// upload at the key and initiates again, leaving no orphan. Without it, an
    /// `initiate` is tried once (S3 and OSS have it; a backend must not retry `initiate`
    /// itself then).
    const SWEEPS: bool = false;

    /// Whether the core records a started upload at once, in an *open* parked object (the
    /// upload's id, no parts, not resumable), for a service that cannot list its uploads
    /// (GCS sessions, Swift segments): a writer killed before `close` then leaves a state
    /// that `uploads` finds (as an orphan) and `purge_upload` ends through
    /// [`ObjectBackend::abort_upload`]. One more request per multipart upload (a small
    /// PUT; commit removes the object in the same round trip as before).
    const PARK_AT_START: bool = false;

    /// Parts a writer keeps in flight (the `maxconcurrency` parameter).
    fn max_concurrency(&self) -> usize {
        1
    }

    /// Starts an upload at `key`: its id.
    async fn initiate(&self, cx: Cx<'_>, key: &str) -> Result<String>;

    /// Stores part `number` of upload `upload`, which starts `offset` bytes into the
    /// object.
    async fn put_part(
        &self,
        cx: Cx<'_>,
        key: &str,
        upload: &str,
        number: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<Part>;

    /// Stores the last part at commit, after every other part is stored; `data` may be
    /// empty. The default sends it as any part (nothing when it is empty and other parts
    /// exist); a service that must be told the upload ends with this part (GCS: the
    /// object's total size) overrides it. `None`: no part was stored.
    async fn put_last_part(
        &self,
        cx: Cx<'_>,
        key: &str,
        upload: &str,
        number: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<Option<Part>> {
        if data.is_empty() && number > 1 {
            return Ok(None);
        }
        self.put_part(cx, key, upload, number, offset, data)
            .await
            .map(Some)
    }

    /// Publishes the upload as the object at `key`, from `parts` in number order.
    async fn complete(&self, cx: Cx<'_>, key: &str, upload: &str, parts: &[Part]) -> Result<()>;

    /// Discards the upload and its parts (`parts`: those the writer knows of).
    async fn abort(&self, cx: Cx<'_>, key: &str, upload: &str, parts: &[Part]) -> Result<()>;

    /// The parts the upload holds (asked only where [`LISTS_PARTS`](Self::LISTS_PARTS)).
    async fn list_parts(&self, _cx: Cx<'_>, _key: &str, _upload: &str) -> Result<Vec<Part>> {
        Ok(Vec::new())
    }

    /// An upload in progress at exactly `key` that has no parked object (one closed by a
    /// writer that never needed to park), if the service can list them.
    async fn find_upload(&self, _cx: Cx<'_>, _key: &str) -> Result<Option<String>> {
        Ok(None)
    }
}

/// The name of the parked object of `key`.
pub fn park_key(key: &str) -> String {
    format!("{key}#upload")
}

/// The first line of a parked object; the tail follows it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Parked {
    /// Format version.
    v: u32,
    /// The upload, if one was started.
    upload: Option<String>,
    /// The parts stored when it was parked, as `[number, size, etag]`.
    #[serde(default)]
    parts: Vec<(u32, u64, String)>,
    /// Written when the upload started ([`MultipartBackend::PARK_AT_START`]) by a writer
    /// that has not closed: not resumable, only a record of what to abort.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    open: bool,
}

/// The parked object: the JSON line of [`Parked`], a newline, the tail.
fn park_body(upload: Option<&str>, parts: &[Part], tail: &[u8]) -> Bytes {
    park_line(
        Parked {
            v: 1,
            upload: upload.map(str::to_owned),
            parts: parts
                .iter()
                .map(|p| (p.number, p.size, p.etag.clone()))
                .collect(),
            open: false,
        },
        tail,
    )
}

/// The open parked object of upload `upload`, just started (see
/// [`MultipartBackend::PARK_AT_START`]).
fn open_park_body(upload: &str) -> Bytes {
    park_line(
        Parked {
            v: 1,
            upload: Some(upload.to_owned()),
            parts: Vec::new(),
            open: true,
        },
        &[],
    )
}

fn park_line(head: Parked, tail: &[u8]) -> Bytes {
    // Serialising plain strings and numbers cannot fail.
    let line = serde_json::to_vec(&head).unwrap_or_default();
    let mut b = BytesMut::with_capacity(line.len() + 1 + tail.len());
    b.extend_from_slice(&line);
    b.extend_from_slice(b"\n");
    b.extend_from_slice(tail);
    b.freeze()
}

/// The state of a parked object: its header and the tail.
fn parse_park(name: &'static str, path: &StoragePath, body: Bytes) -> Result<(Parked, Bytes)> {
    let bad = |why: String| {
        StorageError::backend(
            name,
            Operation::Writer,
            path,
            format!("unreadable upload state: {why}"),
        )
    };
    let nl = body
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header line".into()))?;
    let head: Parked = serde_json::from_slice(&body[..nl]).map_err(|e| bad(e.to_string()))?;
    if head.v != 1 {
        return Err(bad(format!("version {}", head.v)));
    }
    Ok((head, body.slice(nl + 1..)))
}

impl Parked {
    fn parts(&self) -> Vec<Part> {
        self.parts
            .iter()
            .map(|(number, size, etag)| Part {
                number: *number,
                size: *size,
                etag: etag.clone(),
            })
            .collect()
    }
}

/// What a parked object records, for a backend that must clean up after an upload it
/// meets elsewhere (Swift removes the segments of uploads parked under a deleted tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedUpload {
    /// The upload, if one was started.
    pub upload: Option<String>,
    /// The parts recorded when it was parked.
    pub parts: Vec<Part>,
    /// Recorded when the upload started, by a writer that never closed (it may still be
    /// running, or was killed): see [`MultipartBackend::PARK_AT_START`].
    pub open: bool,
}

impl ParkedUpload {
    /// Reads the body of a parked object (`<key>#upload`) of driver `name` at `path`.
    pub fn parse(name: &'static str, path: &StoragePath, body: Bytes) -> Result<Self> {
        let (head, _) = parse_park(name, path, body)?;
        Ok(Self {
            parts: head.parts(),
            upload: head.upload,
            open: head.open,
        })
    }
}

/// The resumable writer over a [`MultipartBackend`] (see the module docs).
pub struct MultipartWriter<B: MultipartBackend> {
    b: Arc<B>,
    path: StoragePath,
    key: String,
    upload: Option<Arc<str>>,
    /// Parts stored (in any order until commit sorts them).
    parts: Vec<Part>,
    next_number: u32,
    /// Bytes in parts stored or in flight: where the next part starts.
    sent: u64,
    in_flight: JoinSet<Result<Part>>,
    chunks: Chunker,
    /// Resumed from a parked object: commit removes it only after succeeding.
    from_parked: bool,
    /// Bytes written in all; what `size` reports.
    size: u64,
}

impl<B: MultipartBackend> MultipartWriter<B> {
    /// A writer for `path` at `key`: fresh, or resuming (`append`) the upload in progress.
    pub async fn open(
        b: Arc<B>,
        path: &StoragePath,
        key: String,
        append: bool,
    ) -> Result<Box<dyn FileWriter>> {
        let w = Self::new(b, path.clone(), key);
        Ok(Box::new(if append { w.resume().await? } else { w }))
    }

    fn new(b: Arc<B>, path: StoragePath, key: String) -> Self {
        let part = b.part_size();
        Self {
            b,
            path,
            key,
            upload: None,
            parts: Vec::new(),
            next_number: 1,
            sent: 0,
            in_flight: JoinSet::new(),
            chunks: Chunker::new(part),
            from_parked: false,
            size: 0,
        }
    }

    fn cx(&self, op: Operation) -> Cx<'_> {
        Cx::new(op, &self.path)
    }

    /// Continues the upload in progress (see the module docs), or starts over committed
    /// empty content; anything else is refused.
    async fn resume(mut self) -> Result<Self> {
        let b = self.b.clone();
        let cx = Cx::new(Operation::Writer, &self.path);
        let parked = match crate::read::read_all(&b, cx, &park_key(&self.key)).await? {
            Some(body) => Some(parse_park(B::NAME, &self.path, body)?),
            None => None,
        };
        let (upload, recorded, tail) = match parked {
            // An open state is not resumable (its writer never said what it stored): the
            // path is as if it had none, and a commit here removes it.
            Some((head, tail)) if !head.open => {
                self.from_parked = true;
                let parts = head.parts();
                (head.upload, parts, Some(tail))
            }
            _ => (b.find_upload(cx, &self.key).await?, Vec::new(), None),
        };
        if upload.is_none() && tail.is_none() {
            // Committed content: only an empty object may be appended to (replaced).
            return match b.head(cx, &self.key).await? {
                None => Err(StorageError::not_found(B::NAME, &self.path)),
                Some(o) if o.size == 0 => Ok(self),
                Some(o) => Err(StorageError::append_to_committed(
                    B::NAME,
                    &self.path,
                    o.size,
                )),
            };
        }
        if let Some(id) = upload {
            let mut parts = if B::LISTS_PARTS {
                b.list_parts(cx, &self.key, &id).await?
            } else {
                recorded
            };
            parts.sort_by_key(|p| p.number);
            // The unbroken run from part 1: what follows a gap is sent again.
            let run = parts
                .iter()
                .enumerate()
                .take_while(|(i, p)| p.number as usize == i + 1)
                .count();
            parts.truncate(run);
            self.size = parts.iter().map(|p| p.size).sum();
            self.sent = self.size;
            self.next_number = run as u32 + 1;
            self.parts = parts;
            self.upload = Some(id.into());
        }
        if let Some(tail) = tail {
            self.size += tail.len() as u64;
            self.chunks.extend(&tail);
        }
        Ok(self)
    }

    async fn ensure_upload(&mut self) -> Result<Arc<str>> {
        if let Some(id) = &self.upload {
            return Ok(id.clone());
        }
        let cx = Cx::new(Operation::Write, &self.path);
        let mut tries = 0;
        let id: Arc<str> = loop {
            match self.b.initiate(cx, &self.key).await {
                Ok(id) => break id.into(),
                Err(e) if B::SWEEPS && e.is_retryable() && tries < 3 => {
                    tries += 1;
                    tracing::debug!(driver = B::NAME, path = %self.path, error = %e, "initiate failed: sweeping the key before trying again");
                    sweep(&*self.b, cx, &self.key).await?;
                }
                Err(e) => return Err(e),
            }
        };
        if B::PARK_AT_START {
            let park = park_key(&self.key);
            if let Err(e) = self.b.put(cx, &park, open_park_body(&id)).await {
                // Unrecorded, the upload could never be found again: it goes now.
                if let Err(e) = self.b.abort(cx, &self.key, &id, &[]).await {
                    tracing::warn!(driver = B::NAME, path = %self.path, error = %e, "aborting an upload that could not be recorded failed");
                }
                return Err(e);
            }
        }
        self.upload = Some(id.clone());
        Ok(id)
    }

    /// Sends `data` as the next part, once fewer than `max_concurrency` are in flight.
    async fn send_part(&mut self, data: Bytes) -> Result<()> {
        let upload = self.ensure_upload().await?;
        while self.in_flight.len() >= self.b.max_concurrency().max(1) {
            self.reap().await?;
        }
        let (number, offset) = (self.next_number, self.sent);
        self.next_number += 1;
        self.sent += data.len() as u64;
        let (b, path, key) = (self.b.clone(), self.path.clone(), self.key.clone());
        self.in_flight.spawn(async move {
            b.put_part(
                Cx::new(Operation::Write, &path),
                &key,
                &upload,
                number,
                offset,
                data,
            )
            .await
        });
        Ok(())
    }

    /// Waits for one part in flight.
    async fn reap(&mut self) -> Result<()> {
        match self.in_flight.join_next().await {
            None => Ok(()),
            Some(Ok(Ok(part))) => {
                self.parts.push(part);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(StorageError::backend(
                B::NAME,
                Operation::Write,
                &self.path,
                e,
            )),
        }
    }

    /// Waits for every part in flight.
    async fn drain(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.reap().await?;
        }
        Ok(())
    }

    async fn remove_parked(&self) -> Result<()> {
        self.b
            .delete(self.cx(Operation::Writer), &park_key(&self.key), false)
            .await
            .map(drop)
    }

    async fn publish(&mut self) -> Result<()> {
        let Some(id) = self.upload.clone() else {
            // Never reached a part: one put.
            let body = self.chunks.take();
            return self
                .b
                .put(self.cx(Operation::Commit), &self.key, body)
                .await;
        };
        let res = self.complete(&id).await;
        if res.is_err() {
            // Nothing of a failed commit stays behind: the upload goes (the service's
            // copy of the parts with it), and so does a parked object naming it. The
            // content at the key is untouched.
            self.in_flight.abort_all();
            while self.in_flight.join_next().await.is_some() {}
            let cx = Cx::new(Operation::Commit, &self.path);
            if let Err(e) = self.b.abort(cx, &self.key, &id, &self.parts).await {
                tracing::warn!(driver = B::NAME, path = %self.path, error = %e, "aborting the upload after a failed commit failed");
            }
            self.upload = None;
            self.parts.clear();
            if self.from_parked {
                if let Err(e) = self.remove_parked().await {
                    tracing::warn!(driver = B::NAME, path = %self.path, error = %e, "removing the parked upload after a failed commit failed");
                }
            }
        }
        res
    }

    /// Sends the last part and completes upload `id`.
    async fn complete(&mut self, id: &str) -> Result<()> {
        self.drain().await?;
        let last = self.chunks.take();
        let (number, offset) = (self.next_number, self.sent);
        let cx = Cx::new(Operation::Commit, &self.path);
        if let Some(part) = self
            .b
            .put_last_part(cx, &self.key, id, number, offset, last)
            .await?
        {
            self.next_number += 1;
            self.sent += part.size;
            self.parts.push(part);
        }
        self.parts.sort_by_key(|p| p.number);
        self.b
            .complete(self.cx(Operation::Commit), &self.key, id, &self.parts)
            .await
    }
}

/// Aborts every upload in progress at `key` (see [`MultipartBackend::SWEEPS`]); at most
/// 100, so a service that keeps answering with the same upload cannot spin.
async fn sweep<B: MultipartBackend>(b: &B, cx: Cx<'_>, key: &str) -> Result<()> {
    for _ in 0..100 {
        let Some(id) = b.find_upload(cx, key).await? else {
            return Ok(());
        };
        b.abort(cx, key, &id, &[]).await?;
    }
    Ok(())
}

#[async_trait]
impl<B: MultipartBackend> FileWriter for MultipartWriter<B> {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        while let Some(part) = self.chunks.next_part(&mut data) {
            self.send_part(part).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(&mut self) -> Result<()> {
        let n = self
            .b
            .sendable_tail(self.chunks.len())
            .min(self.chunks.len());
        if n > 0 {
            let part = self.chunks.take_front(n);
            self.send_part(part).await?;
        }
        self.drain().await?;
        self.parts.sort_by_key(|p| p.number);
        let body = park_body(self.upload.as_deref(), &self.parts, self.chunks.buffered());
        self.b
            .put(self.cx(Operation::Close), &park_key(&self.key), body)
            .await?;
        self.chunks.clear();
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        self.chunks.clear();
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        if let Some(id) = self.upload.take() {
            let cx = Cx::new(Operation::Cancel, &self.path);
            if let Err(e) = self.b.abort(cx, &self.key, &id, &self.parts).await {
                tracing::warn!(driver = B::NAME, path = %self.path, error = %e, "aborting a cancelled upload failed");
            }
        }
        self.remove_parked().await
    }

    async fn commit(&mut self) -> Result<()> {
        if self.from_parked {
            self.publish().await?;
            self.remove_parked().await
        } else {
            // A stale parked object goes in parallel: one round trip, not two.
            let b = self.b.clone();
            let (cx_path, park) = (self.path.clone(), park_key(&self.key));
            let stale = async move {
                b.delete(Cx::new(Operation::Commit, &cx_path), &park, false)
                    .await
            };
            let (res, stale) = futures::future::join(self.publish(), stale).await;
            res.and(stale.map(drop))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parked_state_round_trips() {
        let p = StoragePath::new("/a").unwrap();
        let parts = [Part {
            number: 1,
            size: 5,
            etag: "\"e\"".into(),
        }];
        for (id, tail) in [(Some("ab\"c\\d"), &b"xyz\n1"[..]), (None, &b""[..])] {
            let body = park_body(id, &parts, tail);
            let (got, rest) = parse_park("t", &p, body).unwrap();
            assert_eq!(got.upload.as_deref(), id);
            assert_eq!(got.parts(), parts);
            assert!(!got.open);
            assert_eq!(&rest[..], tail);
        }
        let open = ParkedUpload::parse("t", &p, open_park_body("s-1")).unwrap();
        assert_eq!(open.upload.as_deref(), Some("s-1"));
        assert!(open.open && open.parts.is_empty());
        // A state written before `open` existed reads as closed.
        let old = Bytes::from_static(b"{\"v\":1,\"upload\":\"u\",\"parts\":[]}\n");
        assert!(!ParkedUpload::parse("t", &p, old).unwrap().open);
        assert!(parse_park("t", &p, Bytes::from_static(b"garbage")).is_err());
    }
}
