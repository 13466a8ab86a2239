//! Swift's steps of the object-store core's resumable writer
//! ([`driver_objectstore::upload`], which holds the protocol: chunking, parts in flight,
//! parking the upload's state as `<key>#upload`, resume, commit and cancel).
//!
//! * An upload is a random id (no request). Part `n` is a plain PUT of a segment as
//!   `<prefix>/segments/#<upload id>/<n>` in the container (`<prefix>/#segments/...` in
//!   `<container>_segments` with `layout: flat`); segment names are outside every path's
//!   key and apart from Distribution's, and they do not name the object's path, so a
//!   large object moved by its manifest keeps them). Swift takes segments of any size, so
//!   `close` sends the whole tail as a segment and parks only the state.
//! * Swift cannot list an upload's parts reliably (container listings may lag), so the
//!   core records them (size and ETag) in the parked object
//!   ([`LISTS_PARTS`](MultipartBackend::LISTS_PARTS) is `false`).
//! * Completing PUTs the Static Large Object manifest (`?multipart-manifest=put`, the
//!   segments in number order) through [`SwiftBackend::replace`]: Swift checks every
//!   segment's size and ETag, and the object it replaces loses its segments. A manifest
//!   that loses to a newer write (see [`Put`]) deletes its own segments: no manifest
//!   names them.
//! * Aborting bulk-deletes the upload's segments: the known ones, the numbers a
//!   cancelled writer may still have had in flight, and any the segments container
//!   lists under the upload's prefix.
//!
//! What the core cannot see is done here: an uncommitted upload's segments go with its
//! parked object when a fresh writer opens at the path ([`discard_parked`]), when a tree
//! delete meets parked objects under the path ([`parked_segments`], from
//! `delete_batch`), and for the path itself (`after_delete`).
//!
//! A manifest names at most 1,000 segments (Swift's default `max_manifest_segments`):
//! one object is at most 1,000 × `chunksize` (20 GB by default).

use bytes::Bytes;
use driver_api::{async_trait, Result, StorageError};
use driver_http::Call;
use driver_objectstore::upload::park_key;
use driver_objectstore::{Cx, MultipartBackend, ParkedUpload, Part};
use reqwest::Method;

use crate::{Put, SwiftBackend, DRIVER};

/// Swift's default `max_manifest_segments`.
const MAX_SEGMENTS: u32 = 1000;

