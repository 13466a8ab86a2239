//! `inmemory`: a storage driver that keeps everything in the process's memory.
//!
//! Useful for tests and as a reference implementation of the contract. State belongs to
//! one driver instance and is lost when it is dropped; clones of the [`Driver`] handle share
//! it. Writes are zero-copy: [`Bytes`] handed to `put_content` or a writer are kept as they
//! are, and readers hand out slices of them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> driver_api::Result<()> {
//! let driver = driver_inmemory::InMemoryDriver::new().into_driver();
//! driver.put_content("/a/b", "hello").await?;
//! assert_eq!(driver.list("/a").await?[0].as_str(), "/a/b");
//! # Ok(()) }
//! ```
//!
//! Registered with the factory as `"inmemory"`; it takes no parameters.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use driver_api::{
    sort_bytes, walk, ByteStream, Capabilities, Driver, DriverFactory, FileInfo, FileWriter,
    ParamSpec, Parameters, Result, StorageDriver, StorageError, StoragePath, WalkFn, WalkOptions,
};

/// The registered name.
pub const NAME: &str = "inmemory";

/// Chunk size of reader streams (slices of the stored buffer, no copies).
const READ_CHUNK: usize = 1 << 20;

static PARAMS: [ParamSpec; 0] = [];

inventory::submit! {
    DriverFactory {
        name: NAME,
        description: "in-process memory; state is lost when the driver is dropped",
        parameters: &PARAMS,
        create: |params| Box::pin(async move {
            InMemoryDriver::from_parameters(params)
                .map(|d| Arc::new(d) as Arc<dyn StorageDriver>)
        }),
    }
}

#[derive(Debug, Clone)]
struct File {
    data: Bytes,
    mod_time: SystemTime,
}

/// An uncommitted upload: the chunks written so far, kept as given (no copies).
#[derive(Debug, Default)]
struct Upload {
    chunks: Vec<Bytes>,
    size: u64,
}

impl Upload {
    fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.size += data.len() as u64;
            self.chunks.push(data);
        }
    }

    /// The upload as one buffer: free for a single chunk, one copy otherwise.
    fn into_bytes(self) -> Bytes {
        match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut buf = BytesMut::with_capacity(self.size as usize);
                for c in &self.chunks {
                    buf.extend_from_slice(c);
                }
                buf.freeze()
            }
        }
    }
}

/// A map key ordered component-wise; `subtree_end` makes a bound that sorts after every
/// path below `path` and before `path`'s next sibling.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    path: StoragePath,
    subtree_end: bool,
}

