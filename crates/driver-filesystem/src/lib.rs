//! `filesystem`: a storage driver on a local directory tree, with crash-safe writes.
//!
//! Path `/a/b` is the file `<rootdirectory>/a/b`. What this driver adds to Distribution's:
//!
//! * **Crash-safe, atomic writes.** `put_content` and `commit` write a temporary file in the
//!   target's directory, `fdatasync` it, `rename` it over the target and `fsync` the
//!   directory: a reader or a crash sees the old or the new content, never a torn file.
//! * **Resumable uploads across processes.** An upload for `/a/b` lives in `a/b#upload`
//!   until committed; `writer(path, true)` in any process resumes it.
//! * **Nothing outside the root, nothing visible that isn't committed.** Paths are
//!   validated [`StoragePath`]s; temporary and upload files carry a `#`, which the path
//!   grammar rejects, so they can never collide with, or be listed as, a user path.
//! * **Implicit directories.** Empty directories left by `delete`, `rename` or `cancel`
//!   are removed, so a directory exists exactly while something lives below it.
//! * **Off the async workers.** Every syscall runs on tokio's blocking pool, at most
//!   `maxthreads` at once, one hop per operation (one per chunk for streams), except brief
//!   metadata calls (`stat`, `list`, opening a reader, `get_content` of files up to
//!   64 KiB), which run in place where that is safe (see
//!   [`BlockingPool::run_brief`](driver_api::blocking::BlockingPool::run_brief)).
//!
//! ```no_run
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_api::{factory, Parameters};
//! use driver_filesystem as _; // link the driver so the factory finds it
//! let driver = factory::create(
//!     "filesystem",
//!     Parameters::new().with("rootdirectory", "/var/lib/registry"),
//! )
//! .await?;
//! driver.put_content("/docker/registry/v2/hello", "world").await?;
//! # Ok(()) }
//! ```

use driver_api::Operation;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

mod listcache;

use async_trait::async_trait;
use bytes::Bytes;
use driver_api::blocking::BlockingPool;
use driver_api::{
    walk, ByteStream, FileInfo, FileWriter, Leftover, LeftoverKind, ParamKind, ParamSpec,
    Parameters, Result, StorageDriver, StorageError, StoragePath, WalkFn, WalkOptions,
};

/// The registered name.
pub const NAME: &str = "filesystem";

/// Distribution's default root.
pub const DEFAULT_ROOT: &str = "/var/lib/registry";
/// Default cap on concurrent blocking calls.
pub const DEFAULT_MAX_THREADS: usize = 100;
/// Smallest accepted `maxthreads` (smaller values are raised to it, as Distribution does).
pub const MIN_MAX_THREADS: usize = 25;

/// Default number of directories whose listings are cached.
pub const DEFAULT_LIST_CACHE: usize = 4096;

/// Bytes per reader chunk.
const READ_CHUNK: usize = 1 << 20;
/// `get_content` reads files up to this size within its brief opening call.
const BRIEF_READ: usize = 64 << 10;
/// Writers gather up to this many bytes of written chunks before one blocking write.
const WRITE_BUFFER: usize = 1 << 20;
/// Suffix of an uncommitted upload's file (`#` cannot appear in a storage path).
const UPLOAD_SUFFIX: &str = "#upload";

static PARAMS: [ParamSpec; 3] = [
    ParamSpec::new(
        "rootdirectory",
        ParamKind::String,
        "directory under which all files are stored",
    )
    .default_value(DEFAULT_ROOT),
    ParamSpec::new(
        "maxthreads",
        ParamKind::Integer {
            min: None,
            max: None,
        },
        "most blocking filesystem calls at once (values below 25 are raised to 25)",
    )
    .default_value("100"),
    ParamSpec::new(
        "listcache",
        ParamKind::Integer {
            min: None,
            max: None,
        },
        "directories whose listings are cached, validated by the directory's inode and times (0 disables)",
    )
    .default_value("4096"),
];

driver_api::register_driver! {
    name: NAME,
    description: "a local directory tree, crash-safe writes",
    parameters: &PARAMS,
    create: |params| async move { FilesystemDriver::from_parameters(params) },
}

/// The filesystem driver.
#[derive(Debug, Clone)]
pub struct FilesystemDriver {
    root: Arc<PathBuf>,
    pool: BlockingPool,
    lists: Arc<listcache::ListCache>,
}

