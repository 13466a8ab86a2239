//! Resumable uploads as uncommitted blocks of the target blob.
//!
//! Distribution's azure driver writes into an append blob at the target path, so an
//! upload in progress is readable there and a commit is not atomic. This writer stages
//! blocks instead (`Put Block`): uncommitted blocks are invisible to reads and listings,
//! and `commit` makes them the blob's content in one `Put Block List`, atomically
//! replacing what was there. Memory is one block (`chunksize`).
//!
//! Each writer is a *session* with an id that sorts by creation time. A block's id (48
//! characters of the base64 alphabet, as Azure requires) holds a tag, the session, a kind
//! and a sequence number:
//!
//! ```text
//! 5d7a | 0189d0a1b2c3d4e5 a1b2c3d4 | 0 | 0000000003 | 000000000
//! tag  | session: time, random    | kind | seq      | fill
//! ```
//!
//! Kinds: `0` data, `1` marker (a one-byte block recording an empty session that was
//! closed), `2` tombstone (a cancelled session). `writer(path, true)` lists the blob's
//! uncommitted blocks (`Get Block List`), takes the newest session, and resumes it with
//! the size of its data blocks, unless it was cancelled. Older sessions are superseded and
//! discarded by Azure at the next commit (or after a week, Azure's rule for uncommitted
//! blocks).
//!
//! A writer that commits without having filled a block uses a single `Put Blob`.
//! `cancel` discards the blocks: where no committed blob exists it commits an empty block
//! list (conditional on the blob being absent, which discards every uncommitted block)
//! and deletes the resulting empty blob; where a committed blob exists (and must stay) it
//! stages a tombstone so the session is never resumed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use driver_api::chunks::Chunker;
use driver_api::{async_trait, FileWriter, Result, StorageError, StoragePath};
use driver_http::RestClient as _;
use driver_objectstore::{Cx, ObjectBackend as _};
use reqwest::Method;

use crate::client::{Call, Client};
use crate::xml::BlockList;
use crate::{AzureBackend, DRIVER};

const TAG: &str = "5d7a";
const FILL: &str = "000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Marker,
    Tombstone,
}

impl Kind {
    fn digit(self) -> char {
        match self {
            Kind::Data => '0',
            Kind::Marker => '1',
            Kind::Tombstone => '2',
        }
    }
}

fn block_id(session: &str, kind: Kind, seq: u64) -> String {
    format!("{TAG}{session}{}{seq:010}{FILL}", kind.digit())
}

/// `(session, kind, seq)` of one of our block ids; `None` for anyone else's.
fn parse_id(id: &str) -> Option<(&str, Kind, u64)> {
    if id.len() != 48 || !id.starts_with(TAG) || !id.ends_with(FILL) {
        return None;
    }
    let session = id.get(4..28)?;
    if !session.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let kind = match id.get(28..29)? {
        "0" => Kind::Data,
        "1" => Kind::Marker,
        "2" => Kind::Tombstone,
        _ => return None,
    };
    let seq = id.get(29..39)?.parse().ok()?;
    Some((session, kind, seq))
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Eight random hex digits.
pub(crate) fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_nanos());
    format!("{:08x}", h.finish() as u32)
}

/// A new session id: creation time (ns, hex) then randomness.
fn new_session() -> String {
    format!("{:016x}{}", now_nanos(), random_hex())
}

/// An upload in progress, as found in a block list.
#[derive(Debug)]
struct Session {
    id: String,
    /// Data blocks in order: id and size (none for an empty session with a marker).
    blocks: Vec<(String, u64)>,
}

/// The live session of a block list, if any: the newest session, unless cancelled, with
/// its data blocks in order (checked contiguous).
fn live_session(list: &BlockList) -> Result<Option<Session>, String> {
    let ours: Vec<(&str, Kind, u64, &str, u64)> = list
        .uncommitted()
        .filter_map(|b| parse_id(&b.name).map(|(s, k, n)| (s, k, n, b.name.as_str(), b.size)))
        .collect();
    let Some(newest) = ours.iter().map(|b| b.0).max() else {
        return Ok(None);
    };
    let mut blocks: Vec<_> = ours.iter().filter(|b| b.0 == newest).collect();
    if blocks.iter().any(|b| b.1 == Kind::Tombstone) {
        return Ok(None);
    }
    blocks.retain(|b| b.1 == Kind::Data);
    blocks.sort_by_key(|b| b.2);
    for (i, b) in blocks.iter().enumerate() {
        if b.2 != i as u64 {
            return Err(format!("upload session {newest} lacks block {i}"));
        }
    }
    Ok(Some(Session {
        id: newest.to_owned(),
        blocks: blocks.iter().map(|b| (b.3.to_owned(), b.4)).collect(),
    }))
}

