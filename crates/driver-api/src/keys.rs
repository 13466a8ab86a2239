//! From paths to object keys, and back from what object stores answer, for drivers over
//! flat object stores.
//!
//! Object stores have no directories: a path becomes a key under the configured root
//! (`rootdirectory`), and "everything below a directory" is a key prefix.
//!
//! ```
//! use driver_api::{keys::KeySpace, StoragePath};
//! let ks = KeySpace::new("/registry/");
//! let p = StoragePath::new("/docker/a").unwrap();
//! assert_eq!(ks.key(&p), "registry/docker/a");
//! assert_eq!(ks.dir_prefix(&p), "registry/docker/a/");
//! assert_eq!(ks.dir_prefix(&StoragePath::root()), "registry/");
//! assert_eq!(KeySpace::new("").dir_prefix(&StoragePath::root()), "");
//! ```

use crate::path::StoragePath;

/// Keys of paths under a root prefix (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySpace {
    root: String,
}

impl KeySpace {
    /// Keys under `root` (surrounding slashes are ignored; empty: the store's top level).
    pub fn new(root: &str) -> Self {
        Self {
            root: root.trim_matches('/').to_owned(),
        }
    }

    /// The root, without surrounding slashes.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The key of `path`.
    pub fn key(&self, path: &StoragePath) -> String {
        match (self.root.is_empty(), path.is_root()) {
            (true, _) => path.relative().to_owned(),
            (false, true) => self.root.clone(),
            (false, false) => format!("{}/{}", self.root, path.relative()),
        }
    }

    /// The prefix of every key below `path` (empty for the root of an unrooted space).
    pub fn dir_prefix(&self, path: &StoragePath) -> String {
        let k = self.key(path);
        if k.is_empty() {
            k
        } else {
            k + "/"
        }
    }
}

/// The children of a directory, collected from a listing of its key prefix with the `/`
/// delimiter (keys and common prefixes, page after page): what an object-store driver's
/// `list` returns.
///
/// ```
/// use driver_api::{keys::Children, StoragePath};
/// let dir = StoragePath::new("/a").unwrap();
/// let mut c = Children::new(&dir, "root/a/");
/// for key in ["root/a/f", "root/a/sub/", "root/a/f#upload"] {
///     c.push(key);
/// }
/// let names: Vec<String> = c.finish("demo").unwrap().iter().map(|p| p.to_string()).collect();
/// assert_eq!(names, ["/a/f", "/a/sub"]);
/// ```
#[derive(Debug)]
pub struct Children<'a> {
    dir: &'a StoragePath,
    prefix: &'a str,
    out: Vec<StoragePath>,
    any: bool,
}

impl<'a> Children<'a> {
    /// Children of `dir`, whose keys start with `prefix` (its [`KeySpace::dir_prefix`]).
    pub fn new(dir: &'a StoragePath, prefix: &'a str) -> Self {
        Self {
            dir,
            prefix,
            out: Vec::new(),
            any: false,
        }
    }

    /// A listed key or common prefix (whole, prefix included). Names the path grammar
    /// cannot hold (upload state such as `name#upload`) are left out, though they still
    /// show that the directory exists.
    pub fn push(&mut self, key: &str) {
        self.any = true;
        let name = key
            .get(self.prefix.len()..)
            .unwrap_or("")
            .trim_end_matches('/');
        self.out.extend(self.dir.child(name));
    }

    /// The children, sorted and without repeats; `PathNotFound` when nothing was listed
    /// below a directory other than the root.
    pub fn finish(mut self, driver: &'static str) -> crate::Result<Vec<StoragePath>> {
        if !self.any && !self.dir.is_root() {
            return Err(crate::StorageError::not_found(driver, self.dir));
        }
        self.out.sort();
        self.out.dedup();
        Ok(self.out)
    }
}

/// The `stat` of a directory in an object store, which exists while a key lives below
/// it: `first` is the modification time of one key listed below `path` (`None`: nothing
/// is). The root always exists.
///
/// ```
/// use driver_api::{keys::dir_info, StoragePath};
/// let d = StoragePath::new("/a").unwrap();
/// assert!(dir_info("demo", &d, Some(std::time::UNIX_EPOCH)).unwrap().is_dir);
/// assert!(dir_info("demo", &d, None).unwrap_err().is_not_found());
/// assert!(dir_info("demo", &StoragePath::root(), None).unwrap().is_dir);
/// ```
pub fn dir_info(
    driver: &'static str,
    path: &StoragePath,
    first: Option<std::time::SystemTime>,
) -> crate::Result<crate::FileInfo> {
    match first.or(path.is_root().then_some(std::time::UNIX_EPOCH)) {
        Some(mod_time) => Ok(crate::FileInfo {
            path: path.clone(),
            size: 0,
            mod_time,
            is_dir: true,
        }),
        None => Err(crate::StorageError::not_found(driver, path)),
    }
}

/// The `stat` of `path` in an object store: the object at its key when there is one
/// (`object` answers its size and modification time, or `None`), else the directory
/// that `path` is while a key lives below it (`first_below` answers one such key's
/// modification time, see [`dir_info`]). The root is never an object and always exists.
///
/// ```
/// # async fn demo() -> driver_api::Result<()> {
/// use driver_api::{keys::stat, StoragePath};
/// use std::time::UNIX_EPOCH;
/// let p = StoragePath::new("/a").unwrap();
/// let f = stat("demo", &p, || async { Ok(Some((3, UNIX_EPOCH))) }, || async { Ok(None) }).await?;
/// assert!(!f.is_dir && f.size == 3);
/// let d = stat("demo", &p, || async { Ok(None) }, || async { Ok(Some(UNIX_EPOCH)) }).await?;
/// assert!(d.is_dir);
/// # Ok(()) }
/// ```
pub async fn stat<O, OF, D, DF>(
    driver: &'static str,
    path: &StoragePath,
    object: O,
    first_below: D,
) -> crate::Result<crate::FileInfo>
where
    O: FnOnce() -> OF,
    OF: std::future::Future<Output = crate::Result<Option<(u64, std::time::SystemTime)>>>,
    D: FnOnce() -> DF,
    DF: std::future::Future<Output = crate::Result<Option<std::time::SystemTime>>>,
{
    if !path.is_root() {
        if let Some((size, mod_time)) = object().await? {
            return Ok(crate::FileInfo {
                path: path.clone(),
                size,
                mod_time,
                is_dir: false,
            });
        }
    }
    dir_info(driver, path, first_below().await?)
}

/// A ranged read the store refused as starting past the end (HTTP 416) of an object of
/// `size` bytes: an empty stream exactly at the end, `InvalidOffset` beyond it.
///
/// ```
/// use driver_api::{keys::read_past_end, StoragePath};
/// let p = StoragePath::new("/f").unwrap();
/// assert!(read_past_end("demo", &p, 10, 10).is_ok());
/// let e = read_past_end("demo", &p, 11, 10).map(drop).unwrap_err();
/// assert!(matches!(e, driver_api::StorageError::InvalidOffset { .. }));
/// ```
pub fn read_past_end(
    driver: &'static str,
    path: &StoragePath,
    offset: u64,
    size: u64,
) -> crate::Result<crate::ByteStream> {
    if offset == size {
        Ok(Box::pin(futures::stream::empty()))
    } else {
        Err(crate::StorageError::invalid_offset(
            driver, path, offset, size,
        ))
    }
}
