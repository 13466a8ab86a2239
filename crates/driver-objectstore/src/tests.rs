//! The core's loops over a map-backed backend whose listing can page the way real
//! services do, or by offset (as some emulators do), to show what the loops rely on.
//! The drivers' own tests run the same loops against their real services.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use driver_api::Operation;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use driver_api::{Driver, WalkControl};

use super::*;

/// Keys in a map; pages of `max` (default 3) entries; the continuation token is the
/// offset of the next entry (`offset_tokens`) or the last key listed.
#[derive(Debug, Default)]
struct Map {
    keys: KeySpace,
    map: Mutex<BTreeMap<String, Bytes>>,
    offset_tokens: bool,
    /// Every put's number: an object's version is the put that wrote it.
    puts: std::sync::atomic::AtomicU64,
    versions: Mutex<BTreeMap<String, u64>>,
    /// Streams still to be cut: each sends 3-byte chunks and fails after its second.
    cuts: std::sync::atomic::AtomicU32,
    /// GETs served.
    gets: std::sync::atomic::AtomicU32,
    /// Every stream fails before its first byte.
    dead: std::sync::atomic::AtomicBool,
}

impl Map {
    fn version(&self, key: &str) -> Option<String> {
        self.versions.lock().unwrap().get(key).map(u64::to_string)
    }
    fn bump(&self, key: &str) {
        let n = self.puts.fetch_add(1, Relaxed) + 1;
        self.versions.lock().unwrap().insert(key.to_owned(), n);
    }
}

#[async_trait]
impl ObjectBackend for Map {
    const NAME: &'static str = "map";
    const START_AFTER: bool = true;