impl FilesystemDriver {
    /// A driver rooted at `root` with at most `max_threads` blocking calls at once.
    pub fn new(root: impl Into<PathBuf>, max_threads: usize) -> Self {
        Self {
            root: Arc::new(root.into()),
            pool: BlockingPool::new(max_threads.max(MIN_MAX_THREADS)),
            lists: Arc::new(listcache::ListCache::new(DEFAULT_LIST_CACHE)),
        }
    }

    /// Builder: cache the listings of at most `dirs` directories (0 disables the cache).
    pub fn with_list_cache(mut self, dirs: usize) -> Self {
        self.lists = Arc::new(listcache::ListCache::new(dirs));
        self
    }

    /// The factory entry point (`rootdirectory`, `maxthreads`).
    pub fn from_parameters(params: Parameters) -> Result<Self> {
        let mut r = params.reader(NAME, &PARAMS);
        let root = r
            .string("rootdirectory")?
            .unwrap_or_else(|| DEFAULT_ROOT.into());
        let max = r.u64("maxthreads")?.unwrap_or(DEFAULT_MAX_THREADS as u64);
        let list_cache = r.u64("listcache")?.unwrap_or(DEFAULT_LIST_CACHE as u64);
        r.finish()?;
        if root.is_empty() {
            return Err(StorageError::InvalidParameter {
                driver: NAME.into(),
                key: "rootdirectory".into(),
                expected: "a non-empty directory path".into(),
            });
        }
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if max < MIN_MAX_THREADS {
            tracing::warn!(
                maxthreads = max,
                "maxthreads below {MIN_MAX_THREADS}, using {MIN_MAX_THREADS}"
            );
        }
        Ok(Self::new(root, max).with_list_cache(usize::try_from(list_cache).unwrap_or(usize::MAX)))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &StoragePath) -> PathBuf {
        self.root.join(path.relative())
    }

    /// Runs blocking `f` on the pool, mapping io errors for `op` on `path`.
    async fn run<T, F>(&self, op: Operation, path: &StoragePath, f: F) -> Result<T>
    where
        F: FnOnce() -> io::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        Self::mapped(op, path, self.pool.run(f).await)
    }

    /// As [`FilesystemDriver::run`], for brief metadata calls (see
    /// [`BlockingPool::run_brief`]).
    async fn run_brief<T, F>(&self, op: Operation, path: &StoragePath, f: F) -> Result<T>
    where
        F: FnOnce() -> io::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        Self::mapped(op, path, self.pool.run_brief(f).await)
    }

    fn mapped<T>(
        op: Operation,
        path: &StoragePath,
        res: std::result::Result<io::Result<T>, driver_api::blocking::BlockingError>,
    ) -> Result<T> {
        Self::mapped_as(op, creates(op), path, res)
    }

    /// As [`FilesystemDriver::mapped`], saying whether `op` creates `path` (a rename
    /// creates its destination, not its source).
    fn mapped_as<T>(
        op: Operation,
        creating: bool,
        path: &StoragePath,
        res: std::result::Result<io::Result<T>, driver_api::blocking::BlockingError>,
    ) -> Result<T> {
        match res {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(io_error_as(op, creating, path, e)),
            Err(e) => Err(StorageError::backend(NAME, op, path, e)),
        }
    }
}

/// Operations that create their path: for them, a file where a directory is needed
/// (`ENOTDIR`) is a conflict, not a missing path. (A rename creates its destination;
/// see [`FilesystemDriver::mapped_as`].)
fn creates(op: Operation) -> bool {
    matches!(
        op,
        Operation::PutContent | Operation::Writer | Operation::Commit
    )
}

/// Maps an io error: a missing file (or, when reading, a file where a directory was
/// expected) is `PathNotFound`; everything else is a backend error.
fn io_error(op: Operation, path: &StoragePath, e: io::Error) -> StorageError {
    io_error_as(op, creates(op), path, e)
}

/// [`io_error`] for an operation that does (`creating`) or does not create `path`.
fn io_error_as(op: Operation, creating: bool, path: &StoragePath, e: io::Error) -> StorageError {
    let missing = if creating {
        e.kind() == io::ErrorKind::NotFound
    } else {
        is_missing(&e)
    };
    if missing {
        StorageError::not_found(NAME, path)
    } else if e.kind() == io::ErrorKind::PermissionDenied {
        StorageError::permission_denied(NAME, op, path, e)
    } else {
        let retryable = matches!(
            e.kind(),
            io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
        );
        StorageError::backend(NAME, op, path, e).with_retryable(retryable)
    }
}

fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

fn upload_path(full: &Path) -> PathBuf {
    let mut s = full.as_os_str().to_owned();
    s.push(UPLOAD_SUFFIX);
    PathBuf::from(s)
}

/// A fresh temporary name beside `full` (`name#tmp.<pid>.<n>`).
fn temp_path(full: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut s = full.as_os_str().to_owned();
    s.push(format!("#tmp.{}.{n}", std::process::id()));
    PathBuf::from(s)
}

/// Adds the upload (`#upload`) and temporary (`#tmp.`) files of `dir` (only those whose
/// name starts with `only`, if given) to `found`.
fn leftovers_in(
    root: &Path,
    dir: &Path,
    only: Option<&std::ffi::OsStr>,
    found: &mut Vec<Leftover>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_missing(&e) || e.raw_os_error() == Some(20) => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if only
            .and_then(|o| o.to_str())
            .is_some_and(|o| !name.starts_with(o))
        {
            continue;
        }
        let Some((target, rest)) = name.split_once('#') else {
            continue;
        };
        let kind = if rest == &UPLOAD_SUFFIX[1..] {
            LeftoverKind::Parked
        } else if rest.starts_with("tmp.") {
            LeftoverKind::TempFile
        } else {
            continue;
        };
        let md = e.metadata()?;
        if !md.is_file() {
            continue;
        }
        let file = e.path();
        let Some(rel) = file.strip_prefix(root).ok().and_then(Path::to_str) else {
            continue;
        };
        let Some(parent) = rel.rsplit_once('/').map(|(p, _)| p) else {
            let Ok(path) = StoragePath::new(&format!("/{target}")) else {
                continue;
            };
            found.push(leftover(path, kind, rel, &md));
            continue;
        };
        let Ok(path) = StoragePath::new(&format!("/{parent}/{target}")) else {
            continue;
        };
        found.push(leftover(path, kind, rel, &md));
    }
    Ok(())
}

fn leftover(path: StoragePath, kind: LeftoverKind, id: &str, md: &fs::Metadata) -> Leftover {
    Leftover {
        path,
        kind,
        id: id.to_owned(),
        modified: md.modified().ok(),
        size: Some(md.len()),
    }
}

/// `fsync`s a directory so that entries created, renamed or removed in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and missing ancestors up to `root`, making each new entry durable. The
/// root itself is created with all its missing parents.
fn ensure_dir(root: &Path, dir: &Path) -> io::Result<()> {
    if dir == root {
        return fs::create_dir_all(root);
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound && dir != root => {
            if let Some(parent) = dir.parent() {
                ensure_dir(root, parent)?;
            }
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(parent) if dir != root => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Creates a new file with `open`, creating missing directories on the way. Retries when a
/// concurrent delete prunes a directory between the two steps.
fn create_in_dir(
    root: &Path,
    file: &Path,
    open: impl Fn(&Path) -> io::Result<File>,
) -> io::Result<File> {
    let mut attempts = 0;
    loop {
        match open(file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 8 => {
                attempts += 1;
                if let Some(dir) = file.parent() {
                    ensure_dir(root, dir)?;
                }
            }
            other => return other,
        }
    }
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Removes empty directories from `dir` upwards, stopping below `root` or at the first
/// directory that is not empty.
fn prune_empty_dirs(root: &Path, dir: Option<&Path>) {
    let mut cur = dir;
    while let Some(d) = cur {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            return;
        }
        cur = d.parent();
    }
}

/// Writes `data` to `full` atomically and durably: temp file, fdatasync, rename, fsync dir.
fn write_atomic(root: &Path, full: &Path, data: &[u8]) -> io::Result<()> {
    let (tmp, mut file) = loop {
        let tmp = temp_path(full);
        match create_in_dir(root, &tmp, create_new) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let res = file
        .write_all(data)
        .and_then(|_| file.sync_data())
        .and_then(|_| fs::rename(&tmp, full));
    drop(file);
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(full.parent().unwrap_or(root))
}

fn file_info(path: StoragePath, md: &fs::Metadata) -> FileInfo {
    let is_dir = md.is_dir();
    FileInfo {
        path,
        size: if is_dir { 0 } else { md.len() },
        mod_time: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        is_dir,
    }
}

/// Directory entries whose names are valid path components, as child paths, sorted.
fn read_children(dir: &Path, parent: &StoragePath) -> io::Result<Vec<(StoragePath, fs::DirEntry)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(child) = entry.file_name().to_str().and_then(|n| parent.child(n)) {
            out.push((child, entry));
        }
    }
    // Siblings share their parent's prefix, so plain byte order is walk order here.
    out.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    Ok(out)
}

/// Only the child paths of `dir`, sorted (no metadata: `list` needs none).
fn list_children(dir: &Path, parent: &StoragePath) -> io::Result<Vec<StoragePath>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(child) = entry?.file_name().to_str().and_then(|n| parent.child(n)) {
            out.push(child);
        }
    }
    out.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(out)
}

