//! Block blob uploads: the steps of the object-store core's resumable writer
//! ([`driver_objectstore::upload`], which holds the protocol: chunking, parts in flight,
//! the parked object `<key>#upload`, resume, commit and cancel).
//!
//! An upload is a *session* of uncommitted blocks of the target blob (`Put Block`):
//! uncommitted blocks are invisible to reads and listings, and completing the upload makes
//! them the blob's content in one `Put Block List`, atomically replacing what was there
//! and discarding every other uncommitted block. A session id sorts by creation time and
//! starting one sends no request. A block's id (48 characters of the base64 alphabet, as
//! Azure requires) holds a tag, the session, a kind and a sequence number (the part
//! number for data):
//!
//! ```text
//! 5d7a | 0189d0a1b2c3d4e5 a1b2c3d4 | 0 | 0000000003 | 000000000
//! tag  | session: time, random    | kind | seq      | fill
//! ```
//!
//! Kinds: `0` data, `1` tombstone (a cancelled session).
//!
//! * A part is a data block; its id is the part's tag. Blocks may have any size, so
//!   `close` sends the whole tail as a block and the parked object holds no bytes.
//! * `list_parts` is `Get Block List` (uncommitted) filtered to the session's data blocks.
//! * `find_upload` (a writer lost before `close`, so without a parked object) is the
//!   newest session in the block list, unless it has a tombstone.
//! * `abort` discards the blocks: where no committed blob exists it commits an empty block
//!   list (conditional on the blob being absent, which discards every uncommitted block)
//!   and deletes the resulting empty blob; where a committed blob exists (and must stay) it
//!   stages a tombstone so the session is never resumed.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use driver_api::{async_trait, Result};
use driver_http::RestClient as _;
use driver_objectstore::{Cx, ListRequest, MultipartBackend, OpenUpload, Part};
use reqwest::Method;

use crate::client::{Call, Client};
use crate::xml::BlockList;
use crate::AzureBackend;

const TAG: &str = "5d7a";
const FILL: &str = "000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Tombstone,
}

impl Kind {
    fn digit(self) -> char {
        match self {
            Kind::Data => '0',
            Kind::Tombstone => '1',
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
        "1" => Kind::Tombstone,
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

/// When session `id` was started (its first 16 hex digits are nanoseconds).
fn session_time(id: &str) -> Option<SystemTime> {
    let ns = u64::from_str_radix(id.get(..16)?, 16).ok()?;
    Some(UNIX_EPOCH + std::time::Duration::from_nanos(ns))
}

/// The session to resume in a block list: the newest, unless it was cancelled.
fn live_session(list: &BlockList) -> Option<String> {
    let ours: Vec<_> = list
        .uncommitted()
        .filter_map(|b| parse_id(&b.name))
        .collect();
    let newest = ours.iter().map(|b| b.0).max()?;
    let cancelled = ours.iter().any(|b| b.0 == newest && b.1 == Kind::Tombstone);
    (!cancelled).then(|| newest.to_owned())
}

/// The data blocks of `session` in a block list, as parts (in list order).
fn session_parts(list: &BlockList, session: &str) -> Vec<Part> {
    list.uncommitted()
        .filter_map(|b| match parse_id(&b.name) {
            Some((s, Kind::Data, seq)) if s == session => Some(Part {
                number: u32::try_from(seq).ok()?,
                size: b.size,
                etag: b.name.clone(),
            }),
            _ => None,
        })
        .collect()
}

impl AzureBackend {
    /// `Get Block List` (uncommitted) of blob `key`; an absent blob has an empty one.
    async fn block_list(&self, cx: Cx<'_>, key: &str) -> Result<BlockList> {
        let mut url = self.client.blob_url(key);
        url.query_pairs_mut()
            .append_pair("comp", "blocklist")
            .append_pair("blocklisttype", "uncommitted");
        let call = Call::new(cx.op, cx.path, Method::GET, url);
        let answer = match self.client.fetch(call, &[200]).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return Ok(BlockList::default()),
            Err(e) => return Err(e),
        };
        crate::xml::parse(&answer.text(), cx.op, cx.path)
    }

    /// The live sessions of blobs under `prefix` that hold only uncommitted blocks: a
    /// listing with `include=uncommittedblobs` shows them with size 0, and their block
    /// list names the session. (Uncommitted blocks on a blob with committed content are
    /// not in any listing; Azure discards them after a week, or at the blob's next
    /// commit.)
    pub(crate) async fn uncommitted_sessions(
        &self,
        cx: Cx<'_>,
        prefix: &str,
    ) -> Result<Vec<OpenUpload>> {
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let req = ListRequest {
                prefix,
                delimiter: false,
                token: token.as_deref(),
                start_after: None,
                max: None,
            };
            let page = self.list_blobs(cx, &req, true).await?;
            for o in page.objects.iter().filter(|o| o.size == 0) {
                if let Some(id) = live_session(&self.block_list(cx, &o.key).await?) {
                    found.push(OpenUpload {
                        key: o.key.clone(),
                        started: session_time(&id),
                        id,
                    });
                }
            }
            match page.next {
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                _ => return Ok(found),
            }
        }
    }

    /// `Put Block`: stages `data` as block `id` of blob `key`.
    async fn put_block(&self, cx: Cx<'_>, key: &str, id: &str, data: Bytes) -> Result<()> {
        let mut url = self.client.blob_url(key);
        url.query_pairs_mut()
            .append_pair("comp", "block")
            .append_pair("blockid", id);
        let call = Call::new(cx.op, cx.path, Method::PUT, url).body(data);
        self.client.expect(call, &[201]).await.map(drop)
    }
}

/// A `Put Block List` body naming `ids` in order.
fn block_list_xml<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for id in ids {
        xml.push_str("<Latest>");
        xml.push_str(id);
        xml.push_str("</Latest>");
    }
    xml.push_str("</BlockList>");
    xml
}