    async fn from_parameters(_: Parameters) -> Result<Self> {
        Ok(Self::default())
    }
    fn keys(&self) -> &KeySpace {
        &self.keys
    }
    fn delete_batch_size(&self) -> usize {
        2
    }
    async fn head(&self, _: Cx<'_>, key: &str) -> Result<Option<ObjectMeta>> {
        let m = self.map.lock().unwrap();
        Ok(m.get(key)
            .map(|v| ObjectMeta::new(key, v.len() as u64, UNIX_EPOCH)))
    }
    async fn get(&self, cx: Cx<'_>, key: &str, offset: u64, version: Option<&str>) -> Result<Got> {
        self.gets.fetch_add(1, Relaxed);
        let current = self.version(key);
        if version.is_some() && version.map(str::to_owned) != current {
            return Ok(Got::Changed);
        }
        let m = self.map.lock().unwrap();
        Ok(match m.get(key) {
            None => Got::NotFound,
            Some(v) if offset as usize >= v.len() && !v.is_empty() => Got::PastEnd,
            Some(v) => {
                let part = v.slice((offset as usize).min(v.len())..);
                let len = part.len() as u64;
                let cut = self
                    .cuts
                    .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                    .is_ok();
                let stream = if self.dead.load(Relaxed) {
                    let e = StorageError::backend("map", Operation::Reader, cx.path, "reset");
                    futures::stream::iter([Err(e.with_retryable(true))]).boxed()
                } else if cut {
                    let (path, mut chunks) = (cx.path.clone(), Vec::new());
                    for c in part.chunks(3).take(2) {
                        chunks.push(Ok(part.slice_ref(c)));
                    }
                    chunks.push(Err(StorageError::backend(
                        "map",
                        Operation::Reader,
                        &path,
                        "reset",
                    )
                    .with_retryable(true)));
                    futures::stream::iter(chunks).boxed()
                } else {
                    futures::stream::iter([Ok(part)]).boxed()
                };
                Got::Stream(Body::new(stream).version(current).len(Some(len)))
            }
        })
    }
    async fn put(&self, _: Cx<'_>, key: &str, data: Bytes) -> Result<()> {
        self.map.lock().unwrap().insert(key.to_owned(), data);
        self.bump(key);
        Ok(())
    }
    async fn copy(&self, _: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()> {
        let mut m = self.map.lock().unwrap();
        let v = m.get(&src.key).cloned().unwrap_or_default();
        m.insert(dst.to_owned(), v);
        drop(m);
        self.bump(dst);
        Ok(())
    }
    async fn delete(&self, _: Cx<'_>, key: &str, _: bool) -> Result<bool> {
        Ok(self.map.lock().unwrap().remove(key).is_some())
    }
    async fn list_page(&self, _: Cx<'_>, req: &ListRequest<'_>) -> Result<ListPage> {
        let m = self.map.lock().unwrap();
        let max = req.max.unwrap_or(3) as usize;
        let mut entries: Vec<(String, Option<u64>)> = Vec::new();
        for (k, v) in m.range(req.prefix.to_owned()..) {
            let Some(rest) = k.strip_prefix(req.prefix) else {
                break;
            };
            match rest.find('/').filter(|_| req.delimiter) {
                Some(i) => {
                    let p = format!("{}{}", req.prefix, &rest[..=i]);
                    if entries.last().map(|e| &e.0) != Some(&p) {
                        entries.push((p, None));
                    }
                }
                None => entries.push((k.clone(), Some(v.len() as u64))),
            }
        }
        let skip = match (req.token, req.start_after) {
            (Some(t), _) if self.offset_tokens => t.parse().unwrap(),
            (Some(t), _) | (None, Some(t)) => {
                entries.iter().take_while(|e| e.0.as_str() <= t).count()
            }
            (None, None) => 0,
        };
        let rest: Vec<_> = entries.into_iter().skip(skip).collect();
        let more = rest.len() > max;
        let page: Vec<_> = rest.into_iter().take(max).collect();
        let next = more.then(|| {
            if self.offset_tokens {
                (skip + page.len()).to_string()
            } else {
                page.last().map(|e| e.0.clone()).unwrap_or_default()
            }
        });
        let mut out = ListPage {
            next,
            ..ListPage::default()
        };
        for (k, size) in page {
            match size {
                Some(s) => out.objects.push(ObjectMeta::new(k, s, UNIX_EPOCH)),
                None => out.prefixes.push(k),
            }
        }
        Ok(out)
    }
    async fn writer(
        _: Arc<Self>,
        _: &StoragePath,
        _: String,
        _: bool,
    ) -> Result<Box<dyn FileWriter>> {
        Err(StorageError::backend(
            "map",
            Operation::Writer,
            &StoragePath::root(),
            "no writers",
        ))
    }
}

fn store(offset_tokens: bool) -> ObjectStore<Map> {
    ObjectStore::new(Map {
        offset_tokens,
        ..Map::default()
    })
}

async fn fill(d: &Driver, n: usize, with_object: bool) {
    for i in 0..n {
        d.put_content(&format!("/t/d/{i:03}"), "x").await.unwrap();
    }
    if with_object {
        // An object store may hold an object at a directory's key too.
        d.put_content("/t/d", "the object itself").await.unwrap();
    }
    d.put_content("/t/dd", "a sibling sharing the name prefix")
        .await
        .unwrap();
    d.put_content("/t/d-x/f", "another").await.unwrap();
}

fn keys(s: &ObjectStore<Map>) -> Vec<String> {
    s.backend().map.lock().unwrap().keys().cloned().collect()
}

/// A tree of many pages is deleted whole, page by page, even when the service's tokens
/// are offsets (which deleting would shift), and its name-prefix siblings stay.
#[tokio::test]
async fn tree_delete_streams_and_skips_nothing() {
    for offset_tokens in [false, true] {
        let s = store(offset_tokens);
        let d = Driver::new(s.clone());
        fill(&d, 20, true).await;
        let before = s.list_requests();
        d.delete("/t/d").await.unwrap();
        assert_eq!(
            keys(&s),
            ["t/d-x/f", "t/dd"],
            "offset tokens: {offset_tokens}"
        );
        // 20 keys, 3 a page: 7 pages (the last one ends the listing).
        assert_eq!(s.list_requests() - before, 7);
        // Batches of at most 2 keys, never across pages: 6 pages of 3 and one of 2.
        assert_eq!(s.delete_requests(), 13);
        assert!(d.delete("/t/d").await.unwrap_err().is_not_found());
    }
}

#[tokio::test]
async fn list_stat_walk_rename_over_pages() {
    let s = store(false).with_page_size(2);
    let d = Driver::new(s.clone());
    fill(&d, 5, false).await;
    let names: Vec<String> = d
        .list("/t")
        .await
        .unwrap()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(names, ["/t/d", "/t/d-x", "/t/dd"]);
    assert!(d.stat("/t").await.unwrap().is_dir);
    assert!(d.stat("/t/d").await.unwrap().is_dir);
    assert_eq!(d.stat("/t/dd").await.unwrap().size, 33);
    let seen: Vec<String> = d
        .walk_collect("/t")
        .await
        .unwrap()
        .iter()
        .map(|i| i.path.to_string())
        .collect();
    // Walk order: `/t/d`'s subtree before `/t/d-x`, though `-` sorts before `/`.
    assert_eq!(seen[..3], ["/t/d", "/t/d/000", "/t/d/001"], "{seen:?}");
    assert_eq!(seen.len(), 9, "{seen:?}");
    let mut stopped = 0;
    d.walk("/t", &driver_api::WalkOptions::default(), |_: &FileInfo| {
        stopped += 1;
        WalkControl::Stop
    })
    .await
    .unwrap();
    assert_eq!(stopped, 1);
    d.rename("/t/dd", "/t/moved").await.unwrap();
    assert_eq!(
        d.get_content("/t/moved").await.unwrap(),
        "a sibling sharing the name prefix"
    );
    assert!(d.stat("/t/dd").await.unwrap_err().is_not_found());
    d.rename("/t/moved", "/t/moved").await.unwrap();
    assert!(d
        .rename("/t/nothing", "/t/x")
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn reads_at_and_past_the_end() {
    let d = Driver::new(store(false));
    d.put_content("/f", "abc").await.unwrap();
    let read = |off: u64| {
        let d = d.clone();
        async move {
            let s = d.reader("/f", off).await?;
            let parts: Vec<Bytes> = s.try_collect().await?;
            Ok::<_, StorageError>(parts.concat())
        }
    };
    assert_eq!(read(1).await.unwrap(), b"bc");
    assert_eq!(read(3).await.unwrap(), b"");
    assert!(matches!(
        read(4).await,
        Err(StorageError::InvalidOffset { .. })
    ));
    assert!(d.reader("/g", 0).await.err().unwrap().is_not_found());
    assert_eq!(d.get_content("/f").await.unwrap(), "abc");
}

/// Multipart uploads of the map: parts in a map of their own, stored after a delay that
/// makes later parts finish first.
#[derive(Debug, Default)]
struct Parts {
    map: Map,
    uploads: Mutex<BTreeMap<String, BTreeMap<u32, Bytes>>>,
    in_flight: std::sync::atomic::AtomicUsize,
    max_seen: std::sync::atomic::AtomicUsize,
    concurrency: usize,
}

#[async_trait]
impl ObjectBackend for Parts {
    const NAME: &'static str = "parts";
    const START_AFTER: bool = true;
    async fn from_parameters(_: Parameters) -> Result<Self> {
        Ok(Self::default())
    }
    fn keys(&self) -> &KeySpace {
        self.map.keys()
    }
    async fn head(&self, cx: Cx<'_>, key: &str) -> Result<Option<ObjectMeta>> {
        self.map.head(cx, key).await
    }
    async fn get(&self, cx: Cx<'_>, key: &str, offset: u64, version: Option<&str>) -> Result<Got> {
        self.map.get(cx, key, offset, version).await
    }
    async fn put(&self, cx: Cx<'_>, key: &str, data: Bytes) -> Result<()> {
        self.map.put(cx, key, data).await
    }
    async fn copy(&self, cx: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()> {
        self.map.copy(cx, src, dst).await
    }
    async fn delete(&self, cx: Cx<'_>, key: &str, r: bool) -> Result<bool> {
        self.map.delete(cx, key, r).await
    }
    async fn list_page(&self, cx: Cx<'_>, req: &ListRequest<'_>) -> Result<ListPage> {
        self.map.list_page(cx, req).await
    }
    async fn writer(
        this: Arc<Self>,
        path: &StoragePath,
        key: String,
        append: bool,
    ) -> Result<Box<dyn driver_api::FileWriter>> {
        MultipartWriter::open(this, path, key, append).await
    }
}

#[async_trait]
impl MultipartBackend for Parts {
    fn part_size(&self) -> usize {
        4
    }
    fn min_part_size(&self) -> usize {
        4
    }
    fn max_concurrency(&self) -> usize {
        self.concurrency
    }
    async fn initiate(&self, _: Cx<'_>, key: &str) -> Result<String> {
        let id = format!("{key}@{}", self.uploads.lock().unwrap().len());
        self.uploads
            .lock()
            .unwrap()
            .insert(id.clone(), BTreeMap::new());
        Ok(id)
    }
    async fn put_part(
        &self,
        _: Cx<'_>,
        _: &str,
        upload: &str,
        n: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<Part> {
        use std::sync::atomic::Ordering::SeqCst;
        // Every part but the last is whole here, so each starts at a multiple of 4.
        assert_eq!(offset, u64::from(n - 1) * 4, "offset of part {n}");
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.max_seen.fetch_max(now, SeqCst);
        // Later parts of a group of four finish first.
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(4 - n % 4) * 3)).await;
        self.in_flight.fetch_sub(1, SeqCst);
        let size = data.len() as u64;
        self.uploads
            .lock()
            .unwrap()
            .get_mut(upload)
            .unwrap()
            .insert(n, data);
        Ok(Part {
            number: n,
            size,
            etag: format!("e{n}"),
        })
    }
    async fn complete(&self, _: Cx<'_>, key: &str, upload: &str, parts: &[Part]) -> Result<()> {
        let stored = self.uploads.lock().unwrap().remove(upload).unwrap();
        let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "parts in order: {numbers:?}"
        );
        let body: Vec<u8> = parts
            .iter()
            .flat_map(|p| stored[&p.number].to_vec())
            .collect();
        self.map
            .map
            .lock()
            .unwrap()
            .insert(key.to_owned(), body.into());
        Ok(())
    }
    async fn abort(&self, _: Cx<'_>, _: &str, upload: &str, _: &[Part]) -> Result<()> {
        self.uploads.lock().unwrap().remove(upload);
        Ok(())
    }
    async fn list_parts(&self, _: Cx<'_>, _: &str, upload: &str) -> Result<Vec<Part>> {
        let u = self.uploads.lock().unwrap();
        Ok(u[upload]
            .iter()
            .map(|(n, d)| Part {
                number: *n,
                size: d.len() as u64,
                etag: format!("e{n}"),
            })
            .collect())
    }
}

/// Parts finishing out of order, at most `maxconcurrency` in flight, an upload closed
/// with a parked tail and resumed by another writer, then committed: exact content, and
/// nothing left (no upload, no parked object). Cancel leaves nothing either.
#[tokio::test]
async fn multipart_writer_out_of_order_parts_resume_and_cancel() {
    for concurrency in [1, 3] {
        let s = ObjectStore::new(Parts {
            concurrency,
            ..Parts::default()
        });
        let d = Driver::new(s.clone());
        let data: Vec<u8> = (0..=255u8).cycle().take(4 * 9 + 3).collect();
        let mut w = d.writer("/f", false).await.unwrap();
        for piece in data[..4 * 5 + 2].chunks(5) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        w.close().await.unwrap();
        assert!(d.stat("/f").await.is_err(), "nothing visible before commit");
        let mut w = d.writer("/f", true).await.unwrap();
        assert_eq!(w.size(), 22);
        w.write(Bytes::copy_from_slice(&data[22..])).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(d.get_content("/f").await.unwrap(), data);
        let max = s
            .backend()
            .max_seen
            .load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            max <= concurrency,
            "{max} parts in flight, limit {concurrency}"
        );
        assert!(s.backend().uploads.lock().unwrap().is_empty());
        assert_eq!(keys_of(&s.backend().map), ["f"]);

        let mut w = d.writer("/g", false).await.unwrap();
        w.write(Bytes::from_static(b"0123456789")).await.unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/g", true).await.unwrap();
        w.cancel().await.unwrap();
        assert!(s.backend().uploads.lock().unwrap().is_empty());
        assert_eq!(keys_of(&s.backend().map), ["f"]);
    }
}

fn keys_of(m: &Map) -> Vec<String> {
    m.map.lock().unwrap().keys().cloned().collect()
}

/// A read cut mid-body resumes from the next byte, byte-exact, for `reader` at any
/// offset and for `get_content`; cuts in a row without progress end the stream.
#[tokio::test]
async fn cut_reads_resume_from_the_next_byte() {
    let store = ObjectStore::new(Map::default());
    let d = Driver::new(store.clone());
    let p = "/r/a";
    let data: Vec<u8> = (0..100u8).collect();
    d.put_content(p, data.clone()).await.unwrap();
    for offset in [0u64, 1, 50, 99] {
        store.backend().cuts.store(5, Relaxed);
        let got = read_from(&d, p, offset).await.unwrap();
        assert_eq!(&got[..], &data[offset as usize..], "offset {offset}");
    }
    store.backend().cuts.store(4, Relaxed);
    assert_eq!(&d.get_content(p).await.unwrap()[..], &data[..]);

    // A stream that breaks every time makes progress every time (two chunks each), so
    // it gets through, however many cuts; one that breaks before its first byte gives up
    // after the cap, with the retryable error.
    store.backend().cuts.store(1000, Relaxed);
    assert_eq!(&d.get_content(p).await.unwrap()[..], &data[..]);
    store.backend().cuts.store(0, Relaxed);
    store.backend().dead.store(true, Relaxed);
    let before = store.backend().gets.load(Relaxed);
    let err = read_from(&d, p, 0).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let gets = store.backend().gets.load(Relaxed) - before;
    assert_eq!(
        gets,
        1 + read::MAX_IDLE_RESUMES,
        "the first GET and the resumes"
    );
}

/// An object replaced while a stream reads it ends the stream with `Changed`: the bytes
/// before are the old object's, none of the new one's follow.
#[tokio::test]
async fn a_read_never_splices_two_versions() {
    let store = ObjectStore::new(Map::default());
    let d = Driver::new(store.clone());
    let p = "/r/v";
    d.put_content(p, vec![1u8; 30]).await.unwrap();
    store.backend().cuts.store(1, Relaxed);
    let mut s = d.reader(p, 0).await.unwrap();
    let mut got = Vec::new();
    got.extend_from_slice(&s.next().await.unwrap().unwrap());
    got.extend_from_slice(&s.next().await.unwrap().unwrap());
    d.put_content(p, vec![2u8; 30]).await.unwrap();
    match s.next().await {
        Some(Err(StorageError::Changed { offset, path, .. })) => {
            assert_eq!(offset, 6);
            assert_eq!(path, "/r/v");
        }
        other => panic!("expected Changed, got {other:?}"),
    }
    assert!(s.next().await.is_none(), "the stream ends after the error");
    assert_eq!(got, vec![1u8; 6]);
}

async fn read_from(d: &Driver, path: &str, offset: u64) -> Result<Vec<u8>> {
    let mut s = d.reader(path, offset).await?;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b?);
    }
    Ok(out)
}
