//! The Ceph RADOS driver, registered as `"rados"`: files stored directly in a RADOS pool
//! through librados, for operators who run Ceph without its S3 gateway.
//!
//! # Layout (see docs/drivers/rados.md)
//!
//! RADOS has flat objects of bounded size and no directories. With `K` the key of a path
//! under `rootdirectory`:
//!
//! * `c/<root>/<gen>.<i>`: chunk `i` of a file's content, bytes `[i·chunk, (i+1)·chunk)`;
//!   `gen` is a random generation name given to each upload, so content is immutable once
//!   committed and a move never copies bytes;
//! * `f/K`: the head object of a file: JSON metadata (size, chunk size, generation,
//!   modification time) and a `gen` xattr; replacing it is the atomic commit;
//! * `d/K`: a directory object whose omap holds one entry per child (`F <size> <mtime>` or
//!   `D`), so `list`, `stat` of a directory and `walk` read omap pages, never scan the pool;
//! * `u/K`: the state of an uncommitted upload (generation, chunk size, bytes flushed), so
//!   `writer(path, true)` resumes it from any process.
//!
//! Commit writes the chunks, then swaps the head (one atomic compound operation guarded by
//! the previous generation), then adds the entry to the parent directory and its ancestors
//! bottom-up: at every instant, a listing names only files whose head and chunks exist.
//!
//! # `unsafe`
//!
//! The workspace denies `unsafe_code`. This crate's one exception is the [`sys`] module,
//! the binding to librados' C API (loaded at run time with `libloading`, so nothing links
//! against Ceph): every `unsafe` block there carries a `SAFETY:` comment, handles are
//! reference-counted so a pool handle never outlives its cluster, and an operation's
//! buffers live in a heap allocation freed only after librados' completion callback ran,
//! so dropping a future mid-flight is safe.
//!
//! ```no_run
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_api::Parameters;
//! let d = driver_api::factory::create(
//!     "rados",
//!     Parameters::new().with("poolname", "registry").with("username", "registry"),
//! )
//! .await?;
//! d.put_content("/hello", "world").await?;
//! # Ok(()) }
//! ```

pub mod params;
pub mod sys;
mod writer;

use driver_api::Operation;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use driver_api::keys::KeySpace;
use driver_api::{
    register_driver, ByteStream, FileInfo, FileWriter, Parameters, Result, StorageDriver,
    StorageError, StoragePath, WalkFn, WalkOptions,
};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::params::RadosParams;
use crate::sys::{Cluster, ConnectError, IoCtx, RadosError, WriteAction};
use crate::writer::RadosWriter;

/// The registered name.
pub const DRIVER: &str = "rados";

/// Omap entries per read (the OSD caps a reply at `osd_max_omap_entries_per_request`).
const OMAP_PAGE: u64 = 1000;
/// Largest read request; a reader keeps up to [`READ_AHEAD`] of them in flight.
const READ_PIECE: u64 = 1 << 20;
/// Reads in flight per reader (memory: `READ_AHEAD × min(chunk, READ_PIECE)`).
const READ_AHEAD: usize = 4;
/// Operations in flight for bulk work (removing chunks, writing a put_content's chunks).
const CONCURRENCY: usize = 8;
/// Attempts of a guarded head swap under contention.
const HEAD_ATTEMPTS: usize = 50;

register_driver! {
    name: DRIVER,
    description: "Ceph RADOS via librados (loaded at run time): chunk objects, omap directory listings",
    parameters: params::PARAMS,
    create: RadosDriver::from_parameters,
}

