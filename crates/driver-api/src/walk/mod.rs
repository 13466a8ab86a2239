//! Walking a tree: the generic algorithm, and the fallback over `list` + `stat`.
//!
//! [`walk_with`] holds the walk logic once (order, skip-dir, stop, start-after hint); a
//! driver only supplies how to list one directory with metadata ([`walk_batched`]: several
//! directories in one call, read ahead in walk order). [`walk_fallback`] supplies
//! it from `list` + `stat` and is the default of [`StorageDriver::walk`]. Object stores,
//! which list a whole prefix in one flat pass, use [`flat::FlatWalk`] instead.

pub mod flat;
pub mod order;

use std::collections::HashMap;
use std::future::Future;

use futures::{StreamExt, TryStreamExt};

use crate::driver::{FileInfo, StorageDriver, WalkControl, WalkFn, WalkOptions};
use crate::error::{Result, StorageError};
use crate::operation::Operation;
use crate::path::StoragePath;

/// How many `stat` calls the fallback keeps in flight per directory.
const STAT_CONCURRENCY: usize = 16;

/// Walks below `root` using `list_dir` to read one directory at a time.
///
/// `list_dir` returns the direct children of a directory with their metadata, in any
/// order. A directory that vanishes during the walk (`PathNotFound` from `list_dir`) is
/// skipped, except for `root` itself, whose absence is reported.
pub async fn walk_with<L, Fut>(
    root: &StoragePath,
    options: &WalkOptions,
    f: &mut WalkFn<'_>,
    mut list_dir: L,
) -> Result<()>
where
    L: FnMut(StoragePath) -> Fut + Send,
    Fut: Future<Output = Result<Vec<FileInfo>>> + Send,
{
    walk_batched(root, options, f, 1, |dirs| {
        let listings: Vec<Fut> = dirs.into_iter().map(&mut list_dir).collect();
        futures::future::join_all(listings)
    })
    .await
}

