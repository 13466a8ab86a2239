//! Resumable uploads as segments joined by a Static Large Object (SLO) manifest.
//!
//! A writer holds at most one segment (`chunksize`) in memory. Each full segment is
//! uploaded to `<container>_segments` as `<prefix>/#segments/<upload id>/<n>` (the `#`
//! keeps segment names apart from every valid path); a writer that never fills a
//! segment is written with one plain PUT at commit.
//!
//! `close` uploads what is buffered as a (shorter) segment and records the upload in a
//! state object `<name>#upload` in the segments container (JSON: upload id and the
//! segments with their sizes and ETags). `writer(path, true)` reads it, from this process
//! or another, so `size()` is the bytes already uploaded and the next segment follows.
//!
//! `commit` uploads the rest and PUTs the manifest (`?multipart-manifest=put`); Swift
//! checks every segment's size and ETag, so a manifest never names a torn segment. The
//! content it replaces loses its segments (if it was a large object), and the state
//! object goes. `cancel` deletes the segments and the state. A fresh writer
//! (`append = false`) discards an earlier uncommitted upload at the same path first.
//!
//! A manifest names at most 1,000 segments (Swift's default `max_manifest_segments`):
//! one object is at most 1,000 × `chunksize` (20 GB by default).

use std::sync::Arc;

use bytes::Bytes;
use driver_api::chunks::Chunker;
use driver_api::{async_trait, FileWriter, Result, StorageError, StoragePath};
use driver_http::Call;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use driver_objectstore::{Cx, ListRequest};
use futures::{StreamExt, TryStreamExt};

use crate::{Put, SwiftBackend, DRIVER};

/// What ends the name of a state object.
pub(crate) const STATE_SUFFIX: &str = "#upload";
/// Swift's default `max_manifest_segments`.
const MAX_SEGMENTS: usize = 1000;
/// Uploads discarded at once by [`discard_uploads`].
const DISCARD_CONCURRENCY: usize = 16;

/// The name of the state object of `name`.
pub(crate) fn state_name(name: &str) -> String {
    format!("{name}{STATE_SUFFIX}")
}

/// One uploaded segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Segment {
    /// Object name in the segments container.
    name: String,
    size: u64,
    etag: String,
}

/// The content of a state object.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// Format version.
    v: u32,
    id: String,
    segments: Vec<Segment>,
}

/// A random upload id (128 bits from the std hasher's random keys, the time and a
/// counter).
fn upload_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut out = String::new();
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(t);
        h.write_u64(i);
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

async fn read_state(
    s: &SwiftBackend,
    op: &'static str,
    path: &StoragePath,
    state: &str,
) -> Result<Option<State>> {
    let Some(bytes) = s.get_object(op, path, &s.seg_container, state).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        StorageError::backend(DRIVER, op, path, format!("bad upload state {state:?}: {e}"))
    })
}

/// Deletes the uncommitted upload recorded in state object `state`, if any: its
/// segments, then the state.
pub(crate) async fn discard_state(
    s: &SwiftBackend,
    op: &'static str,
    path: &StoragePath,
    state: &str,
) -> Result<()> {
    let Some(st) = read_state(s, op, path, state).await? else {
        return Ok(());
    };
    let c = &s.seg_container;
    let mut names: Vec<String> = st
        .segments
        .iter()
        .map(|g| format!("/{c}/{}", g.name))
        .collect();
    names.push(format!("/{c}/{state}"));
    s.bulk_delete(op, path, names).await
}

