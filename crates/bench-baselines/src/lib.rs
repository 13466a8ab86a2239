//! Reference stores for side-by-side benchmarks: the same
//! [`driver_testsuite::bench::BenchStore`] operations done by raw syscalls (the
//! physical floor) and by a peer library (`object_store`), so every ratio in a report comes
//! from one run on one disk.
//!
//! Not published; `cargo xtask bench <driver>` runs the comparison for drivers that have one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use driver_api::async_trait;
use driver_testsuite::bench::{BenchResult, BenchStore};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// The directory benchmarks write into: `DRIVER_BENCH_DIR`, else the system temp dir.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("DRIVER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("storage-bench-{}", std::process::id()))
}

/// How a raw store writes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// Temp file, `fdatasync`, `rename`, `fsync` of the directory: the crash-safe floor.
    CrashSafe,
    /// Write in place and `fdatasync` (`dd conv=fdatasync`): the throughput floor.
    Dd,
}

/// Raw `std::fs` calls on tokio's blocking pool, one hop per operation.
#[derive(Debug, Clone)]
pub struct RawFs {
    root: Arc<PathBuf>,
    mode: RawMode,
}

impl RawFs {
    /// A raw store under `root`.
    pub fn new(root: impl Into<PathBuf>, mode: RawMode) -> Self {
        Self {
            root: Arc::new(root.into()),
            mode,
        }
    }

    fn full(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> BenchResult<T> {
        Ok(tokio::task::spawn_blocking(f).await??)
    }
}

fn open_creating_dirs(path: &Path, open: impl Fn(&Path) -> io::Result<File>) -> io::Result<File> {
    match open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(d) = path.parent() {
                fs::create_dir_all(d)?;
            }
            open(path)
        }
        other => other,
    }
}

fn raw_write(path: &Path, data: &[u8], mode: RawMode) -> io::Result<()> {
    static N: AtomicU64 = AtomicU64::new(0);
    match mode {
        RawMode::Dd => {
            let mut f = open_creating_dirs(path, |p| File::create(p))?;
            f.write_all(data)?;
            f.sync_data()
        }
        RawMode::CrashSafe => {
            let tmp = PathBuf::from(format!(
                "{}.tmp{}",
                path.display(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = open_creating_dirs(&tmp, |p| {
                OpenOptions::new().write(true).create_new(true).open(p)
            })?;
            f.write_all(data)?;
            f.sync_data()?;
            fs::rename(&tmp, path)?;
            File::open(path.parent().unwrap_or(Path::new("/")))?.sync_all()
        }
    }
}

fn count_tree(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let md = e.metadata()?;
        n += 1;
        if md.is_dir() {
            n += count_tree(&e.path())?;
        }
    }
    Ok(n)
}

#[async_trait]
impl BenchStore for RawFs {
    async fn put(&self, path: &str, data: Bytes) -> BenchResult<()> {
        let (p, mode) = (self.full(path), self.mode);
        Self::blocking(move || raw_write(&p, &data, mode)).await
    }
    async fn get(&self, path: &str) -> BenchResult<Bytes> {
        let p = self.full(path);
        Self::blocking(move || fs::read(p).map(Bytes::from)).await
    }
    async fn stream(&self, path: &str, data: Bytes) -> BenchResult<()> {
        let (p, mode) = (self.full(path), self.mode);
        Self::blocking(move || {
            raw_write(&p, &data, mode)?;
            File::open(&p).map(drop)
        })
        .await
    }
    async fn list(&self, dir: &str) -> BenchResult<usize> {
        let p = self.full(dir);
        Self::blocking(move || Ok(fs::read_dir(p)?.count())).await
    }
    async fn delete(&self, path: &str) -> BenchResult<()> {
        let p = self.full(path);
        Self::blocking(move || fs::remove_file(p)).await
    }
    async fn delete_dir(&self, dir: &str) -> BenchResult<()> {
        let p = self.full(dir);
        Self::blocking(move || fs::remove_dir_all(p)).await
    }
    async fn walk(&self, dir: &str) -> BenchResult<usize> {
        let p = self.full(dir);
        Self::blocking(move || count_tree(&p)).await
    }
}

/// An `object_store` store (local filesystem or memory) behind the benchmark operations.
#[derive(Debug)]
pub struct Peer {
    store: Arc<dyn ObjectStore>,
}

impl Peer {
    /// `object_store::local::LocalFileSystem` under `root`, fsync on (crash-safe puts) and
    /// empty directories removed on delete (as our driver does).
    pub fn local_fsync(root: &Path) -> BenchResult<Self> {
        fs::create_dir_all(root)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(root)?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// `object_store::memory::InMemory`.
    pub fn memory() -> Self {
        Self {
            store: Arc::new(object_store::memory::InMemory::new()),
        }
    }

    fn key(p: &str) -> OsPath {
        OsPath::from(p.trim_start_matches('/'))
    }
}

#[async_trait]
impl BenchStore for Peer {
    async fn put(&self, path: &str, data: Bytes) -> BenchResult<()> {
        self.store
            .put(&Self::key(path), PutPayload::from(data))
            .await?;
        Ok(())
    }
    async fn get(&self, path: &str) -> BenchResult<Bytes> {
        Ok(self.store.get(&Self::key(path)).await?.bytes().await?)
    }
    async fn stream(&self, path: &str, data: Bytes) -> BenchResult<()> {
        let key = Self::key(path);
        let mut up = self.store.put_multipart(&key).await?;
        up.put_part(PutPayload::from(data)).await?;
        up.complete().await?;
        drop(self.store.get(&key).await?);
        Ok(())
    }
    async fn list(&self, dir: &str) -> BenchResult<usize> {
        let r = self
            .store
            .list_with_delimiter(Some(&Self::key(dir)))
            .await?;
        Ok(r.objects.len() + r.common_prefixes.len())
    }
    async fn delete(&self, path: &str) -> BenchResult<()> {
        self.store.delete(&Self::key(path)).await?;
        Ok(())
    }
    async fn delete_dir(&self, dir: &str) -> BenchResult<()> {
        let locations = self
            .store
            .list(Some(&Self::key(dir)))
            .map_ok(|m| m.location)
            .boxed();
        self.store
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }
    async fn walk(&self, dir: &str) -> BenchResult<usize> {
        Ok(self
            .store
            .list(Some(&Self::key(dir)))
            .try_collect::<Vec<_>>()
            .await?
            .len())
    }
}