/// Failures of the driver itself (wrapped in [`StorageError::Backend`]).
#[derive(Debug, thiserror::Error)]
pub enum RadosDriverError {
    /// A librados call failed.
    #[error(transparent)]
    Rados(#[from] RadosError),
    /// The configured pool cannot be opened: librados says it does not exist.
    #[error("cannot open the pool (does it exist?)")]
    NoPool(#[source] RadosError),
    /// A head, upload or directory entry could not be parsed.
    #[error("corrupt {what} in object {oid:?}: {reason}")]
    Corrupt {
        /// What was read.
        what: &'static str,
        /// The object.
        oid: String,
        /// Why it is unreadable.
        reason: String,
    },
    /// A chunk was shorter than its file's size says.
    #[error("chunk {oid:?} holds {got} bytes at offset {offset}, expected {expected}")]
    ShortChunk {
        /// The chunk object.
        oid: String,
        /// Offset in the chunk.
        offset: u64,
        /// Bytes expected.
        expected: u64,
        /// Bytes read.
        got: u64,
    },
    /// The file was replaced or deleted while being read.
    #[error("the file was replaced or deleted while it was read")]
    Replaced,
    /// Too many concurrent writers of one head.
    #[error("gave up swapping the head after {0} attempts under contention")]
    Contention(usize),
    /// A blocking task failed.
    #[error("blocking task failed: {0}")]
    Blocking(String),
    /// No monitor answered while the driver was being created.
    #[error("no answer from the cluster's monitors within {0:?} (connecttimeout): {1}")]
    Unreachable(std::time::Duration, RadosError),
}

/// The RADOS driver. Cheap to clone (one shared connection).
#[derive(Clone)]
pub struct RadosDriver {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    io: Arc<IoCtx>,
    keys: KeySpace,
    p: RadosParams,
}

impl std::fmt::Debug for RadosDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadosDriver")
            .field("params", &self.inner.p)
            .finish_non_exhaustive()
    }
}

/// A file's metadata, the content of its head object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Head {
    /// Bytes.
    size: u64,
    /// Bytes per chunk object.
    chunk: u64,
    /// Generation: the chunk objects' name.
    gen: String,
    /// Modification time, nanoseconds since the epoch.
    mtime_ns: u64,
}

impl Head {
    fn chunks(&self) -> u64 {
        self.size.div_ceil(self.chunk.max(1))
    }
    fn mod_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.mtime_ns)
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A fresh, unique generation name.
pub(crate) fn new_gen() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ns());
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}{:08x}", h.finish(), now_ns() as u32)
}

/// A directory entry: what the omap value of a child says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File { size: u64, mtime_ns: u64 },
    Dir,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        match self {
            Entry::File { size, mtime_ns } => format!("F {size} {mtime_ns}").into_bytes(),
            Entry::Dir => b"D".to_vec(),
        }
    }
    fn decode(v: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.split(' ');
        match it.next()? {
            "D" => Some(Entry::Dir),
            "F" => Some(Entry::File {
                size: it.next()?.parse().ok()?,
                mtime_ns: it.next()?.parse().ok()?,
            }),
            _ => None,
        }
    }
}

impl RadosDriver {
    /// Creates the driver from factory parameters: loads librados, reads the
    /// configuration, connects and opens the pool (on a blocking thread).
    pub async fn from_parameters(params: Parameters) -> Result<Self> {
        Self::new(RadosParams::parse(params)?).await
    }

    /// Creates the driver from parsed parameters (see [`from_parameters`](Self::from_parameters)).
    pub async fn new(p: RadosParams) -> Result<Self> {
        let (name, conf, keyring, pool) = (
            p.client_name.clone(),
            p.conf_file.clone(),
            p.keyring.clone(),
            p.pool.clone(),
        );
        let root = StoragePath::root();
        let timeouts = p.timeout_options();
        let opened = tokio::task::spawn_blocking(move || {
            let mut opts: Vec<(&str, &str)> =
                timeouts.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if let Some(k) = keyring.as_deref() {
                opts.push(("keyring", k));
            }
            let cluster = Cluster::connect(&name, conf.as_deref(), &opts)?;
            IoCtx::open(Arc::new(cluster), &pool).map_err(ConnectError::from)
        })
        .await
        .map_err(|e| {
            StorageError::backend(
                DRIVER,
                Operation::Connect,
                &root,
                RadosDriverError::Blocking(e.to_string()),
            )
        })?;
        let io = match opened {
            Ok(io) => io,
            Err(ConnectError::Load(e)) => {
                return Err(StorageError::Config {
                    driver: DRIVER.into(),
                    message: e.to_string(),
                })
            }
            Err(ConnectError::Rados(e)) if e.call == "rados_connect" && e.is_timeout() => {
                return Err(StorageError::Backend {
                    driver: DRIVER.into(),
                    operation: Operation::Connect,
                    path: p.pool.clone(),
                    retryable: true,
                    source: Box::new(RadosDriverError::Unreachable(p.connect_timeout, e)),
                });
            }
            Err(ConnectError::Rados(e)) => {
                let retryable = e.is_retryable();
                let source = if e.call == "rados_ioctx_create" && e.is_not_found() {
                    RadosDriverError::NoPool(e)
                } else {
                    RadosDriverError::Rados(e)
                };
                return Err(StorageError::Backend {
                    driver: DRIVER.into(),
                    operation: Operation::Connect,
                    path: p.pool.clone(),
                    retryable,
                    source: Box::new(source),
                });
            }
        };
        tracing::debug!(pool = %p.pool, client = %p.client_name, "rados: connected");
        Ok(Self {
            inner: Arc::new(Inner {
                io,
                keys: KeySpace::new(&p.root),
                p,
            }),
        })
    }

