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

use driver_api::Operation;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use driver_api::{
    walk, ByteStream, Capabilities, Driver, FileInfo, FileWriter, Leftover, LeftoverKind,
    ParamSpec, Parameters, Result, StorageDriver, StorageError, StoragePath, WalkFn, WalkOptions,
};

/// The registered name.
pub const NAME: &str = "inmemory";

/// Chunk size of reader streams (slices of the stored buffer, no copies).
const READ_CHUNK: usize = 1 << 20;

static PARAMS: [ParamSpec; 0] = [];

driver_api::register_driver! {
    name: NAME,
    description: "in-process memory; state is lost when the driver is dropped",
    parameters: &PARAMS,
    create: |params| async move { InMemoryDriver::from_parameters(params) },
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
    /// When it was last parked (closed or dropped): its age for `uploads`.
    parked: Option<SystemTime>,
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

/// A directory entry's key: the entry's full path, ordered and looked up by its last
/// component, so listing a directory clones paths (reference counts) instead of building
/// them.
#[derive(Debug, Clone)]
struct ChildKey(StoragePath);

impl ChildKey {
    fn name(&self) -> &str {
        self.0.file_name().unwrap_or("")
    }
}

impl Borrow<str> for ChildKey {
    fn borrow(&self) -> &str {
        self.name()
    }
}

impl PartialEq for ChildKey {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}
impl Eq for ChildKey {}
impl PartialOrd for ChildKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ChildKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

#[derive(Debug)]
enum Node {
    File(File),
    Dir(Dir),
}

/// A directory: exists only while it has entries (the root always exists).
#[derive(Debug)]
struct Dir {
    entries: BTreeMap<ChildKey, Node>,
    mod_time: SystemTime,
}

impl Dir {
    fn new(mod_time: SystemTime) -> Self {
        Dir {
            entries: BTreeMap::new(),
            mod_time,
        }
    }

    /// Rebuilds the keys of this subtree under `base` (for a directory move).
    fn rebased(self, base: &StoragePath) -> Result<Dir> {
        let mut out = Dir::new(self.mod_time);
        for (key, node) in self.entries {
            let path = base
                .join(key.name())
                .map_err(|e| StorageError::invalid_path(NAME, e))?;
            let node = match node {
                Node::Dir(d) => Node::Dir(d.rebased(&path)?),
                file => file,
            };
            out.entries.insert(ChildKey(path), node);
        }
        Ok(out)
    }
}

fn conflict(path: &StoragePath, op: Operation, what: &'static str) -> StorageError {
    StorageError::backend(NAME, op, path, what)
}

#[derive(Debug)]
struct State {
    root: Dir,
    /// Closed, uncommitted uploads by path.
    uploads: HashMap<StoragePath, Upload>,
}

impl Default for State {
    fn default() -> Self {
        State {
            root: Dir::new(SystemTime::now()),
            uploads: HashMap::new(),
        }
    }
}

impl State {
    /// The directory at `path` (the root for `/`).
    fn dir(&self, path: &StoragePath) -> Option<&Dir> {
        let mut cur = &self.root;
        for c in path.components() {
            match cur.entries.get(c) {
                Some(Node::Dir(d)) => cur = d,
                _ => return None,
            }
        }
        Some(cur)
    }

    fn node(&self, path: &StoragePath) -> Option<&Node> {
        self.dir(&path.parent()?)?.entries.get(path.file_name()?)
    }

    fn file(&self, path: &StoragePath) -> Option<&File> {
        match self.node(path)? {
            Node::File(f) => Some(f),
            Node::Dir(_) => None,
        }
    }

    /// Checks that a file can be created at `path`: no ancestor is a file and `path` is not
    /// a directory.
    fn check_file_slot(&self, path: &StoragePath, op: Operation) -> Result<()> {
        let mut cur = &self.root;
        for c in path.components() {
            match cur.entries.get(c) {
                Some(Node::Dir(d)) => cur = d,
                Some(Node::File(_)) if Some(c) != path.file_name() => {
                    return Err(conflict(path, op, "an ancestor is a file"))
                }
                Some(Node::File(_)) | None => return Ok(()),
            }
        }
        Err(conflict(path, op, "is a directory"))
    }

    /// The directory at `path`, created with its ancestors as needed; every directory on
    /// the way gets `now` as its modification time.
    fn dir_mut_create(
        &mut self,
        path: &StoragePath,
        now: SystemTime,
        op: Operation,
    ) -> Result<&mut Dir> {
        let full = path.as_str();
        let mut end = 0;
        let mut cur = &mut self.root;
        for c in path.components() {
            end += 1 + c.len();
            cur.mod_time = now;
            if !cur.entries.contains_key(c) {
                let p = StoragePath::new(&full[..end])
                    .map_err(|e| StorageError::invalid_path(NAME, e))?;
                cur.entries.insert(ChildKey(p), Node::Dir(Dir::new(now)));
            }
            match cur.entries.get_mut(c) {
                Some(Node::Dir(d)) => cur = d,
                _ => return Err(conflict(path, op, "an ancestor is a file")),
            }
        }
        cur.mod_time = now;
        Ok(cur)
    }

    /// Stores `node` at `path`, replacing a file there.
    fn insert(&mut self, path: &StoragePath, node: Node, op: Operation) -> Result<()> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(conflict(path, op, "the root is a directory"));
        };
        let now = SystemTime::now();
        let dir = self.dir_mut_create(&parent, now, op)?;
        match dir.entries.get_mut(name) {
            Some(Node::Dir(_)) => Err(conflict(path, op, "is a directory")),
            Some(slot) => {
                *slot = node;
                Ok(())
            }
            None => {
                dir.entries.insert(ChildKey(path.clone()), node);
                Ok(())
            }
        }
    }

    /// Removes the node at `path` and prunes directories left empty.
    fn remove(&mut self, path: &StoragePath) -> Option<Node> {
        let parent = path.parent()?;
        let name = path.file_name()?;
        let mut cur = &mut self.root;
        for c in parent.components() {
            match cur.entries.get_mut(c) {
                Some(Node::Dir(d)) => cur = d,
                _ => return None,
            }
        }
        let node = cur.entries.remove(name)?;
        if cur.entries.is_empty() {
            prune(&mut self.root, parent.components());
        }
        Some(node)
    }
}