/// Discards the uncommitted uploads of `key` and of every name under it (after a tree
/// delete): the state object of `key`, then those the segments container lists under
/// `<key>/`, a page at a time, each with its segments.
///
/// (A paging loop of its own: upload state lives in the segments container, which the
/// object-store core does not list. It goes when the writer protocol moves into the
/// core.)
pub(crate) async fn discard_uploads(s: &SwiftBackend, cx: Cx<'_>, key: &str) -> Result<()> {
    discard_state(s, cx.op, cx.path, &state_name(key)).await?;
    let prefix = s.keys.dir_prefix(cx.path);
    let mut marker: Option<String> = None;
    loop {
        let req = ListRequest {
            prefix: &prefix,
            start_after: marker.as_deref(),
            ..ListRequest::default()
        };
        let page = s.list_container(cx, &s.seg_container, &req).await?;
        let states: Vec<&str> = page
            .objects
            .iter()
            .map(|o| o.key.as_str())
            .filter(|n| n.ends_with(STATE_SUFFIX))
            .collect();
        futures::stream::iter(0..states.len())
            .map(|i| discard_state(s, cx.op, cx.path, states[i]))
            .buffer_unordered(DISCARD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        // Names after the last one listed: discarding what sorts before it skips
        // nothing.
        match page.next {
            Some(last) => marker = Some(last),
            None => return Ok(()),
        }
    }
}

pub(crate) struct SwiftWriter {
    s: Arc<SwiftBackend>,
    path: StoragePath,
    name: String,
    id: String,
    segments: Vec<Segment>,
    chunks: Chunker,
    /// A state object exists for this upload (resumed, or closed before).
    has_state: bool,
    /// Bytes written in all; what `size` reports.
    size: u64,
}

impl SwiftWriter {
    fn new(s: Arc<SwiftBackend>, path: StoragePath, name: String) -> Self {
        let chunk = s.p.chunk_size;
        Self {
            s,
            path,
            name,
            id: upload_id(),
            segments: Vec::new(),
            chunks: Chunker::new(chunk),
            has_state: false,
            size: 0,
        }
    }

    /// A new upload; an uncommitted one at the same path is discarded.
    pub(crate) async fn fresh(
        s: Arc<SwiftBackend>,
        path: StoragePath,
        name: String,
    ) -> Result<Self> {
        let w = Self::new(s, path, name);
        discard_state(&w.s, "writer", &w.path, &state_name(&w.name)).await?;
        Ok(w)
    }

    /// Continues the upload closed at `path`, or starts one over committed empty
    /// content; anything else is refused.
    pub(crate) async fn resume(
        s: Arc<SwiftBackend>,
        path: StoragePath,
        name: String,
    ) -> Result<Self> {
        let mut w = Self::new(s.clone(), path.clone(), name);
        if let Some(st) = read_state(&s, "writer", &path, &state_name(&w.name)).await? {
            w.id = st.id;
            w.size = st.segments.iter().map(|g| g.size).sum();
            w.segments = st.segments;
            w.has_state = true;
            return Ok(w);
        }
        match s
            .head_object("writer", &path, &s.p.container, &w.name)
            .await?
        {
            None => Err(StorageError::not_found(DRIVER, &path)),
            Some(h) if crate::content_length(&h) == 0 => Ok(w),
            Some(h) => Err(StorageError::append_to_committed(
                DRIVER,
                &path,
                crate::content_length(&h),
            )),
        }
    }

    fn fail(&self, what: String) -> StorageError {
        StorageError::backend(DRIVER, "writer", &self.path, what)
    }

    /// Uploads what is buffered as the next segment.
    async fn flush_segment(&mut self) -> Result<()> {
        if self.chunks.is_empty() {
            return Ok(());
        }
        let data = self.chunks.take();
        self.upload_segment(data).await
    }

    /// Uploads `data` as the next segment.
    async fn upload_segment(&mut self, data: Bytes) -> Result<()> {
        if self.segments.len() >= MAX_SEGMENTS {
            return Err(self.fail(format!(
                "more than {MAX_SEGMENTS} segments: raise chunksize for objects this large"
            )));
        }
        let root = self.s.keys.dir_prefix(&StoragePath::root());
        let name = format!("{root}#segments/{}/{:08}", self.id, self.segments.len() + 1);
        let size = data.len() as u64;
        let put = self
            .s
            .put_object("writer", &self.path, &self.s.seg_container, &name, data)
            .await?;
        let Put::Stored(etag) = put else {
            // Segment names are this upload's own: another writer resumed it.
            return Err(self.fail(format!("segment {name} was written by another writer")));
        };
        self.segments.push(Segment { name, size, etag });
        Ok(())
    }

    async fn write_state(&mut self) -> Result<()> {
        let st = State {
            v: 1,
            id: self.id.clone(),
            segments: self.segments.clone(),
        };
        let body = serde_json::to_vec(&st).map_err(|e| self.fail(e.to_string()))?;
        self.s
            .put_object(
                "writer",
                &self.path,
                &self.s.seg_container,
                &state_name(&self.name),
                body.into(),
            )
            .await?;
        self.has_state = true;
        Ok(())
    }

    async fn put_manifest(&self) -> Result<Put> {
        let c = &self.s.seg_container;
        let manifest: Vec<serde_json::Value> = self
            .segments
            .iter()
            .map(|g| {
                serde_json::json!({
                    "path": format!("/{c}/{}", g.name),
                    "etag": g.etag,
                    "size_bytes": g.size,
                })
            })
            .collect();
        let body = serde_json::to_vec(&manifest).map_err(|e| self.fail(e.to_string()))?;
        let url = self
            .s
            .client
            .url(
                &[&self.s.p.container, &self.name],
                &[("multipart-manifest", "put")],
            )
            .await?;
        let call = Call::new("writer", &self.path, Method::PUT, url)
            .header("content-type", "application/octet-stream")
            .body(Bytes::from(body));
        self.s.send_write(call).await
    }

    /// Deletes this upload's segments and state.
    async fn discard(&mut self) -> Result<()> {
        let c = &self.s.seg_container;
        let mut names: Vec<String> = self
            .segments
            .iter()
            .map(|g| format!("/{c}/{}", g.name))
            .collect();
        if self.has_state {
            names.push(format!("/{c}/{}", state_name(&self.name)));
        }
        self.segments.clear();
        self.s.bulk_delete("writer", &self.path, names).await?;
        self.has_state = false;
        Ok(())
    }
}

#[async_trait]
impl FileWriter for SwiftWriter {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        while let Some(segment) = self.chunks.next_part(&mut data) {
            self.upload_segment(segment).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(&mut self) -> Result<()> {
        self.flush_segment().await?;
        self.write_state().await?;
        self.chunks.clear();
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        self.chunks.clear();
        self.discard().await
    }

    async fn commit(&mut self) -> Result<()> {
        let s = self.s.clone();
        let put = if self.segments.is_empty() {
            let data = self.chunks.take();
            let put = s.put_object("writer", &self.path, &s.p.container, &self.name, data);
            s.replace("writer", &self.path, &self.name, put).await?
        } else {
            self.flush_segment().await?;
            self.chunks.clear();
            s.replace("writer", &self.path, &self.name, self.put_manifest())
                .await?
        };
        if put == Put::Superseded {
            // A concurrent write won (see `Put`): no manifest names these segments.
            self.discard().await?;
        } else if self.has_state {
            // The segments now belong to the manifest: only the state goes.
            let state = format!("/{}/{}", s.seg_container, state_name(&self.name));
            s.bulk_delete("writer", &self.path, vec![state]).await?;
            self.has_state = false;
        }
        Ok(())
    }
}
