//! A cache of directory listings, validated by the directory's own metadata so that it
//! stays correct when other processes change the tree.
//!
//! `readdir` costs the kernel about 0.3 µs per entry on a typical VM; a `stat` of the
//! directory costs one syscall. A cached listing is served only while the directory's inode,
//! modification time and change time are those seen when it was read. Creating, removing or
//! renaming an entry updates both times, whoever does it.
//!
//! Timestamps come from a coarse kernel clock, so a change made in the same clock tick as
//! the listing could leave them unchanged. As git does for its index ("racy" entries), a
//! listing is cached only when the directory's modification time is at least
//! [`SETTLED`] older than the moment the listing was read: any later change then carries a
//! strictly newer time. Recently changed directories are always read from disk.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use driver_api::StoragePath;

/// How much older than the read the directory's mtime must be for a listing to be cached:
/// at least the coarsest timestamp granularity in use (2 s on FAT, 1 s on ext3).
pub const SETTLED: Duration = Duration::from_secs(2);

/// The metadata a cached listing is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    ino: u64,
    dev: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of a directory's metadata.
    pub fn of(md: &std::fs::Metadata) -> Self {
        Stamp {
            ino: md.ino(),
            dev: md.dev(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }

    fn settled_before(&self, read_at: SystemTime) -> bool {
        let newest = self.mtime.max(self.ctime);
        let Ok(secs) = u64::try_from(newest.0) else {
            return false;
        };
        let changed =
            SystemTime::UNIX_EPOCH + Duration::new(secs, newest.1.clamp(0, 999_999_999) as u32);
        changed + SETTLED <= read_at
    }
}

/// A directory's listing and the metadata it is valid for.
#[derive(Debug)]
struct Entry {
    stamp: Stamp,
    names: Arc<[StoragePath]>,
}

/// Bounded map from directory to its last settled listing.
#[derive(Debug)]
pub struct ListCache {
    entries: Mutex<HashMap<StoragePath, Entry>>,
    capacity: usize,
}

impl ListCache {
    /// A cache holding at most `capacity` directories (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The cached listing of `dir`, if it was read when the directory had `stamp`.
    pub fn get(&self, dir: &StoragePath, stamp: &Stamp) -> Option<Vec<StoragePath>> {
        if self.capacity == 0 {
            return None;
        }
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(dir) {
            Some(e) if e.stamp == *stamp => Some(e.names.to_vec()),
            _ => None,
        }
    }

    /// Records a listing read at `read_at` (taken before the read) under `stamp` (taken
    /// before the read too), if the directory had settled by then.
    pub fn put(&self, dir: &StoragePath, stamp: Stamp, read_at: SystemTime, names: &[StoragePath]) {
        if self.capacity == 0 || !stamp.settled_before(read_at) {
            return;
        }
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.capacity && !map.contains_key(dir) {
            // Simple bound: start over rather than track recency.
            map.clear();
        }
        map.insert(
            dir.clone(),
            Entry {
                stamp,
                names: names.into(),
            },
        );
    }
}