    /// RADOS operations this driver (and its clones) submitted so far: a metric, and how
    /// the tests prove that listing a directory reads its omap pages and nothing else.
    pub fn ops(&self) -> u64 {
        self.inner.io.ops()
    }

    /// The object holding `path`'s directory listing (for tests and tools).
    pub fn dir_object(&self, path: &StoragePath) -> String {
        self.inner.dir_oid(path)
    }
}

pub(crate) fn err(
    op: Operation,
    path: &StoragePath,
    e: impl Into<RadosDriverError>,
) -> StorageError {
    let e = e.into();
    if let RadosDriverError::Rados(r) = &e {
        if matches!(r.errno, libc::EACCES | libc::EPERM) {
            return StorageError::permission_denied(DRIVER, op, path, e);
        }
    }
    let retryable = matches!(&e, RadosDriverError::Rados(r) if r.is_retryable());
    StorageError::backend(DRIVER, op, path, e).with_retryable(retryable)
}

impl Inner {
    pub(crate) fn dir_oid(&self, p: &StoragePath) -> String {
        format!("d/{}", self.keys.key(p))
    }
    pub(crate) fn head_oid(&self, p: &StoragePath) -> String {
        format!("f/{}", self.keys.key(p))
    }
    pub(crate) fn upload_oid(&self, p: &StoragePath) -> String {
        format!("u/{}", self.keys.key(p))
    }
    pub(crate) fn chunk_oid(&self, gen: &str, i: u64) -> String {
        format!("c/{}/{gen}.{i}", self.keys.root())
    }

