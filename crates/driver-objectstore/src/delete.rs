//! The tree delete: everything below a path, then the object at the path itself.
//!
//! It streams: one listing page is read, its keys deleted in batches of the backend's
//! size (several batches in flight), then the next page is read. Memory is one page
//! whatever the size of the tree.
//!
//! # Why deleting while paging skips nothing
//!
//! Every store lists keys in byte order, and the next page is asked for *after the last
//! key already listed*: with the start-after key itself where the backend takes one
//! ([`ObjectBackend::START_AFTER`]: S3's `StartAfter`, GCS's `startOffset`, Swift's
//! `marker`, OSS's `start-after`), else with the service's marker, which on Azure names
//! the next blob by name. The position is a key, not a count, so removing keys that sort
//! before it cannot move a later key across it; a key written below the path during the
//! delete is deleted if it sorts after the position, and left if it sorts before (as it
//! would be had it been written just after the delete). The service's own page tokens are
//! not trusted to be positional: some emulators encode an offset, and deleting the first
//! page would then make the second page skip as many keys.
//!
//! Only keys below `<key>/` are listed, so siblings sharing a name prefix (`/a/bc` when
//! deleting `/a/b`) are never touched; the object at `<key>` itself is deleted alone.

use std::sync::atomic::Ordering::Relaxed;

use driver_api::{Result, StorageError};
use futures::{StreamExt, TryStreamExt};

use crate::pager::Continue;
use crate::{Cx, ObjectBackend, ObjectStore};

pub(crate) async fn tree<B: ObjectBackend>(store: &ObjectStore<B>, cx: Cx<'_>) -> Result<()> {
    let b = store.backend();
    let path = cx.path;
    let prefix = b.keys().dir_prefix(path);
    let batch = b.delete_batch_size().max(1);
    let mut pager = store.pager(cx, &prefix, false);
    pager.continue_by(Continue::AfterLastKey);
    let mut below = 0u64;
    while let Some(page) = pager.next().await? {
        let objects = &page.objects;
        below += objects.len() as u64;
        futures::stream::iter((0..objects.len()).step_by(batch))
            .map(|i| {
                store.counters.delete.fetch_add(1, Relaxed);
                b.delete_batch(cx, &objects[i..objects.len().min(i + batch)])
            })
            .buffer_unordered(b.delete_concurrency().max(1))
            .try_collect::<Vec<()>>()
            .await?;
    }
    let key = store.key(path);
    // Whether the object itself existed matters only when nothing was below it.
    let itself = !path.is_root() && b.delete(cx, &key, below == 0).await?;
    b.after_delete(cx, &key).await?;
    if below == 0 && !itself {
        return Err(StorageError::not_found(B::NAME, path));
    }
    Ok(())
}