impl Key {
    fn at(path: &StoragePath) -> Self {
        Key {
            path: path.clone(),
            subtree_end: false,
        }
    }
    fn end_of(path: &StoragePath) -> Self {
        Key {
            path: path.clone(),
            subtree_end: true,
        }
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let a = sort_bytes(self.path.as_str()).chain(self.subtree_end.then_some(1));
        let b = sort_bytes(other.path.as_str()).chain(other.subtree_end.then_some(1));
        a.cmp(b)
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
struct State {
    /// Committed files only; directories are implicit. Ordered component-wise, so a
    /// directory's subtree is the contiguous range `(dir, end_of(dir))`.
    files: BTreeMap<Key, File>,
    /// Closed, uncommitted uploads by path.
    uploads: HashMap<StoragePath, Upload>,
}

impl State {
    fn conflict(path: &StoragePath, what: &'static str, op: &'static str) -> StorageError {
        StorageError::backend(NAME, op, path, what)
    }

    fn get(&self, path: &StoragePath) -> Option<&File> {
        self.files.get(&Key::at(path))
    }

    /// Committed files strictly below `dir`, in walk order.
    fn below(&self, dir: &StoragePath) -> impl Iterator<Item = (&Key, &File)> {
        let range = if dir.is_root() {
            (Bound::Unbounded, Bound::Unbounded)
        } else {
            (
                Bound::Excluded(Key::at(dir)),
                Bound::Excluded(Key::end_of(dir)),
            )
        };
        self.files.range(range)
    }

    /// Checks that `path` can hold a file: no ancestor is a file, and `path` is not a
    /// directory.
    fn check_file_slot(&self, path: &StoragePath, op: &'static str) -> Result<()> {
        let mut anc = path.parent();
        while let Some(a) = anc {
            if self.get(&a).is_some() {
                return Err(Self::conflict(path, "an ancestor is a file", op));
            }
            anc = a.parent();
        }
        if self.below(path).next().is_some() {
            return Err(Self::conflict(path, "is a directory", op));
        }
        Ok(())
    }

    /// The direct children of `dir` with their metadata; `None` when `dir` is not a
    /// directory. Jumps over each child directory's subtree: O(children · log n).
    fn children(&self, dir: &StoragePath) -> Option<Vec<FileInfo>> {
        let end = if dir.is_root() {
            Bound::Unbounded
        } else {
            Bound::Excluded(Key::end_of(dir))
        };
        let mut out = Vec::new();
        let mut cursor = if dir.is_root() {
            Bound::Unbounded
        } else {
            Bound::Excluded(Key::at(dir))
        };
        while let Some((key, file)) = self.files.range((cursor, end.clone())).next() {
            let child = direct_child(dir, &key.path);
            let is_dir = child != key.path;
            out.push(FileInfo {
                size: if is_dir { 0 } else { file.data.len() as u64 },
                mod_time: file.mod_time,
                is_dir,
                path: child,
            });
            let last = &out[out.len() - 1].path;
            cursor = Bound::Excluded(if is_dir {
                Key::end_of(last)
            } else {
                Key::at(last)
            });
        }
        if out.is_empty() && !dir.is_root() {
            None
        } else {
            Some(out)
        }
    }

    /// Every committed key in `dir`'s subtree, `dir` itself included if it is a file.
    fn subtree_keys(&self, dir: &StoragePath) -> Vec<Key> {
        let mut keys: Vec<Key> = self.below(dir).map(|(k, _)| k.clone()).collect();
        if self.get(dir).is_some() {
            keys.push(Key::at(dir));
        }
        keys
    }
}

/// The child of `dir` on the way to `descendant`.
fn direct_child(dir: &StoragePath, descendant: &StoragePath) -> StoragePath {
    let start = if dir.is_root() {
        1
    } else {
        dir.as_str().len() + 1
    };
    match descendant.as_str()[start..].find('/') {
        None => descendant.clone(),
        // A prefix of a valid path that ends at a component boundary is valid.
        Some(i) => StoragePath::new(&descendant.as_str()[..start + i])
            .unwrap_or_else(|_| descendant.clone()),
    }
}

/// The in-memory driver. Cheap to share: wrap it in a [`Driver`] and clone that.
#[derive(Debug, Default, Clone)]
pub struct InMemoryDriver {
    state: Arc<RwLock<State>>,
}

impl InMemoryDriver {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The factory entry point; `inmemory` accepts no parameters.
    pub fn from_parameters(params: Parameters) -> Result<Self> {
        params.reader(NAME, &PARAMS).finish()?;
        Ok(Self::new())
    }

    /// Wraps the driver in the user-facing handle.
    pub fn into_driver(self) -> Driver {
        Driver::new(self)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn file(&self, path: &StoragePath) -> Result<File> {
        self.read()
            .get(path)
            .cloned()
            .ok_or_else(|| StorageError::not_found(NAME, path))
    }
}

#[async_trait]
impl StorageDriver for InMemoryDriver {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().with_shared_state(false)
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        Ok(self.file(path)?.data)
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        let mut st = self.write();
        st.check_file_slot(path, "put_content")?;
        let file = File {
            data: content,
            mod_time: SystemTime::now(),
        };
        st.files.insert(Key::at(path), file);
        Ok(())
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let data = self.file(path)?.data;
        let size = data.len() as u64;
        if offset > size {
            return Err(StorageError::invalid_offset(NAME, path, offset, size));
        }
        let rest = data.slice(offset as usize..);
        let chunks = (0..rest.len())
            .step_by(READ_CHUNK)
            .map(move |i| Ok(rest.slice(i..(i + READ_CHUNK).min(rest.len()))));
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>> {
        let mut st = self.write();
        st.check_file_slot(path, "writer")?;
        let upload = if append {
            match st.uploads.remove(path) {
                Some(u) => u,
                None => match st.get(path) {
                    Some(f) if f.data.is_empty() => Upload::default(),
                    Some(_) => {
                        return Err(StorageError::Unsupported {
                            driver: NAME.into(),
                            operation: "appending to committed, non-empty content".into(),
                            path: Some(path.to_string()),
                        })
                    }
                    None => return Err(StorageError::not_found(NAME, path)),
                },
            }
        } else {
            st.uploads.remove(path);
            Upload::default()
        };
        Ok(Box::new(MemWriter {
            driver: self.clone(),
            path: path.clone(),
            size: upload.size,
            upload: Some(upload),
        }))
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let st = self.read();
        if let Some(f) = st.get(path) {
            return Ok(FileInfo {
                path: path.clone(),
                size: f.data.len() as u64,
                mod_time: f.mod_time,
                is_dir: false,
            });
        }
        let first_below = st.below(path).next().map(|(_, f)| f.mod_time);
        match first_below {
            Some(mod_time) => Ok(FileInfo {
                path: path.clone(),
                size: 0,
                mod_time,
                is_dir: true,
            }),
            None => Err(StorageError::not_found(NAME, path)),
        }
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        let st = self.read();
        if st.get(path).is_some() {
            return Err(StorageError::not_found(NAME, path));
        }
        match st.children(path) {
            Some(c) => Ok(c.into_iter().map(|fi| fi.path).collect()),
            None => Err(StorageError::not_found(NAME, path)),
        }
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let mut st = self.write();
        if src == dst {
            return if st.get(src).is_some() {
                Ok(())
            } else {
                Err(StorageError::not_found(NAME, src))
            };
        }
        let keys = st.subtree_keys(src);
        if keys.is_empty() {
            return Err(StorageError::not_found(NAME, src));
        }
        if src.is_ancestor_of(dst) {
            return Err(StorageError::backend(
                NAME,
                "rename",
                dst,
                "cannot move a directory into itself",
            ));
        }
        st.check_file_slot(dst, "rename")?;
        for k in keys {
            if let Some(f) = st.files.remove(&k) {
                let suffix = &k.path.as_str()[src.as_str().len()..];
                let to = StoragePath::new(&format!("{dst}{suffix}"))
                    .map_err(|e| StorageError::invalid_path(NAME, e))?;
                st.files.insert(Key::at(&to), f);
            }
        }
        Ok(())
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let mut st = self.write();
        let keys = st.subtree_keys(path);
        let before = st.uploads.len();
        st.uploads.retain(|k, _| !path.contains(k));
        if keys.is_empty() && st.uploads.len() == before {
            return Err(StorageError::not_found(NAME, path));
        }
        for k in keys {
            st.files.remove(&k);
        }
        Ok(())
    }

    async fn walk(
        &self,
        path: &StoragePath,
        options: &WalkOptions,
        f: &mut WalkFn<'_>,
    ) -> Result<()> {
        walk::walk_with(path, options, f, |dir| {
            let res = self
                .read()
                .children(&dir)
                .ok_or_else(|| StorageError::not_found(NAME, &dir));
            async move { res }
        })
        .await
    }
}

/// Writer of the in-memory driver: chunks are kept as given; `close` parks the upload in the
/// driver's state, `commit` turns it into a file.
struct MemWriter {
    driver: InMemoryDriver,
    path: StoragePath,
    size: u64,
    /// `None` once closed, committed or cancelled.
    upload: Option<Upload>,
}

impl MemWriter {
    fn upload(&mut self) -> Result<&mut Upload> {
        self.upload
            .as_mut()
            .ok_or_else(|| StorageError::WriterFinished {
                driver: NAME.into(),
                path: self.path.to_string(),
                status: driver_api::WriterStatus::Closed,
            })
    }
}

#[async_trait]
impl FileWriter for MemWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.upload()?.push(data);
        self.size = self.upload.as_ref().map_or(self.size, |u| u.size);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(&mut self) -> Result<()> {
        if let Some(u) = self.upload.take() {
            self.driver.write().uploads.insert(self.path.clone(), u);
        }
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        self.upload = None;
        Ok(())
    }

    async fn commit(&mut self) -> Result<()> {
        let upload = std::mem::take(self.upload()?);
        let data = upload.into_bytes();
        self.upload = None;
        self.driver.put_content(&self.path, data).await
    }
}

impl Drop for MemWriter {
    /// A writer dropped without close keeps its upload resumable, like a closed one.
    fn drop(&mut self) {
        if let Some(u) = self.upload.take() {
            if let Ok(mut st) = self.driver.state.write() {
                st.uploads.insert(self.path.clone(), u);
            }
        }
    }
}