pub(crate) struct AzureWriter {
    s: Arc<AzureBackend>,
    path: StoragePath,
    name: String,
    session: String,
    /// Staged data blocks, in order: id and size.
    blocks: Vec<(String, u64)>,
    /// This session is recorded remotely (a block or a marker was staged).
    recorded: bool,
    chunks: Chunker,
    size: u64,
}

impl AzureWriter {
    /// A fresh upload to `path`, the blob `name`.
    pub(crate) fn new(s: Arc<AzureBackend>, path: StoragePath, name: String) -> Self {
        let chunk = s.p.chunk_size;
        Self {
            s,
            path,
            name,
            session: new_session(),
            blocks: Vec::new(),
            recorded: false,
            chunks: Chunker::new(chunk),
            size: 0,
        }
    }

    /// Resumes the upload in progress at `path` (see the module docs).
    pub(crate) async fn resume(
        s: Arc<AzureBackend>,
        path: StoragePath,
        name: String,
    ) -> Result<Self> {
        let mut w = Self::new(s, path, name);
        let list = w.block_list("writer").await?;
        let live =
            live_session(&list).map_err(|e| StorageError::backend(DRIVER, "writer", &w.path, e))?;
        if let Some(session) = live {
            w.session = session.id;
            w.size = session.blocks.iter().map(|b| b.1).sum();
            w.blocks = session.blocks;
            w.recorded = true;
            return Ok(w);
        }
        // No upload in progress: only empty committed content may be appended to.
        let info = w.s.head(Cx::new("writer", &w.path), &w.name).await?;
        match info.map(|o| o.size) {
            None => Err(StorageError::not_found(DRIVER, &w.path)),
            Some(0) => Ok(w),
            Some(size) => Err(StorageError::append_to_committed(DRIVER, &w.path, size)),
        }
    }

    fn client(&self) -> &Client {
        &self.s.client
    }

    /// The blob's block list; an absent blob (no blocks either) has an empty one.
    async fn block_list(&self, op: &'static str) -> Result<BlockList> {
        let mut url = self.client().blob_url(&self.name);
        url.query_pairs_mut()
            .append_pair("comp", "blocklist")
            .append_pair("blocklisttype", "uncommitted");
        let resp = self
            .client()
            .send(Call::new(op, &self.path, Method::GET, url))
            .await?;
        match resp.status().as_u16() {
            200 => {
                let body = resp
                    .text()
                    .await
                    .map_err(|e| driver_http::transport_error(DRIVER, op, &self.path, e))?;
                crate::xml::parse(&body, op, &self.path)
            }
            404 => Ok(BlockList::default()),
            _ => Err(self.client().error(op, &self.path, resp).await),
        }
    }

    async fn stage(
        &mut self,
        kind: Kind,
        seq: u64,
        data: Bytes,
        op: &'static str,
    ) -> Result<String> {
        let id = block_id(&self.session, kind, seq);
        let mut url = self.client().blob_url(&self.name);
        url.query_pairs_mut()
            .append_pair("comp", "block")
            .append_pair("blockid", &id);
        let call = Call::new(op, &self.path, Method::PUT, url).body(data);
        self.client().expect(call, &[201]).await?;
        self.recorded = true;
        Ok(id)
    }

