//! Walking a tree: the generic algorithm, and the fallback over `list` + `stat`.
//!
//! [`walk_with`] holds the walk logic once (order, skip-dir, stop, start-after hint); a
//! driver only supplies how to list one directory with metadata. [`walk_fallback`] supplies
//! it from `list` + `stat` and is the default of [`StorageDriver::walk`]. Object stores,
//! which list a whole prefix in one flat pass, use [`flat::FlatWalk`] instead.

pub mod flat;
pub mod order;

use std::future::Future;

use futures::{StreamExt, TryStreamExt};

use crate::driver::{FileInfo, StorageDriver, WalkControl, WalkFn, WalkOptions};
use crate::error::{Result, StorageError};
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
    let hint = options.start_after_hint.as_ref();
    let mut first = list_dir(root.clone()).await?;
    first.sort_unstable_by(|a, b| b.path.cmp(&a.path));
    // A stack of directories being visited; each holds its remaining children in reverse
    // order so `pop` yields the next one.
    let mut stack: Vec<Vec<FileInfo>> = vec![first];

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
        if descend {
            match list_dir(info.path.clone()).await {
                Ok(mut entries) => {
                    entries.sort_unstable_by(|a, b| b.path.cmp(&a.path));
                    stack.push(entries);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
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
