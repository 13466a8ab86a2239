//! From paths to object keys, for drivers over flat object stores.
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
