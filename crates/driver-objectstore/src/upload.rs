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
//!   becomes a part if it may be a non-final part
//!   ([`min_part_size`](MultipartBackend::min_part_size)); the rest is *parked* in a hidden
//!   object `<key>#upload` (hidden because `#` cannot appear in a path): one JSON line
//!   naming the upload, then the bytes.
//! * `writer(path, append = true)` reads the parked object (or, without one, asks
//!   [`find_upload`](MultipartBackend::find_upload)), lists the upload's parts and
//!   continues after the last part of the unbroken run from part 1 (a part that finished
//!   after an earlier one failed is sent again under its number, replacing it).
//! * `commit` sends the rest as the last part and completes the upload (the parts in
//!   number order), or, when no part was ever full, writes the object with one `put`. A
//!   parked object goes only after the commit succeeded, so a failed commit of a resumed
//!   upload stays resumable; a fresh writer removes a stale one in parallel.
//! * `cancel` aborts the upload and removes the parked object.
//!
//! A failed part fails the `write` (or `close`, `commit`) that waits for it and aborts
//! nothing: parts already stored stay, and so does the upload.

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

    /// Parts a writer keeps in flight (the `maxconcurrency` parameter).
    fn max_concurrency(&self) -> usize {
        1
    }

    /// Starts an upload at `key`: its id.
    async fn initiate(&self, cx: Cx<'_>, key: &str) -> Result<String>;

    /// Stores part `number` of upload `upload`.
    async fn put_part(
        &self,
        cx: Cx<'_>,
        key: &str,
        upload: &str,
        number: u32,
        data: Bytes,
    ) -> Result<Part>;

    /// Publishes the upload as the object at `key`, from `parts` in number order.
    async fn complete(&self, cx: Cx<'_>, key: &str, upload: &str, parts: &[Part]) -> Result<()>;

    /// Discards the upload and its parts.
    async fn abort(&self, cx: Cx<'_>, key: &str, upload: &str) -> Result<()>;

    /// The parts the upload holds.
    async fn list_parts(&self, cx: Cx<'_>, key: &str, upload: &str) -> Result<Vec<Part>>;

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

/// The parked object: `{"v":1,"upload":"<id>"}` (or `null`), a newline, the tail.
fn park_body(upload: Option<&str>, tail: &[u8]) -> Bytes {
    let id = match upload {
        Some(id) => format!("\"{}\"", id.replace('\\', "\\\\").replace('"', "\\\"")),
        None => "null".to_owned(),
    };
    let mut b = BytesMut::with_capacity(32 + id.len() + tail.len());
    b.extend_from_slice(format!("{{\"v\":1,\"upload\":{id}}}\n").as_bytes());
    b.extend_from_slice(tail);
    b.freeze()
}

/// The upload and tail of a parked object.
fn parse_park(
    name: &'static str,
    path: &StoragePath,
    body: Bytes,
) -> Result<(Option<String>, Bytes)> {
    let bad = |why: &str| {
        StorageError::backend(
            name,
            "writer",
            path,
            format!("unreadable upload state: {why}"),
        )
    };
    let nl = body
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header line"))?;
    let header = std::str::from_utf8(&body[..nl]).map_err(|_| bad("header is not UTF-8"))?;
    let rest = header
        .strip_prefix("{\"v\":1,\"upload\":")
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| bad("unknown header"))?;
    let upload = match rest {
        "null" => None,
        quoted => Some(
            quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .ok_or_else(|| bad("upload id"))?
                .replace("\\\"", "\"")
                .replace("\\\\", "\\"),
        ),
    };
    Ok((upload, body.slice(nl + 1..)))
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
            in_flight: JoinSet::new(),
            chunks: Chunker::new(part),
            from_parked: false,
            size: 0,
        }
    }

    fn cx(&self, op: &'static str) -> Cx<'_> {
        Cx::new(op, &self.path)
    }

    /// Continues the upload in progress (see the module docs), or starts over committed
    /// empty content; anything else is refused.
    async fn resume(mut self) -> Result<Self> {
        let b = self.b.clone();
        let cx = Cx::new("writer", &self.path);
        let (upload, tail) = match b.get_bytes(cx, &park_key(&self.key)).await? {
            Some(body) => {
                self.from_parked = true;
                let (upload, tail) = parse_park(B::NAME, &self.path, body)?;
                (upload, Some(tail))
            }
            None => (b.find_upload(cx, &self.key).await?, None),
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
            let mut parts = b.list_parts(cx, &self.key, &id).await?;
            parts.sort_by_key(|p| p.number);
            // The unbroken run from part 1: what follows a gap is sent again.
            let run = parts
                .iter()
                .enumerate()
                .take_while(|(i, p)| p.number as usize == i + 1)
                .count();
            parts.truncate(run);
            self.size = parts.iter().map(|p| p.size).sum();
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
        let id: Arc<str> = self.b.initiate(self.cx("write"), &self.key).await?.into();
        self.upload = Some(id.clone());
        Ok(id)
    }

    /// Sends `data` as the next part, once fewer than `max_concurrency` are in flight.
    async fn send_part(&mut self, data: Bytes) -> Result<()> {
        let upload = self.ensure_upload().await?;
        while self.in_flight.len() >= self.b.max_concurrency().max(1) {
            self.reap().await?;
        }
        let number = self.next_number;
        self.next_number += 1;
        let (b, path, key) = (self.b.clone(), self.path.clone(), self.key.clone());
        self.in_flight.spawn(async move {
            b.put_part(Cx::new("write", &path), &key, &upload, number, data)
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
            Some(Err(e)) => Err(StorageError::backend(B::NAME, "write", &self.path, e)),
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
            .delete(self.cx("writer"), &park_key(&self.key), false)
            .await
            .map(drop)
    }

    async fn publish(&mut self) -> Result<()> {
        let Some(id) = self.upload.clone() else {
            // Never reached a part: one put.
            let body = self.chunks.take();
            return self.b.put(self.cx("commit"), &self.key, body).await;
        };
        if !self.chunks.is_empty() || self.parts.is_empty() && self.in_flight.is_empty() {
            let last = self.chunks.take();
            self.send_part(last).await?;
        }
        self.drain().await?;
        self.parts.sort_by_key(|p| p.number);
        let res = self
            .b
            .complete(self.cx("commit"), &self.key, &id, &self.parts)
            .await;
        if res.is_err() {
            if let Err(e) = self.b.abort(self.cx("commit"), &self.key, &id).await {
                tracing::warn!(driver = B::NAME, path = %self.path, error = %e, "aborting the upload after a failed commit failed");
            }
        }
        res
    }
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
        if self.chunks.len() >= self.b.min_part_size() {
            let part = self.chunks.take();
            self.send_part(part).await?;
        }
        self.drain().await?;
        let body = park_body(self.upload.as_deref(), self.chunks.buffered());
        self.b
            .put(self.cx("close"), &park_key(&self.key), body)
            .await?;
        self.chunks.clear();
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        self.chunks.clear();
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        if let Some(id) = self.upload.take() {
            if let Err(e) = self.b.abort(self.cx("cancel"), &self.key, &id).await {
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
            let stale = async move { b.delete(Cx::new("commit", &cx_path), &park, false).await };
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
        for (id, tail) in [(Some("ab\"c\\d"), &b"xyz\n1"[..]), (None, &b""[..])] {
            let body = park_body(id, tail);
            let (got, rest) = parse_park("t", &p, body).unwrap();
            assert_eq!(got.as_deref(), id);
            assert_eq!(&rest[..], tail);
        }
        assert!(parse_park("t", &p, Bytes::from_static(b"garbage")).is_err());
    }
}