/// A random upload id (128 bits from the std hasher's random keys, the time and a
/// counter).
pub(crate) fn upload_id() -> String {
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

impl SwiftBackend {
    /// Where the segments of upload `upload` are named: `<prefix>/segments/#<id>/`
    /// (`<prefix>/#segments/<id>/` in the flat layout; see
    /// [`SwiftParams::segments_prefix`](crate::params::SwiftParams::segments_prefix)).
    fn upload_prefix(&self, upload: &str) -> String {
        format!("{}{upload}/", self.p.segments_prefix())
    }

    /// The name of segment `number` of upload `upload` in the segments container.
    fn segment_name(&self, upload: &str, number: u32) -> String {
        format!("{}{number:08}", self.upload_prefix(upload))
    }

    /// `/container/object` of segment `number`, as a manifest and the bulk delete name
    /// it.
    fn segment_path(&self, upload: &str, number: u32) -> String {
        format!(
            "/{}/{}",
            self.seg_container,
            self.segment_name(upload, number)
        )
    }

    /// Every segment of upload `upload`: those numbered in `numbers` and those the
    /// segments container lists under the upload's prefix (a segment stored after the
    /// state was parked, by a writer that never closed).
    async fn upload_segments(
        &self,
        cx: Cx<'_>,
        upload: &str,
        numbers: impl Iterator<Item = u32>,
    ) -> Result<Vec<String>> {
        let mut names: Vec<String> = numbers.map(|n| self.segment_path(upload, n)).collect();
        let prefix = self.upload_prefix(upload);
        names.extend(self.names_under(cx, &self.seg_container, &prefix).await?);
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// The upload id and recorded part numbers of a parked object ([`ParkedUpload`]).
/// `None` when it names no upload, or cannot be read (logged: nothing to delete then).
fn parked_upload(cx: Cx<'_>, name: &str, body: &[u8]) -> Option<(String, Vec<u32>)> {
    match ParkedUpload::parse(DRIVER, cx.path, Bytes::copy_from_slice(body)) {
        Ok(p) => Some((p.upload?, p.parts.iter().map(|p| p.number).collect())),
        Err(e) => {
            tracing::warn!(driver = DRIVER, path = %cx.path, object = name, error = %e, "unreadable parked upload: its segments stay");
            None
        }
    }
}

/// The segments (`/container/object`) of the uncommitted upload parked as `parked` in the
/// main container: what deleting the parked object orphans. `None`: no parked object.
pub(crate) async fn parked_segments(
    s: &SwiftBackend,
    cx: Cx<'_>,
    parked: &str,
) -> Result<Option<Vec<String>>> {
    let Some(body) = s.get_object(cx.op, cx.path, &s.p.container, parked).await? else {
        return Ok(None);
    };
    match parked_upload(cx, parked, &body) {
        Some((upload, numbers)) => s
            .upload_segments(cx, &upload, numbers.into_iter())
            .await
            .map(Some),
        None => Ok(Some(Vec::new())),
    }
}

/// Discards the uncommitted upload parked for `key`, if any: its segments, then the
/// parked object. A fresh writer does this first (the core would remove only the parked
/// object, at commit), and so does `after_delete` for the deleted path itself.
pub(crate) async fn discard_parked(s: &SwiftBackend, cx: Cx<'_>, key: &str) -> Result<()> {
    let parked = park_key(key);
    let Some(segments) = parked_segments(s, cx, &parked).await? else {
        return Ok(());
    };
    // Segments first: a parked object left by a failure still names them.
    s.bulk_delete(cx.op, cx.path, segments).await?;
    s.delete_object(cx, &parked, false).await.map(drop)
}

#[async_trait]
impl MultipartBackend for SwiftBackend {
    fn part_size(&self) -> usize {
        self.p.chunk_size
    }

    /// Swift takes a segment of any size: `close` sends the whole tail.
    fn min_part_size(&self) -> usize {
        1
    }

    const LISTS_PARTS: bool = false;

    /// Segments cannot be listed by the path they are for: record each upload when it
    /// starts, so a killed writer's segments are found (`storagectl uploads`).
    const PARK_AT_START: bool = true;

    fn max_concurrency(&self) -> usize {
        self.p.max_concurrency
    }

    async fn initiate(&self, _cx: Cx<'_>, _key: &str) -> Result<String> {
        Ok(upload_id())
    }

    async fn put_part(
        &self,
        cx: Cx<'_>,
        _key: &str,
        upload: &str,
        number: u32,
        _offset: u64,
        data: Bytes,
    ) -> Result<Part> {
        if number > MAX_SEGMENTS {
            return Err(StorageError::backend(
                DRIVER,
                cx.op,
                cx.path,
                format!(
                    "more than {MAX_SEGMENTS} segments (Swift's max_manifest_segments): \
                     raise chunksize for objects this large"
                ),
            ));
        }
        let name = self.segment_name(upload, number);
        let size = data.len() as u64;
        let put = self
            .put_object(cx.op, cx.path, &self.seg_container, &name, data)
            .await?;
        let Put::Stored(etag) = put else {
            // Segment names are this upload's own: another writer resumed it.
            return Err(StorageError::backend(
                DRIVER,
                cx.op,
                cx.path,
                format!("segment {name} was written by another writer"),
            ));
        };
        Ok(Part { number, size, etag })
    }

    async fn complete(&self, cx: Cx<'_>, key: &str, upload: &str, parts: &[Part]) -> Result<()> {
        let manifest: Vec<serde_json::Value> = parts
            .iter()
            .map(|p| {
                serde_json::json!({
                    "path": self.segment_path(upload, p.number),
                    "etag": p.etag,
                    "size_bytes": p.size,
                })
            })
            .collect();
        let body = serde_json::to_vec(&manifest)
            .map_err(|e| StorageError::backend(DRIVER, cx.op, cx.path, e.to_string()))?;
        let put = async {
            let url = self
                .client
                .url(&[&self.p.container, key], &[("multipart-manifest", "put")])
                .await?;
            let call = Call::new(cx.op, cx.path, Method::PUT, url)
                .header("content-type", "application/octet-stream")
                .body(Bytes::from(body));
            self.send_write(call).await
        };
        if self.replace(cx.op, cx.path, key, put).await? == Put::Superseded {
            // A concurrent write won (see `Put`): no manifest names these segments.
            let names = parts
                .iter()
                .map(|p| self.segment_path(upload, p.number))
                .collect();
            self.bulk_delete(cx.op, cx.path, names).await?;
        }
        Ok(())
    }

    /// A bulk delete of the segments numbered up to `max_concurrency` past the highest
    /// known part (a cancelled writer's parts that were still in flight are among them:
    /// at most that many are in flight, sent in number order) and of any other the
    /// segments container lists under the upload's prefix.
    async fn abort(&self, cx: Cx<'_>, _key: &str, upload: &str, parts: &[Part]) -> Result<()> {
        let top = parts.iter().map(|p| p.number).max().unwrap_or(0);
        let last = top
            .saturating_add(self.max_concurrency() as u32)
            .min(MAX_SEGMENTS)
            .max(top);
        let names = self.upload_segments(cx, upload, 1..=last).await?;
        self.bulk_delete(cx.op, cx.path, names).await
    }
}