    /// The head of the file at `path`, if any.
    pub(crate) async fn head(&self, op: Operation, path: &StoragePath) -> Result<Option<Head>> {
        let oid = self.head_oid(path);
        match self.io.read(&oid, 0, 64 << 10).await {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                err(
                    op,
                    path,
                    RadosDriverError::Corrupt {
                        what: "head",
                        oid,
                        reason: e.to_string(),
                    },
                )
            }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(err(op, path, e)),
        }
    }

    /// One page of `dir`'s entries after `after`; a missing directory object is empty.
    async fn entries_page(
        &self,
        op: Operation,
        dir: &StoragePath,
        after: &str,
        max: u64,
    ) -> Result<(Vec<(String, Vec<u8>)>, bool)> {
        match self.io.omap_get(&self.dir_oid(dir), after, max).await {
            Ok(page) => Ok(page),
            Err(e) if e.is_not_found() => Ok((Vec::new(), false)),
            Err(e) => Err(err(op, dir, e)),
        }
    }

    /// Every entry of `dir`, in key order.
    async fn entries(&self, op: Operation, dir: &StoragePath) -> Result<Vec<(String, Entry)>> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let (page, more) = self.entries_page(op, dir, &after, OMAP_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            for (k, v) in page {
                let e = Entry::decode(&v).ok_or_else(|| {
                    err(
                        op,
                        dir,
                        RadosDriverError::Corrupt {
                            what: "directory entry",
                            oid: self.dir_oid(dir),
                            reason: format!("entry {k:?}"),
                        },
                    )
                })?;
                out.push((k, e));
            }
            if !more {
                break;
            }
        }
        Ok(out)
    }

    async fn dir_exists(&self, op: Operation, dir: &StoragePath) -> Result<bool> {
        Ok(!self.entries_page(op, dir, "", 1).await?.0.is_empty())
    }

    /// Swaps `path`'s head for `new` atomically (guarded by the generation it replaces);
    /// returns the head replaced.
    pub(crate) async fn install_head(
        &self,
        op: Operation,
        path: &StoragePath,
        new: &Head,
    ) -> Result<Option<Head>> {
        let oid = self.head_oid(path);
        let body = Bytes::from(serde_json::to_vec(new).map_err(|e| {
            err(
                op,
                path,
                RadosDriverError::Corrupt {
                    what: "head",
                    oid: oid.clone(),
                    reason: e.to_string(),
                },
            )
        })?);
        for _ in 0..HEAD_ATTEMPTS {
            let old = self.head(op, path).await?;
            let guard = match &old {
                None => WriteAction::CreateExclusive,
                Some(h) => WriteAction::AssertXattr("gen".into(), h.gen.as_bytes().to_vec()),
            };
            let actions = vec![
                guard,
                WriteAction::WriteFull(body.clone()),
                WriteAction::SetXattr("gen".into(), new.gen.as_bytes().to_vec()),
            ];
            match self.io.operate(&oid, actions).await {
                Ok(()) => return Ok(old),
                Err(e) if e.is_guard_failure() => continue,
                Err(e) => return Err(err(op, path, e)),
            }
        }
        Err(err(op, path, RadosDriverError::Contention(HEAD_ATTEMPTS)))
    }

    /// Adds `path` (a file described by `head`) to its directory, then each ancestor to
    /// its parent, bottom-up.
    pub(crate) async fn link(&self, op: Operation, path: &StoragePath, head: &Head) -> Result<()> {
        let mut child = path.clone();
        let mut value = Entry::File {
            size: head.size,
            mtime_ns: head.mtime_ns,
        }
        .encode();
        while let (Some(parent), Some(name)) = (child.parent(), child.file_name()) {
            let set = WriteAction::OmapSet(vec![(name.to_owned(), value)]);
            self.io
                .operate(&self.dir_oid(&parent), vec![set])
                .await
                .map_err(|e| err(op, path, e))?;
            if parent.is_root() {
                break;
            }
            child = parent;
            value = Entry::Dir.encode();
        }
        Ok(())
    }

    /// Removes `path`'s entry from its directory.
    async fn unlink(&self, op: Operation, path: &StoragePath) -> Result<()> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(());
        };
        match self
            .io
            .operate(
                &self.dir_oid(&parent),
                vec![WriteAction::OmapRemove(vec![name.to_owned()])],
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(err(op, path, e)),
        }
    }

    /// Removes `dir` and its ancestors (below the root) while they are empty.
    async fn prune(&self, op: Operation, mut dir: StoragePath) -> Result<()> {
        while !dir.is_root() {
            if self.dir_exists(op, &dir).await? {
                break;
            }
            match self.io.remove(&self.dir_oid(&dir)).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(err(op, &dir, e)),
            }
            self.unlink(op, &dir).await?;
            match dir.parent() {
                Some(p) => dir = p,
                None => break,
            }
        }
        Ok(())
    }

    /// Removes chunks `0..count` of `gen`, then (when `probe`) any further ones up to the
    /// first missing (an upload whose state was not saved).
    pub(crate) async fn remove_chunks(
        &self,
        gen: &str,
        count: u64,
        probe: bool,
    ) -> std::result::Result<(), RadosError> {
        futures::stream::iter(0..count)
            .map(|i| {
                let oid = self.chunk_oid(gen, i);
                async move {
                    match self.io.remove(&oid).await {
                        Err(e) if !e.is_not_found() => Err(e),
                        _ => Ok(()),
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await?;
        if probe {
            let mut i = count;
            loop {
                match self.io.remove(&self.chunk_oid(gen, i)).await {
                    Ok(()) => i += 1,
                    Err(e) if e.is_not_found() => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Removes a replaced head's chunks; failures only leave garbage, so they are logged.
    async fn drop_old(&self, old: Option<Head>, new_gen: &str) {
        if let Some(old) = old.filter(|o| o.gen != new_gen) {
            if let Err(e) = self.remove_chunks(&old.gen, old.chunks(), false).await {
                tracing::warn!(gen = %old.gen, error = %e, "rados: could not remove replaced chunks");
            }
        }
    }

    /// Makes `head` (whose chunks are written) the file at `path`: head swap, directory
    /// entries, then the replaced content's chunks are removed.
    pub(crate) async fn commit(
        &self,
        op: Operation,
        path: &StoragePath,
        head: &Head,
    ) -> Result<()> {
        let old = self.install_head(op, path, head).await?;
        self.link(op, path, head).await?;
        self.drop_old(old, &head.gen).await;
        Ok(())
    }

    /// The `(chunk, offset, len)` reads covering `[from, head.size)`.
    fn pieces(head: &Head, from: u64) -> impl Iterator<Item = (u64, u64, u64)> + Send + 'static {
        let (size, chunk) = (head.size, head.chunk.max(1));
        let piece = chunk.min(READ_PIECE);
        let mut pos = from;
        std::iter::from_fn(move || {
            if pos >= size {
                return None;
            }
            let (i, off) = (pos / chunk, pos % chunk);
            let len = (piece - off % piece).min(chunk - off).min(size - pos);
            pos += len;
            Some((i, off, len))
        })
    }

    async fn read_piece(
        io: Arc<IoCtx>,
        oid: String,
        off: u64,
        len: u64,
    ) -> std::result::Result<Bytes, RadosDriverError> {
        match io.read(&oid, off, len as usize).await {
            Ok(b) if b.len() as u64 == len => Ok(Bytes::from(b)),
            Ok(b) => Err(RadosDriverError::ShortChunk {
                oid,
                offset: off,
                expected: len,
                got: b.len() as u64,
            }),
            Err(e) if e.is_not_found() => Err(RadosDriverError::Replaced),
            Err(e) => Err(e.into()),
        }
    }

    /// A stream of `head`'s content from `from`.
    fn stream(
        self: &Arc<Self>,
        head: &Head,
        from: u64,
    ) -> futures::stream::BoxStream<'static, std::result::Result<Bytes, RadosDriverError>> {
        let me = self.clone();
        let gen = head.gen.clone();
        futures::stream::iter(Self::pieces(head, from))
            .map(move |(i, off, len)| {
                Self::read_piece(me.io.clone(), me.chunk_oid(&gen, i), off, len)
            })
            .buffered(READ_AHEAD)
            .boxed()
    }

    async fn put(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        let chunk = self.p.chunk_size;
        let head = Head {
            size: content.len() as u64,
            chunk,
            gen: new_gen(),
            mtime_ns: now_ns(),
        };
        let n = head.chunks();
        let written = futures::stream::iter(0..n)
            .map(|i| {
                let start = (i * chunk) as usize;
                let end = ((i + 1) * chunk).min(head.size) as usize;
                let oid = self.chunk_oid(&head.gen, i);
                let data = content.slice(start..end);
                async move { self.io.write_full(&oid, data).await }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await;
        if let Err(e) = written {
            let _ = self.remove_chunks(&head.gen, n, false).await;
            return Err(err(Operation::PutContent, path, e));
        }
        if let Err(e) = self.commit(Operation::PutContent, path, &head).await {
            // Only when the head was not swapped are the chunks ours to remove.
            if self
                .head(Operation::PutContent, path)
                .await
                .ok()
                .flatten()
                .map(|h| h.gen)
                != Some(head.gen.clone())
            {
                let _ = self.remove_chunks(&head.gen, n, false).await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Deletes everything below `dir` (already unlinked from its parent): each page of
    /// entries is unlinked in one operation before what it names is removed.
    fn delete_tree<'a>(&'a self, dir: StoragePath) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            loop {
                let (page, _) = self
                    .entries_page(Operation::Delete, &dir, "", OMAP_PAGE)
                    .await?;
                if page.is_empty() {
                    break;
                }
                let names: Vec<String> = page.iter().map(|(k, _)| k.clone()).collect();
                self.io
                    .operate(&self.dir_oid(&dir), vec![WriteAction::OmapRemove(names)])
                    .await
                    .map_err(|e| err(Operation::Delete, &dir, e))?;
                let children: Vec<(StoragePath, bool)> = page
                    .iter()
                    .filter_map(|(k, v)| {
                        let is_dir = matches!(Entry::decode(v), Some(Entry::Dir));
                        dir.child(k).map(|c| (c, is_dir))
                    })
                    .collect();
                futures::stream::iter(children)
                    .map(|(child, is_dir)| async move {
                        if is_dir {
                            self.delete_tree(child).await
                        } else {
                            self.remove_file(&child).await
                        }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .try_collect::<()>()
                    .await?;
            }
            match self.io.remove(&self.dir_oid(&dir)).await {
                Ok(()) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(err(Operation::Delete, &dir, e)),
            }
        })
    }

    /// Removes a file's head, then its chunks (its entry is already gone).
    async fn remove_file(&self, path: &StoragePath) -> Result<()> {
        let Some(head) = self.head(Operation::Delete, path).await? else {
            return Ok(());
        };
        let guarded = vec![
            WriteAction::AssertXattr("gen".into(), head.gen.as_bytes().to_vec()),
            WriteAction::Remove,
        ];
        match self.io.operate(&self.head_oid(path), guarded).await {
            Ok(()) => {}
            // Replaced meanwhile: the new content is someone else's to keep.
            Err(e) if e.is_guard_failure() || e.is_not_found() => return Ok(()),
            Err(e) => return Err(err(Operation::Delete, path, e)),
        }
        self.remove_chunks(&head.gen, head.chunks(), false)
            .await
            .map_err(|e| err(Operation::Delete, path, e))
    }

    fn info(&self, dir: &StoragePath, name: &str, e: &Entry) -> Option<FileInfo> {
        let path = dir.child(name)?;
        Some(match e {
            Entry::File { size, mtime_ns } => FileInfo {
                path,
                size: *size,
                mod_time: UNIX_EPOCH + Duration::from_nanos(*mtime_ns),
                is_dir: false,
            },
            Entry::Dir => FileInfo {
                path,
                size: 0,
                mod_time: UNIX_EPOCH,
                is_dir: true,
            },
        })
    }
}

#[async_trait]
impl StorageDriver for RadosDriver {
    fn name(&self) -> &str {
        DRIVER
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        let s = &self.inner;
        let mut attempt = 0;
        loop {
            let head = s
                .head(Operation::GetContent, path)
                .await?
                .ok_or_else(|| StorageError::not_found(DRIVER, path))?;
            let mut buf = BytesMut::with_capacity(head.size as usize);
            let mut stream = s.stream(&head, 0);
            let mut failed = None;
            while let Some(piece) = stream.next().await {
                match piece {
                    Ok(b) => buf.extend_from_slice(&b),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => return Ok(buf.freeze()),
                // Replaced while read: read the new content.
                Some(RadosDriverError::Replaced) if attempt < 10 => attempt += 1,
                Some(e) => return Err(err(Operation::GetContent, path, e)),
            }
        }
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        self.inner.put(path, content).await
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let s = &self.inner;
        let head = s
            .head(Operation::Reader, path)
            .await?
            .ok_or_else(|| StorageError::not_found(DRIVER, path))?;
        if offset > head.size {
            return Err(StorageError::invalid_offset(
                DRIVER, path, offset, head.size,
            ));
        }
        let p = path.clone();
        Ok(s.stream(&head, offset)
            .map_err(move |e| err(Operation::Reader, &p, e))
            .boxed())
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>> {
        Ok(Box::new(
            RadosWriter::open(self.inner.clone(), path, append).await?,
        ))
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let s = &self.inner;
        if !path.is_root() {
            if let Some(h) = s.head(Operation::Stat, path).await? {
                return Ok(FileInfo {
                    path: path.clone(),
                    size: h.size,
                    mod_time: h.mod_time(),
                    is_dir: false,
                });
            }
            if !s.dir_exists(Operation::Stat, path).await? {
                return Err(StorageError::not_found(DRIVER, path));
            }
        }
        Ok(FileInfo {
            path: path.clone(),
            size: 0,
            mod_time: UNIX_EPOCH,
            is_dir: true,
        })
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        let entries = self.inner.entries(Operation::List, path).await?;
        if entries.is_empty() && !path.is_root() {
            return Err(StorageError::not_found(DRIVER, path));
        }
        let mut out: Vec<StoragePath> = entries.iter().filter_map(|(k, _)| path.child(k)).collect();
        out.sort();
        Ok(out)
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let head = s
            .head(Operation::Rename, src)
            .await?
            .ok_or_else(|| StorageError::not_found(DRIVER, src))?;
        if src == dst {
            return Ok(());
        }
        // The destination's head names the source's chunks: no byte is copied.
        let old = s.install_head(Operation::Rename, dst, &head).await?;
        s.link(Operation::Rename, dst, &head).await?;
        s.unlink(Operation::Rename, src).await?;
        let guarded = vec![
            WriteAction::AssertXattr("gen".into(), head.gen.as_bytes().to_vec()),
            WriteAction::Remove,
        ];
        match s.io.operate(&s.head_oid(src), guarded).await {
            Ok(()) => {}
            Err(e) if e.is_guard_failure() || e.is_not_found() => {}
            Err(e) => return Err(err(Operation::Rename, src, e)),
        }
        if let Some(parent) = src.parent() {
            s.prune(Operation::Rename, parent).await?;
        }
        s.drop_old(old, &head.gen).await;
        Ok(())
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let s = &self.inner;
        let parent = path.parent().unwrap_or_else(StoragePath::root);
        if s.head(Operation::Delete, path).await?.is_some() {
            s.unlink(Operation::Delete, path).await?;
            s.remove_file(path).await?;
        } else if s.dir_exists(Operation::Delete, path).await? {
            // Unlinking first hides the whole tree from listings at once.
            s.unlink(Operation::Delete, path).await?;
            s.delete_tree(path.clone()).await?;
        } else {
            return Err(StorageError::not_found(DRIVER, path));
        }
        s.prune(Operation::Delete, parent).await
    }

    async fn walk(
        &self,
        path: &StoragePath,
        options: &WalkOptions,
        f: &mut WalkFn<'_>,
    ) -> Result<()> {
        let s = self.inner.clone();
        let top = path.clone();
        driver_api::walk::walk_with(path, options, f, move |dir: StoragePath| {
            let s = s.clone();
            let is_top = dir == top;
            async move {
                let entries = s.entries(Operation::Walk, &dir).await?;
                // A subdirectory emptied during the walk is just empty.
                if entries.is_empty() && is_top && !dir.is_root() {
                    return Err(StorageError::not_found(DRIVER, &dir));
                }
                Ok(entries
                    .iter()
                    .filter_map(|(k, e)| s.info(&dir, k, e))
                    .collect())
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entries_round_trip() {
        for e in [
            Entry::Dir,
            Entry::File {
                size: 12,
                mtime_ns: 34,
            },
        ] {
            assert_eq!(Entry::decode(&e.encode()), Some(e));
        }
        assert_eq!(Entry::decode(b"X"), None);
        assert_eq!(Entry::decode(b"F 1"), None);
    }

    #[test]
    fn pieces_cover_the_range_without_crossing_chunks() {
        let head = Head {
            size: 10 * (3 << 20) + 5,
            chunk: 3 << 20,
            gen: "g".into(),
            mtime_ns: 0,
        };
        for from in [0, 1, (3 << 20) - 1, 3 << 20, head.size - 1, head.size] {
            let mut pos = from;
            for (i, off, len) in Inner::pieces(&head, from) {
                assert_eq!(i * head.chunk + off, pos, "contiguous");
                assert!(off + len <= head.chunk && len <= READ_PIECE && len > 0);
                pos += len;
            }
            assert_eq!(pos, head.size.max(from));
        }
        assert_eq!(head.chunks(), 11);
    }

    #[test]
    fn generations_are_unique() {
        let a: std::collections::HashSet<String> = (0..1000).map(|_| new_gen()).collect();
        assert_eq!(a.len(), 1000);
    }
}