#[async_trait]
impl MultipartBackend for AzureBackend {
    /// `chunksize`.
    fn part_size(&self) -> usize {
        self.p.chunk_size
    }

    /// Blocks may have any size: `close` sends the whole tail.
    fn min_part_size(&self) -> usize {
        1
    }

    /// `maxconcurrency`.
    fn max_concurrency(&self) -> usize {
        self.p.max_concurrency
    }

    /// A new session id; no request.
    async fn initiate(&self, _cx: Cx<'_>, _key: &str) -> Result<String> {
        Ok(new_session())
    }

    /// `Put Block` with the session's data block id for `number`.
    async fn put_part(
        &self,
        cx: Cx<'_>,
        key: &str,
        upload: &str,
        number: u32,
        _offset: u64,
        data: Bytes,
    ) -> Result<Part> {
        let id = block_id(upload, Kind::Data, number.into());
        let size = data.len() as u64;
        self.put_block(cx, key, &id, data).await?;
        Ok(Part {
            number,
            size,
            etag: id,
        })
    }

    /// An empty last part is never sent (Azure refuses empty blocks; an upload without
    /// blocks completes as an empty blob).
    async fn put_last_part(
        &self,
        cx: Cx<'_>,
        key: &str,
        upload: &str,
        number: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<Option<Part>> {
        if data.is_empty() {
            return Ok(None);
        }
        self.put_part(cx, key, upload, number, offset, data)
            .await
            .map(Some)
    }

    /// `Put Block List` of the parts' blocks in order.
    async fn complete(&self, cx: Cx<'_>, key: &str, _upload: &str, parts: &[Part]) -> Result<()> {
        let xml = block_list_xml(parts.iter().map(|p| p.etag.as_str()));
        let mut url = self.client.blob_url(key);
        url.query_pairs_mut().append_pair("comp", "blocklist");
        let call = Call::new(cx.op, cx.path, Method::PUT, url)
            .header("x-ms-blob-content-type", "application/octet-stream")
            .body(Bytes::from(xml));
        self.client.expect(call, &[201]).await.map(drop)
    }

    /// Discards the blocks (see the module docs).
    async fn abort(&self, cx: Cx<'_>, key: &str, upload: &str, _: &[Part]) -> Result<()> {
        // Where no blob is committed: an empty commit that only succeeds on an absent blob
        // discards every uncommitted block; then the empty blob goes.
        let url = self.client.blob_url(key);
        let mut commit_url = url.clone();
        commit_url
            .query_pairs_mut()
            .append_pair("comp", "blocklist");
        let call = Call::new(cx.op, cx.path, Method::PUT, commit_url)
            .header("if-none-match", "*")
            .body(Bytes::from(block_list_xml(std::iter::empty())));
        let resp = self.client.send(call).await?;
        match resp.status().as_u16() {
            201 => {
                let etag = Client::header(&resp, "etag").unwrap_or("*").to_owned();
                let del = Call::new(cx.op, cx.path, Method::DELETE, url).header("if-match", etag);
                // 412: someone committed in between; theirs stays. 404: already gone.
                self.client.expect(del, &[202, 404, 412]).await.map(drop)
            }
            // A committed blob exists and must stay: mark the session cancelled.
            409 | 412 => {
                let id = block_id(upload, Kind::Tombstone, 0);
                self.put_block(cx, key, &id, Bytes::from_static(b"\0"))
                    .await
            }
            _ => Err(self.client.error(cx.op, cx.path, resp).await),
        }
    }

    /// `Get Block List`: the session's data blocks.
    async fn list_parts(&self, cx: Cx<'_>, key: &str, upload: &str) -> Result<Vec<Part>> {
        let list = self.block_list(cx, key).await?;
        Ok(session_parts(&list, upload))
    }

    /// `Get Block List`: the newest session, unless it was cancelled.
    async fn find_upload(&self, cx: Cx<'_>, key: &str) -> Result<Option<String>> {
        let list = self.block_list(cx, key).await?;
        Ok(live_session(&list))
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
            (block_id(old, Kind::Data, 1), 7),
            (block_id(new, Kind::Data, 2), 3),
            (block_id(new, Kind::Data, 1), 5),
            ("foreign".into(), 9),
        ]);
        assert_eq!(live_session(&l).as_deref(), Some(new));
        let parts = session_parts(&l, new);
        let got: Vec<_> = parts.iter().map(|p| (p.number, p.size)).collect();
        assert_eq!(got, [(2, 3), (1, 5)]);
        assert_eq!(parts[1].etag, block_id(new, Kind::Data, 1));
        assert_eq!(session_parts(&l, old).len(), 1);

        let l = list(&[
            (block_id(old, Kind::Data, 1), 7),
            (block_id(new, Kind::Data, 1), 5),
            (block_id(new, Kind::Tombstone, 0), 1),
        ]);
        assert_eq!(
            live_session(&l),
            None,
            "a cancelled newest session hides all"
        );
        assert_eq!(session_parts(&l, new).len(), 1, "tombstones are no parts");
        assert_eq!(live_session(&list(&[])), None);
    }
}