/// Removes empty directories along `comps`, deepest first.
fn prune<'a>(dir: &mut Dir, mut comps: impl Iterator<Item = &'a str>) {
    let Some(first) = comps.next() else {
        return;
    };
    if let Some(Node::Dir(child)) = dir.entries.get_mut(first) {
        prune(child, comps);
        if child.entries.is_empty() {
            dir.entries.remove(first);
        }
    }
}

fn info(path: StoragePath, node: &Node) -> FileInfo {
    match node {
        Node::File(f) => FileInfo {
            path,
            size: f.data.len() as u64,
            mod_time: f.mod_time,
            is_dir: false,
        },
        Node::Dir(d) => FileInfo {
            path,
            size: 0,
            mod_time: d.mod_time,
            is_dir: true,
        },
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
            .file(path)
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
        let file = File {
            data: content,
            mod_time: SystemTime::now(),
        };
        self.write()
            .insert(path, Node::File(file), Operation::PutContent)
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
        st.check_file_slot(path, Operation::Writer)?;
        let upload = if append {
            match st.uploads.remove(path) {
                Some(u) => u,
                None => match st.file(path) {
                    Some(f) if f.data.is_empty() => Upload::default(),
                    Some(f) => {
                        return Err(StorageError::append_to_committed(
                            NAME,
                            path,
                            f.data.len() as u64,
                        ))
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
        if path.is_root() {
            return Ok(info(path.clone(), &Node::Dir(Dir::new(st.root.mod_time))));
        }
        st.node(path)
            .map(|n| info(path.clone(), n))
            .ok_or_else(|| StorageError::not_found(NAME, path))
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        let st = self.read();
        match st.dir(path) {
            Some(d) => Ok(d.entries.keys().map(|k| k.0.clone()).collect()),
            None => Err(StorageError::not_found(NAME, path)),
        }
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let mut st = self.write();
        let Some(node) = st.node(src) else {
            return Err(StorageError::not_found(NAME, src));
        };
        if src == dst {
            return Ok(());
        }
        if src.is_ancestor_of(dst) {
            return Err(conflict(
                dst,
                Operation::Rename,
                "cannot move a directory into itself",
            ));
        }
        let is_dir = matches!(node, Node::Dir(_));
        match st.check_file_slot(dst, Operation::Rename) {
            Err(_) if is_dir && st.dir(dst).is_some() => {
                return Err(conflict(
                    dst,
                    Operation::Rename,
                    "destination directory exists",
                ))
            }
            other => other?,
        }
        let Some(node) = st.remove(src) else {
            return Err(StorageError::not_found(NAME, src));
        };
        let node = match node {
            Node::Dir(d) => Node::Dir(d.rebased(dst)?),
            file => file,
        };
        st.insert(dst, node, Operation::Rename)
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let removed = {
            let mut st = self.write();
            let mut had_upload = false;
            if !st.uploads.is_empty() {
                had_upload = st.uploads.remove(path).is_some();
                st.uploads.retain(|k, _| !path.is_ancestor_of(k));
            }
            match st.remove(path) {
                Some(node) => Some(node),
                None if had_upload => None,
                None => return Err(StorageError::not_found(NAME, path)),
            }
        };
        // Free the subtree after releasing the lock.
        drop(removed);
        Ok(())
    }

    /// The parked uploads at or below `path`; the id is the path (one upload per path).
    async fn uploads(&self, path: &StoragePath) -> Result<Vec<Leftover>> {
        let st = self.read();
        let mut found: Vec<Leftover> = st
            .uploads
            .iter()
            .filter(|(k, _)| *k == path || path.is_ancestor_of(k))
            .map(|(k, u)| Leftover {
                path: k.clone(),
                kind: LeftoverKind::Parked,
                id: k.to_string(),
                modified: u.parked,
                size: Some(u.size),
            })
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    async fn purge_upload(&self, leftover: &Leftover) -> Result<()> {
        if leftover.kind != LeftoverKind::Parked || leftover.id != leftover.path.as_str() {
            return Err(StorageError::backend(
                NAME,
                Operation::PurgeUpload,
                &leftover.path,
                format!("{} is not an upload of this path", leftover.id),
            ));
        }
        self.write().uploads.remove(&leftover.path);
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
                .dir(&dir)
                .map(|d| {
                    d.entries
                        .iter()
                        .map(|(k, n)| info(k.0.clone(), n))
                        .collect::<Vec<_>>()
                })
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
        if let Some(mut u) = self.upload.take() {
            u.parked = Some(SystemTime::now());
            self.driver.write().uploads.insert(self.path.clone(), u);
        }
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        self.upload = None;
        // A closed upload is parked in the driver: it goes too.
        self.driver.write().uploads.remove(&self.path);
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
        if let Some(mut u) = self.upload.take() {
            u.parked = Some(SystemTime::now());
            if let Ok(mut st) = self.driver.state.write() {
                st.uploads.insert(self.path.clone(), u);
            }
        }
    }
}
