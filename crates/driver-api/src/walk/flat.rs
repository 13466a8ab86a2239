//! Walking over one flat listing: how object-store drivers implement `walk`.
//!
//! Object stores (S3, Azure Blob, GCS, Swift, OSS) list every key under a prefix in byte
//! order, page by page, without a delimiter. [`FlatWalk`] turns that stream into a walk:
//! it reorders keys into the walk's component order (see [`order`](super::order)),
//! synthesises the directories, and applies skip-dir, stop and the start-after hint. A
//! driver's `walk` then reads:
//!
//! ```
//! # use std::time::SystemTime;
//! # use driver_api::{StoragePath, WalkControl, WalkOptions, walk::flat::FlatWalk};
//! # fn main() -> driver_api::Result<()> {
//! let root = StoragePath::new("/a").unwrap();
//! let mut seen = Vec::new();
//! let mut f = |i: &driver_api::FileInfo| { seen.push(i.path.to_string()); WalkControl::Continue };
//! let options = WalkOptions::default();
//! let mut w = FlatWalk::new(&root, &options, &mut f);
//! // A real driver lists `prefix + start_after` onwards, page after page.
//! assert_eq!(w.start_after(), None);
//! for key in ["a.txt", "b/c"] {
//!     if !w.push(key, 1, SystemTime::UNIX_EPOCH) {
//!         break; // the callback said Stop
//!     }
//! }
//! w.finish("demo")?;
//! assert_eq!(seen, ["/a/a.txt", "/a/b", "/a/b/c"]);
//! # Ok(()) }
//! ```

use std::time::SystemTime;

use super::order::Reorder;
use crate::driver::{FileInfo, WalkControl, WalkFn, WalkOptions};
use crate::error::{Result, StorageError};
use crate::path::{cmp_paths, validate_component, StoragePath};

/// A listed file: its key relative to the walk's root, its size and time.
struct Entry {
    rel: String,
    size: u64,
    mod_time: SystemTime,
}

/// A walk fed by a flat, byte-ordered listing (see the module docs).
pub struct FlatWalk<'a, 'w> {
    root: &'a StoragePath,
    hint: Option<&'a StoragePath>,
    f: &'a mut WalkFn<'w>,
    /// Directories (relative) currently open, outermost first.
    open: Vec<String>,
    skip: Option<StoragePath>,
    stopped: bool,
    reorder: Reorder<Entry>,
    any: bool,
}

impl<'a, 'w> FlatWalk<'a, 'w> {
    /// A walk below `root` reporting to `f`; a start-after hint outside `root` is ignored.
    pub fn new(root: &'a StoragePath, options: &'a WalkOptions, f: &'a mut WalkFn<'w>) -> Self {
        let hint = options
            .start_after_hint
            .as_ref()
            .filter(|h| root.is_ancestor_of(h));
        Self {
            root,
            hint,
            f,
            open: Vec::new(),
            skip: None,
            stopped: false,
            reorder: Reorder::default(),
            any: false,
        }
    }

    /// Where the listing may start, relative to the root's key prefix: list the keys
    /// strictly after `prefix + start_after()` (S3's `StartAfter`, Azure's and GCS's
    /// `startOffset`-style markers). Where the hint has a `/`, names continuing with `-` or
    /// `.` instead come later in walk order but earlier in byte order, so the listing
    /// starts just before the first such spot (`,` is the byte before `-`).
    pub fn start_after(&self) -> Option<String> {
        let rel = self.hint?.strip_prefix(self.root)?;
        let rel = rel.relative();
        if rel.is_empty() {
            return None;
        }
        Some(match rel.find('/') {
            Some(i) => format!("{},", &rel[..i]),
            None => rel.to_owned(),
        })
    }

    /// Feeds the next listed key (relative to the root's prefix, in byte order). Keys the
    /// path grammar cannot name (upload state such as `name#upload`, `dir/` markers,
    /// foreign names) are not part of the tree and are passed over. Returns `false` once
    /// the callback has asked to stop: the driver should stop listing.
    pub fn push(&mut self, rel: &str, size: u64, mod_time: SystemTime) -> bool {
        self.any = true;
        if self.stopped {
            return false;
        }
        if rel.is_empty() || rel.split('/').any(|c| validate_component(c).is_err()) {
            return true;
        }
        let entry = Entry {
            rel: rel.to_owned(),
            size,
            mod_time,
        };
        for e in self.reorder.push(rel, entry) {
            self.emit(e);
        }
        !self.stopped
    }

    /// The listing ended: reports what was held back. A walk that listed nothing below a
    /// root other than `/` (and had no hint) is `PathNotFound`.
    pub fn finish(mut self, driver: &'static str) -> Result<()> {
        let held = std::mem::take(&mut self.reorder);
        for e in held.finish() {
            if self.stopped {
                return Ok(());
            }
            self.emit(e);
        }
        if !self.any && !self.root.is_root() && self.hint.is_none() {
            return Err(StorageError::not_found(driver, self.root));
        }
        Ok(())
    }

    fn after_hint(&self, p: &StoragePath) -> bool {
        self.hint
            .is_none_or(|h| cmp_paths(p.as_str(), h.as_str()).is_gt())
    }

    fn emit(&mut self, e: Entry) {
        if self.stopped {
            return;
        }
        let Ok(rel) = StoragePath::new(&format!("/{}", e.rel)) else {
            return;
        };
        let full = rel.under(self.root);
        if self.skip.as_ref().is_some_and(|s| s.is_ancestor_of(&full)) {
            return;
        }
        // Close the directories this file is not in; open (and report) the new ones.
        let comps: Vec<&str> = e.rel.split('/').collect();
        let dirs = &comps[..comps.len() - 1];
        let common = self
            .open
            .iter()
            .zip(dirs)
            .take_while(|(a, b)| a.as_str() == **b)
            .count();
        self.open.truncate(common);
        for d in &dirs[common..] {
            self.open.push((*d).to_owned());
            let Ok(dir) = StoragePath::new(&format!("/{}", self.open.join("/"))) else {
                return;
            };
            let dir = dir.under(self.root);
            if self.skip.as_ref().is_some_and(|s| s.contains(&dir)) {
                return;
            }
            if !self.after_hint(&dir) {
                continue;
            }
            let info = FileInfo {
                path: dir.clone(),
                size: 0,
                mod_time: e.mod_time,
                is_dir: true,
            };
            match (self.f)(&info) {
                WalkControl::Continue => {}
                WalkControl::SkipDir => {
                    self.skip = Some(dir);
                    return;
                }
                WalkControl::Stop => {
                    self.stopped = true;
                    return;
                }
            }
        }
        if !self.after_hint(&full) {
            return;
        }
        let info = FileInfo {
            path: full,
            size: e.size,
            mod_time: e.mod_time,
            is_dir: false,
        };
        // SkipDir on a file means nothing more than Continue (see WalkControl).
        if (self.f)(&info) == WalkControl::Stop {
            self.stopped = true;
        }
    }
}