#[async_trait]
impl StorageDriver for FilesystemDriver {
    fn name(&self) -> &str {
        NAME
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        let full = self.full(path);
        // Opening is brief, and so is reading a small file (link files, manifests, most of
        // what a registry reads): both in one brief call; larger contents on the pool.
        let opened = self
            .run_brief(Operation::GetContent, path, move || {
                let mut f = File::open(&full)?;
                let md = f.metadata()?;
                if md.is_dir() {
                    return Err(io::ErrorKind::NotFound.into());
                }
                if md.len() > BRIEF_READ as u64 {
                    return Ok(Err((f, md.len())));
                }
                let mut buf = driver_api::buffer::read_buffer(md.len() as usize);
                buf.fill_from(&mut f)?;
                Ok(Ok(buf.freeze()))
            })
            .await?;
        match opened {
            Ok(small) => Ok(small),
            Err((f, len)) => {
                let mut buf = driver_api::buffer::read_buffer(len as usize);
                self.run(Operation::GetContent, path, move || {
                    buf.fill_from(&mut &f)?;
                    Ok(buf.freeze())
                })
                .await
            }
        }
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        let (root, full) = (self.root.clone(), self.full(path));
        self.run(Operation::PutContent, path, move || {
            write_atomic(&root, &full, &content)
        })
        .await
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let full = self.full(path);
        // Opening is a brief metadata call; the chunks are read on the blocking pool.
        let (file, size) = self
            .run_brief(Operation::Reader, path, move || {
                let mut f = File::open(&full)?;
                let md = f.metadata()?;
                if md.is_dir() {
                    return Err(io::ErrorKind::NotFound.into());
                }
                if offset <= md.len() {
                    f.seek(SeekFrom::Start(offset))?;
                }
                Ok((f, md.len()))
            })
            .await?;
        if offset > size {
            return Err(StorageError::invalid_offset(NAME, path, offset, size));
        }
        let state = ReadState {
            driver: self.clone(),
            path: path.clone(),
            file: Some(file),
            remaining: size - offset,
        };
        Ok(Box::pin(futures::stream::unfold(state, ReadState::next)))
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>> {
        if !append {
            // A fresh upload touches the disk only in its first blocking call (flush, close,
            // commit), which creates the upload file, truncating any earlier one.
            return Ok(Box::new(FsWriter::new(self.clone(), path.clone(), None, 0)));
        }
        let (root, full) = (self.root.clone(), self.full(path));
        let p = path.clone();
        let (file, size) = self
            .run(Operation::Writer, path, move || {
                let up = upload_path(&full);
                match OpenOptions::new().append(true).open(&up) {
                    Ok(f) => {
                        let size = f.metadata()?.len();
                        Ok(Ok((f, size)))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // No upload: resuming is allowed on committed, empty content only.
                        let md = fs::metadata(&full)?;
                        if md.is_dir() {
                            return Ok(Err(StorageError::Unsupported {
                                driver: NAME.into(),
                                operation: Operation::Writer,
                                feature: "appending to a directory".into(),
                                path: Some(p.to_string()),
                            }));
                        }
                        if md.len() > 0 {
                            return Ok(Err(StorageError::append_to_committed(NAME, &p, md.len())));
                        }
                        let f = create_in_dir(&root, &up, |p| File::create(p))?;
                        Ok(Ok((f, 0)))
                    }
                    Err(e) => Err(e),
                }
            })
            .await??;
        Ok(Box::new(FsWriter::new(
            self.clone(),
            path.clone(),
            Some(file),
            size,
        )))
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let full = self.full(path);
        let p = path.clone();
        self.run_brief(Operation::Stat, path, move || match fs::metadata(&full) {
            // The root exists before anything is written (as it lists empty).
            Err(e) if p.is_root() && is_missing(&e) => Ok(FileInfo {
                path: p,
                size: 0,
                mod_time: SystemTime::UNIX_EPOCH,
                is_dir: true,
            }),
            md => Ok(file_info(p, &md?)),
        })
        .await
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        let full = self.full(path);
        let p = path.clone();
        let cache = self.lists.clone();
        self.run_brief(Operation::List, path, move || {
            let read_at = SystemTime::now();
            let md = match fs::metadata(&full) {
                Err(e) if p.is_root() && is_missing(&e) => return Ok(Vec::new()),
                other => other?,
            };
            if !md.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            let stamp = listcache::Stamp::of(&md);
            if let Some(names) = cache.get(&p, &stamp) {
                return Ok(names);
            }
            let names = list_children(&full, &p)?;
            cache.put(&p, stamp, read_at, &names);
            Ok(names)
        })
        .await
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let (root, from, to) = (self.root.clone(), self.full(src), self.full(dst));
        // Check the source first so a missing source reports the source path.
        let from2 = from.clone();
        self.run(Operation::Rename, src, move || {
            fs::symlink_metadata(&from2).map(|_| ())
        })
        .await?;
        let moved = self
            .pool
            .run(move || {
                if let Some(dir) = to.parent() {
                    ensure_dir(&root, dir)?;
                }
                fs::rename(&from, &to)?;
                sync_dir(to.parent().unwrap_or(&root))?;
                prune_empty_dirs(&root, from.parent());
                Ok(())
            })
            .await;
        Self::mapped_as(Operation::Rename, true, dst, moved)
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let (root, full) = (self.root.clone(), self.full(path));
        self.run(Operation::Delete, path, move || {
            let removed_upload = fs::remove_file(upload_path(&full)).is_ok();
            let res = match fs::symlink_metadata(&full) {
                Ok(md) if md.is_dir() => fs::remove_dir_all(&full),
                Ok(_) => fs::remove_file(&full),
                Err(e) if removed_upload && is_missing(&e) => Ok(()),
                Err(e) => Err(e),
            };
            prune_empty_dirs(&root, full.parent());
            res
        })
        .await
    }

    /// `#upload` files (parked: a closed writer's upload) and `#tmp.` files (a write that
    /// never finished, left by a crash or a kill) at or below `path`.
    async fn uploads(&self, path: &StoragePath) -> Result<Vec<Leftover>> {
        let (root, full) = (self.root.clone(), self.full(path));
        let at_root = path.is_root();
        let mut found = self
            .run(Operation::Uploads, path, move || {
                let mut found = Vec::new();
                if !at_root {
                    // The path's own upload and temporary files, beside it.
                    if let (Some(dir), Some(name)) = (full.parent(), full.file_name()) {
                        let mut own = name.to_owned();
                        own.push("#");
                        leftovers_in(&root, dir, Some(&own), &mut found)?;
                    }
                }
                let mut dirs = vec![full];
                while let Some(dir) = dirs.pop() {
                    match fs::read_dir(&dir) {
                        Ok(entries) => {
                            for e in entries {
                                let e = e?;
                                if e.file_type()?.is_dir() {
                                    dirs.push(e.path());
                                }
                            }
                            leftovers_in(&root, &dir, None, &mut found)?;
                        }
                        Err(e) if is_missing(&e) || e.raw_os_error() == Some(20) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(found)
            })
            .await?;
        found.sort_by(|a, b| (&a.path, a.kind, &a.id).cmp(&(&b.path, b.kind, &b.id)));
        Ok(found)
    }

    async fn purge_upload(&self, leftover: &Leftover) -> Result<()> {
        let path = &leftover.path;
        // The id must name an upload or temporary file of this very path.
        let own = path.relative().to_owned();
        let ok = match leftover.kind {
            LeftoverKind::Parked => leftover.id == format!("{own}{UPLOAD_SUFFIX}"),
            LeftoverKind::TempFile => leftover
                .id
                .strip_prefix(&own)
                .and_then(|rest| rest.strip_prefix("#tmp."))
                .is_some_and(|rest| !rest.contains('/')),
            _ => false,
        };
        if !ok || path.is_root() {
            return Err(StorageError::backend(
                NAME,
                Operation::PurgeUpload,
                path,
                format!("{} is not a {} of this path", leftover.id, leftover.kind),
            ));
        }
        let (root, file) = (self.root.clone(), self.root.join(&leftover.id));
        self.run(Operation::PurgeUpload, path, move || {
            match fs::remove_file(&file) {
                Err(e) if !is_missing(&e) => return Err(e),
                _ => {}
            }
            prune_empty_dirs(&root, file.parent());
            Ok(())
        })
        .await
    }

    async fn walk(
        &self,
        path: &StoragePath,
        options: &WalkOptions,
        f: &mut WalkFn<'_>,
    ) -> Result<()> {
        // Up to WALK_BATCH directories per blocking call: a round trip through the pool
        // costs more than reading a small directory (a registry's tree is mostly
        // directories of one file), so a walk reads ahead in batches.
        walk::walk_batched(path, options, f, WALK_BATCH, |dirs| {
            let fulls: Vec<(StoragePath, PathBuf)> =
                dirs.iter().map(|d| (d.clone(), self.full(d))).collect();
            let first = dirs.first().cloned().unwrap_or_else(StoragePath::root);
            async move {
                let read = self
                    .run(Operation::Walk, &first, move || {
                        Ok(fulls
                            .into_iter()
                            .map(|(d, full)| {
                                let res = list_with_metadata(&full, &d);
                                (d, res)
                            })
                            .collect::<Vec<_>>())
                    })
                    .await;
                match read {
                    Ok(listings) => listings
                        .into_iter()
                        .map(|(d, res)| match res {
                            Err(e) if d.is_root() && is_missing(&e) => Ok(Vec::new()),
                            other => Self::mapped(Operation::Walk, &d, Ok(other)),
                        })
                        .collect(),
                    Err(e) => vec![Err(e)],
                }
            }
        })
        .await
    }
}

/// Directories a walk reads per blocking call.
const WALK_BATCH: usize = 16;

/// The children of `dir` with their metadata; a child removed since `readdir` is left out.
fn list_with_metadata(full: &Path, dir: &StoragePath) -> io::Result<Vec<FileInfo>> {
    let children = read_children(full, dir)?;
    let mut out = Vec::with_capacity(children.len());
    for (child, entry) in children {
        match entry.metadata() {
            Ok(md) => out.push(file_info(child, &md)),
            // Removed since readdir: skip.
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// State of a reader stream: the open file, read one chunk per blocking call.
struct ReadState {
    driver: FilesystemDriver,
    path: StoragePath,
    file: Option<File>,
    remaining: u64,
}

impl ReadState {
    async fn next(mut self) -> Option<(Result<Bytes>, ReadState)> {
        if self.remaining == 0 {
            return None;
        }
        let file = self.file.take()?;
        let want = (self.remaining as usize).min(READ_CHUNK);
        // Taken here, in the caller's task, where whoever runs the driver may provide it.
        let mut buf = driver_api::buffer::read_buffer(want);
        let res = self
            .driver
            .run(Operation::Reader, &self.path, move || {
                let n = buf.fill_from(&mut &file)?;
                Ok((file, buf, n))
            })
            .await;
        match res {
            Ok((file, buf, n)) => {
                if n == 0 {
                    // The file shrank under us (it cannot with this driver's writes).
                    self.remaining = 0;
                    return Some((
                        Err(StorageError::backend(
                            NAME,
                            Operation::Reader,
                            &self.path,
                            "unexpected end of file",
                        )),
                        self,
                    ));
                }
                self.remaining -= n as u64;
                self.file = Some(file);
                Some((Ok(buf.freeze()), self))
            }
            Err(e) => {
                self.remaining = 0;
                Some((Err(e), self))
            }
        }
    }
}

/// Writer of the filesystem driver: appends to `name#upload`. Written chunks are kept as
/// given (no copy) until more than [`WRITE_BUFFER`] bytes are pending, then written in one
/// blocking call; `commit` writes what is pending, syncs and renames in one call too. A fresh
/// upload's file is created by the first of those calls.
struct FsWriter {
    driver: FilesystemDriver,
    path: StoragePath,
    /// The upload file: `None` before a fresh upload's first blocking call, while a call
    /// has it, and after close/commit/cancel.
    file: Option<File>,
    /// The upload file is still to be created (fresh upload, nothing done yet).
    create: bool,
    pending: Vec<Bytes>,
    pending_len: usize,
    size: u64,
}

fn write_chunks(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    chunks.iter().try_for_each(|c| file.write_all(c))
}

impl FsWriter {
    fn new(driver: FilesystemDriver, path: StoragePath, file: Option<File>, size: u64) -> Self {
        FsWriter {
            create: file.is_none(),
            driver,
            path,
            file,
            pending: Vec::new(),
            pending_len: 0,
            size,
        }
    }

    fn gone(&self) -> StorageError {
        StorageError::backend(
            NAME,
            Operation::Writer,
            &self.path,
            "upload file is no longer open",
        )
    }

    /// Runs `f` with the upload file (created first if this is a fresh upload's first
    /// call) and the pending chunks on the blocking pool; the file comes back unless `f`
    /// consumes it.
    async fn with_file<T, F>(&mut self, op: Operation, f: F) -> Result<T>
    where
        F: FnOnce(File, Vec<Bytes>) -> (Option<File>, io::Result<T>) + Send + 'static,
        T: Send + 'static,
    {
        let file = self.file.take();
        if file.is_none() && !self.create {
            return Err(self.gone());
        }
        let create = std::mem::take(&mut self.create).then(|| {
            (
                self.driver.root.clone(),
                upload_path(&self.driver.full(&self.path)),
            )
        });
        let chunks = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let (file, res) = self
            .driver
            .pool
            .run(move || {
                let file = match (file, create) {
                    (Some(f), _) => f,
                    (None, Some((root, up))) => {
                        match create_in_dir(&root, &up, |p| File::create(p)) {
                            Ok(f) => f,
                            Err(e) => return (None, Err(e)),
                        }
                    }
                    (None, None) => return (None, Err(io::Error::other("no upload file"))),
                };
                f(file, chunks)
            })
            .await
            .map_err(|e| StorageError::backend(NAME, op, &self.path, e))?;
        self.file = file;
        res.map_err(|e| io_error(op, &self.path, e))
    }

    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() && !self.create {
            return Ok(());
        }
        self.with_file(Operation::Write, |mut file, chunks| {
            let res = write_chunks(&mut file, &chunks);
            (Some(file), res)
        })
        .await
    }
}

#[async_trait]
impl FileWriter for FsWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.size += data.len() as u64;
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len > WRITE_BUFFER {
            self.flush().await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(&mut self) -> Result<()> {
        self.flush().await?;
        self.file = None;
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        self.pending.clear();
        self.file = None;
        self.create = false;
        let (root, full) = (self.driver.root.clone(), self.driver.full(&self.path));
        self.driver
            .run(Operation::Cancel, &self.path, move || {
                let up = upload_path(&full);
                match fs::remove_file(&up) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                prune_empty_dirs(&root, up.parent());
                Ok(())
            })
            .await
    }

    async fn commit(&mut self) -> Result<()> {
        let (root, full) = (self.driver.root.clone(), self.driver.full(&self.path));
        self.with_file(Operation::Commit, move |mut file, chunks| {
            let res = write_chunks(&mut file, &chunks)
                .and_then(|_| file.sync_data())
                .and_then(|_| {
                    drop(file);
                    fs::rename(upload_path(&full), &full)
                })
                .and_then(|_| sync_dir(full.parent().unwrap_or(&root)));
            (None, res)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A refused open (`EACCES`: tests run as root, who is never refused, so the error is
    /// made by hand) is `PermissionDenied`, a missing file `PathNotFound`.
    #[test]
    fn io_errors_are_typed() {
        let p = StoragePath::new("/a/b").unwrap();
        let e = io_error(
            Operation::GetContent,
            &p,
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(matches!(e, StorageError::PermissionDenied { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "filesystem: get_content /a/b: permission denied: Permission denied (os error 13)"
        );
        let e = io_error(Operation::GetContent, &p, io::ErrorKind::NotFound.into());
        assert!(e.is_not_found());
    }
}