/// As [`walk_with`], for a driver that lists several directories in one call more cheaply
/// than one at a time (the filesystem driver reads up to `batch` directories per
/// blocking-pool round trip, which costs more than reading a small directory).
///
/// Entering a directory, the walk asks `list_dirs` for it and for up to `batch - 1`
/// directories that come next in walk order (its following siblings), and answers from
/// those listings when it gets there; `list_dirs` returns one result per directory asked,
/// in the same order (a directory it leaves out is asked for again when reached). The order of the walk and its controls are those of
/// [`walk_with`]; a directory the callback skips was listed in vain, and memory holds at
/// most `batch` listings ahead.
pub async fn walk_batched<L, Fut>(
    root: &StoragePath,
    options: &WalkOptions,
    f: &mut WalkFn<'_>,
    batch: usize,
    mut list_dirs: L,
) -> Result<()>
where
    L: FnMut(Vec<StoragePath>) -> Fut + Send,
    Fut: Future<Output = Vec<Result<Vec<FileInfo>>>> + Send,
{
    let hint = options.start_after_hint.as_ref();
    let mut first = list_dirs(vec![root.clone()])
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| {
            Err(StorageError::backend(
                "walk",
                Operation::Walk,
                root,
                "the driver returned no listing for the walk's root",
            ))
        })?;
    first.sort_unstable_by(|a, b| b.path.cmp(&a.path));
    // A stack of directories being visited; each holds its remaining children in reverse
    // order so `pop` yields the next one.
    let mut stack: Vec<Vec<FileInfo>> = vec![first];
    // Listings read ahead, waiting for the walk to reach their directory.
    let mut ahead: HashMap<StoragePath, Result<Vec<FileInfo>>> = HashMap::new();

    while let Some(children) = stack.last_mut() {
        let Some(info) = children.pop() else {
            stack.pop();
            continue;
        };
        let before_hint = hint.is_some_and(|h| info.path <= *h);
        let descend = if before_hint {
            // Not reported; entered only if it contains the hint.
            let contains_hint = hint.is_some_and(|h| info.path.is_ancestor_of(h));
            if !(info.is_dir && contains_hint) {
                continue;
            }
            true
        } else {
            let wanted = report(f, &info, &mut stack);
            info.is_dir && wanted
        };
        if stack.is_empty() {
            // `Stop` was requested.
            return Ok(());
        }
        if !descend {
            ahead.remove(&info.path);
            continue;
        }
        let listing = match ahead.remove(&info.path) {
            Some(listing) => listing,
            None => {
                // This directory and the directories that follow it: siblings after
                // the hint (or containing it) that the walk will enter unless skipped.
                // (Reading further ahead, up the stack, was measured: no faster.)
                let mut dirs = vec![info.path.clone()];
                if let Some(siblings) = stack.last() {
                    dirs.extend(
                        siblings
                            .iter()
                            .rev()
                            .filter(|e| {
                                e.is_dir
                                    && hint.is_none_or(|h| e.path > *h || e.path.is_ancestor_of(h))
                            })
                            .take(batch.saturating_sub(1))
                            .map(|e| e.path.clone()),
                    );
                }
                let mut results = list_dirs(dirs.clone()).await.into_iter();
                let mine = results.next().unwrap_or_else(|| {
                    Err(StorageError::backend(
                        "walk",
                        Operation::Walk,
                        &info.path,
                        "the driver returned no listing for this directory",
                    ))
                });
                // A sibling the driver did not answer for is listed when reached.
                for (dir, r) in dirs.into_iter().skip(1).zip(results) {
                    ahead.insert(dir, r);
                }
                mine
            }
        };
        match listing {
            Ok(mut entries) => {
                entries.sort_unstable_by(|a, b| b.path.cmp(&a.path));
                stack.push(entries);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Calls `f` for `info`. Returns whether to descend; empties `stack` on `Stop`.
fn report(f: &mut WalkFn<'_>, info: &FileInfo, stack: &mut Vec<Vec<FileInfo>>) -> bool {
    match f(info) {
        WalkControl::Continue => true,
        // On a file, SkipDir is the same as Continue (Distribution's WalkFallback).
        WalkControl::SkipDir => false,
        WalkControl::Stop => {
            stack.clear();
            false
        }
    }
}

/// The generic walk over [`StorageDriver::list`] and [`StorageDriver::stat`].
///
/// A child that disappears between `list` and `stat` is skipped, not reported as an error.
pub async fn walk_fallback<D: StorageDriver + ?Sized>(
    driver: &D,
    root: &StoragePath,
    options: &WalkOptions,
    f: &mut WalkFn<'_>,
) -> Result<()> {
    walk_with(root, options, f, |dir| async move {
        let children = driver.list(&dir).await?;
        futures::stream::iter(children)
            .map(|child| async move {
                match driver.stat(&child).await {
                    Ok(info) => Ok(Some(info)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err::<_, StorageError>(e),
                }
            })
            .buffered(STAT_CONCURRENCY)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::SystemTime;

    use super::*;

    fn info(path: &str, is_dir: bool) -> FileInfo {
        FileInfo {
            path: StoragePath::new(path).unwrap(),
            size: 0,
            mod_time: SystemTime::UNIX_EPOCH,
            is_dir,
        }
    }

    /// `width` directories of `width` directories of two files each; every call of
    /// `list_dirs` is recorded.
    struct Tree {
        dirs: BTreeMap<String, Vec<FileInfo>>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl Tree {
        fn new(width: usize) -> Tree {
            let mut dirs: BTreeMap<String, Vec<FileInfo>> = BTreeMap::new();
            for a in 0..width {
                let da = format!("/d{a:02}");
                dirs.entry("/".into()).or_default().push(info(&da, true));
                for b in 0..width {
                    let db = format!("{da}/e{b:02}");
                    dirs.entry(da.clone()).or_default().push(info(&db, true));
                    for c in 0..2 {
                        let file = info(&format!("{db}/f{c}"), false);
                        dirs.entry(db.clone()).or_default().push(file);
                    }
                }
            }
            Tree {
                dirs,
                calls: Mutex::new(Vec::new()),
            }
        }

        async fn walk(&self, batch: usize, options: &WalkOptions, skip: &str) -> Vec<String> {
            let mut seen = Vec::new();
            let root = StoragePath::new("/").unwrap();
            let mut f = |fi: &FileInfo| {
                seen.push(fi.path.as_str().to_owned());
                if fi.path.as_str() == skip {
                    WalkControl::SkipDir
                } else {
                    WalkControl::Continue
                }
            };
            walk_batched(&root, options, &mut f, batch, |dirs: Vec<StoragePath>| {
                let names: Vec<String> = dirs.iter().map(|d| d.as_str().to_owned()).collect();
                self.calls.lock().unwrap().push(names.clone());
                let out: Vec<Result<Vec<FileInfo>>> = names
                    .iter()
                    .map(|d| {
                        let mut v = self.dirs.get(d).cloned().unwrap_or_default();
                        v.reverse();
                        Ok(v)
                    })
                    .collect();
                async move { out }
            })
            .await
            .unwrap();
            seen
        }

        fn listed(&self) -> Vec<String> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .flatten()
                .cloned()
                .collect()
        }
    }

    /// The order a serial depth-first walk reports.
    fn serial(tree: &Tree, dir: &str, skip: &str, out: &mut Vec<String>) {
        for child in tree.dirs.get(dir).into_iter().flatten() {
            let p = child.path.as_str();
            out.push(p.to_owned());
            if child.is_dir && p != skip {
                serial(tree, p, skip, out);
            }
        }
    }

    #[tokio::test]
    async fn batches_read_ahead_without_changing_the_walk() {
        for batch in [1, 2, 5, 16] {
            let tree = Tree::new(6);
            let got = tree.walk(batch, &WalkOptions::default(), "/d02").await;
            let mut want = Vec::new();
            serial(&tree, "/", "/d02", &mut want);
            assert_eq!(got, want, "batch {batch}");
            let calls = tree.calls.lock().unwrap().clone();
            assert!(calls.iter().all(|c| !c.is_empty() && c.len() <= batch));
            if batch > 1 {
                assert!(
                    calls.iter().any(|c| c.len() > 1),
                    "batch {batch}: {calls:?}"
                );
            }
            // Each directory read once; nothing below the skipped one.
            let listed = tree.listed();
            let unique: std::collections::HashSet<&String> = listed.iter().collect();
            assert_eq!(unique.len(), listed.len(), "batch {batch}: read twice");
            assert!(listed.iter().all(|d| !d.starts_with("/d02/")), "{listed:?}");
        }
    }

    #[tokio::test]
    async fn batches_start_after_the_hint() {
        let tree = Tree::new(5);
        let hint = StoragePath::new("/d03/e01/f0").unwrap();
        let got = tree.walk(8, &WalkOptions::start_after(hint), "").await;
        let mut all = Vec::new();
        serial(&tree, "/", "", &mut all);
        let want: Vec<String> = all
            .into_iter()
            .filter(|p| p.as_str() > "/d03/e01/f0")
            .collect();
        assert_eq!(got, want);
        // Nothing wholly before the hint was read.
        let listed = tree.listed();
        assert!(
            listed.iter().all(|d| d == "/" || d.as_str() >= "/d03"),
            "{listed:?}"
        );
        assert!(!listed.contains(&"/d03/e00".to_owned()), "{listed:?}");
    }
}