    async fn stage_data(&mut self, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        let seq = self.blocks.len() as u64;
        let id = self.stage(Kind::Data, seq, data, "write").await?;
        self.blocks.push((id, len));
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if !self.chunks.is_empty() {
            let data = self.chunks.take();
            self.stage_data(data).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl FileWriter for AzureWriter {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        while let Some(block) = self.chunks.next_part(&mut data) {
            self.stage_data(block).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(&mut self) -> Result<()> {
        self.flush().await?;
        if !self.recorded {
            // An empty session must still be found by `writer(path, true)`.
            self.stage(Kind::Marker, 0, Bytes::from_static(b"\0"), "close")
                .await?;
        }
        self.chunks.clear();
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        self.chunks.clear();
        // Where no blob is committed: an empty commit that only succeeds on an absent blob
        // discards every uncommitted block; then the empty blob goes.
        let url = self.client().blob_url(&self.name);
        let call = Call::new("cancel", &self.path, Method::PUT, {
            let mut u = url.clone();
            u.query_pairs_mut().append_pair("comp", "blocklist");
            u
        })
        .header("if-none-match", "*")
        .body(Bytes::from_static(
            b"<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList></BlockList>",
        ));
        let resp = self.client().send(call).await?;
        match resp.status().as_u16() {
            201 => {
                let etag = Client::header(&resp, "etag").unwrap_or("*").to_owned();
                let del =
                    Call::new("cancel", &self.path, Method::DELETE, url).header("if-match", etag);
                // 412: someone committed in between; theirs stays. 404: already gone.
                self.client().expect(del, &[202, 404, 412]).await?;
                Ok(())
            }
            409 | 412 => {
                // A committed blob exists and must stay: mark this session cancelled.
                self.stage(Kind::Tombstone, 0, Bytes::from_static(b"\0"), "cancel")
                    .await
                    .map(drop)
            }
            _ => Err(self.client().error("cancel", &self.path, resp).await),
        }
    }

    async fn commit(&mut self) -> Result<()> {
        if self.blocks.is_empty() {
            // Never filled a block: one Put Blob (it also discards uncommitted blocks).
            let data = self.chunks.take();
            let cx = Cx::new("commit", &self.path);
            return self.s.put(cx, &self.name, data).await;
        }
        self.flush().await?;
        let mut xml = String::with_capacity(64 + self.blocks.len() * 64);
        xml.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for (id, _) in &self.blocks {
            xml.push_str("<Latest>");
            xml.push_str(id);
            xml.push_str("</Latest>");
        }
        xml.push_str("</BlockList>");
        let mut url = self.client().blob_url(&self.name);
        url.query_pairs_mut().append_pair("comp", "blocklist");
        let call = Call::new("commit", &self.path, Method::PUT, url)
            .header("x-ms-blob-content-type", "application/octet-stream")
            .body(Bytes::from(xml));
        self.client().expect(call, &[201]).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Block, Blocks};

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let s = new_session();
        assert_eq!(s.len(), 24);
        let id = block_id(&s, Kind::Data, 42);
        assert_eq!(id.len(), 48);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        assert_eq!(parse_id(&id), Some((s.as_str(), Kind::Data, 42)));
        assert_eq!(parse_id("AAAA"), None);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(new_session() > s);
    }

    fn list(blocks: &[(String, u64)]) -> BlockList {
        BlockList {
            uncommitted_blocks: Blocks {
                blocks: blocks
                    .iter()
                    .map(|(n, s)| Block {
                        name: n.clone(),
                        size: *s,
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn newest_session_wins_and_tombstones_end_it() {
        let (old, new) = ("0000000000000001aaaaaaaa", "0000000000000002bbbbbbbb");
        let l = list(&[
            (block_id(old, Kind::Data, 0), 7),
            (block_id(new, Kind::Data, 1), 3),
            (block_id(new, Kind::Data, 0), 5),
            ("foreign".into(), 9),
        ]);
        let s = live_session(&l).unwrap().unwrap();
        assert_eq!(s.id, new);
        assert_eq!(s.blocks.iter().map(|b| b.1).collect::<Vec<_>>(), [5, 3]);

        let l = list(&[(block_id(new, Kind::Marker, 0), 1)]);
        let s = live_session(&l).unwrap().unwrap();
        assert!(
            s.blocks.is_empty(),
            "an empty session that was closed is live"
        );

        let l = list(&[
            (block_id(new, Kind::Data, 0), 5),
            (block_id(new, Kind::Tombstone, 0), 1),
        ]);
        assert!(live_session(&l).unwrap().is_none());

        let l = list(&[(block_id(new, Kind::Data, 1), 5)]);
        assert!(live_session(&l).is_err(), "a gap is reported");
    }
}
