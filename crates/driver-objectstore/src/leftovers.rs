//! Uploads that never completed ([`Leftover`]), found and purged once for every object
//! store, in one listing of the store plus one of the service's uploads:
//!
//! * a parked object of a closed writer (`<key>#upload`) is `Parked`;
//! * an *open* parked object (written when the upload started, on services that cannot
//!   list uploads: [`MultipartBackend::PARK_AT_START`](crate::MultipartBackend::PARK_AT_START))
//!   is an `Orphan` whose id is the parked object: its writer never closed;
//! * an upload the service lists ([`ObjectBackend::list_uploads`]: S3 and OSS multipart
//!   uploads, Azure blobs with only uncommitted blocks) that no parked object names is an
//!   `Orphan` whose id is the service's.
//!
//! Purging a parked upload resumes it and cancels it, so the writer protocol's own
//! cancel (abort the service's upload, remove the parked object) does the work; an
//! orphan is aborted ([`ObjectBackend::abort_upload`]), and an open parked object goes
//! after it. Committed content is never touched: no step writes or deletes the object at
//! the path.

use driver_api::Operation;
use std::collections::HashSet;
use std::time::SystemTime;

use driver_api::{Leftover, LeftoverKind, Result, StorageError, StoragePath};

use crate::read::read_all;
use crate::upload::{park_key, ParkedUpload};
use crate::{Cx, ObjectBackend, ObjectStore};

/// An upload the service holds, as [`ObjectBackend::list_uploads`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// The key it is for.
    pub key: String,
    /// The service's id for it.
    pub id: String,
    /// When it was started, where the service says.
    pub started: Option<SystemTime>,
}

const SUFFIX: &str = "#upload";

impl<B: ObjectBackend> ObjectStore<B> {
    /// See [`driver_api::StorageDriver::uploads`].
    pub(crate) async fn find_leftovers(&self, path: &StoragePath) -> Result<Vec<Leftover>> {
        let cx = Cx::new(Operation::Uploads, path);
        let keys = self.backend.keys();
        let root = keys.dir_prefix(&StoragePath::root());
        // At or below `path`: its own parked object and everything under its prefix.
        let (prefix, own) = if path.is_root() {
            (root.clone(), None)
        } else {
            let key = self.key(path);
            (key.clone(), Some(park_key(&key)))
        };
        let below = keys.dir_prefix(path);
        let in_scope = |key: &str| key.starts_with(&below) || Some(key) == own.as_deref();
        let path_of = |key: &str| -> Option<StoragePath> {
            let rel = key.strip_prefix(&root)?;
            StoragePath::new(&format!("/{rel}")).ok()
        };

        let mut found = Vec::new();
        let mut named = HashSet::new();
        let mut pager = self.pager(cx, &prefix, false);
        while let Some(page) = pager.next().await? {
            for o in &page.objects {
                let Some(target) = o.key.strip_suffix(SUFFIX) else {
                    continue;
                };
                if !in_scope(&o.key) {
                    continue;
                }
                let Some(at) = path_of(target) else {
                    continue;
                };
                // The upload it names is not an orphan of the service's listing (an
                // unreadable state is listed all the same: purging it removes the
                // parked object).
                let mut kind = LeftoverKind::Parked;
                if let Ok(Some(body)) = read_all(&self.backend, cx, &o.key).await {
                    if let Ok(p) = ParkedUpload::parse(B::NAME, &at, body) {
                        if p.open {
                            kind = LeftoverKind::Orphan;
                        }
                        named.extend(p.upload);
                    }
                }
                found.push(Leftover {
                    path: at,
                    kind,
                    id: o.key.clone(),
                    modified: Some(o.mod_time),
                    size: Some(o.size),
                });
            }
        }
        for u in self.backend.list_uploads(cx, &prefix).await? {
            if named.contains(&u.id) || !in_scope_key(&u.key, &below, own.as_deref()) {
                continue;
            }
            let Some(at) = path_of(&u.key) else {
                continue;
            };
            found.push(Leftover {
                path: at,
                kind: LeftoverKind::Orphan,
                id: u.id,
                modified: u.started,
                size: None,
            });
        }
        found.sort_by(|a, b| (&a.path, a.kind, &a.id).cmp(&(&b.path, b.kind, &b.id)));
        Ok(found)
    }

    /// See [`driver_api::StorageDriver::purge_upload`].
    pub(crate) async fn purge_leftover(&self, leftover: &Leftover) -> Result<()> {
        let path = &leftover.path;
        let cx = Cx::new(Operation::PurgeUpload, path);
        let key = self.key(path);
        match leftover.kind {
            LeftoverKind::Parked => {
                if leftover.id != park_key(&key) {
                    return Err(StorageError::backend(
                        B::NAME,
                        Operation::PurgeUpload,
                        path,
                        format!("{} is not the parked object of this path", leftover.id),
                    ));
                }
                // The writer protocol's cancel: abort the upload, remove the parked
                // object. A state no writer can resume is removed as it is.
                match B::writer(self.backend.clone(), path, key.clone(), true).await {
                    Ok(mut w) => w.cancel().await,
                    Err(e) if e.is_retryable() => Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "unresumable upload state; removing it");
                        self.backend.delete(cx, &leftover.id, false).await.map(drop)
                    }
                }
            }
            // An open parked object: the upload it names, then the object.
            LeftoverKind::Orphan if leftover.id == park_key(&key) => {
                if let Some(body) = read_all(&self.backend, cx, &leftover.id).await? {
                    let state = ParkedUpload::parse(B::NAME, path, body);
                    if let Ok(ParkedUpload {
                        upload: Some(upload),
                        open: true,
                        ..
                    }) = &state
                    {
                        self.backend.abort_upload(cx, &key, upload).await?;
                    } else if matches!(state, Ok(ParkedUpload { open: false, .. })) {
                        // Closed since it was listed: a resumable upload stays.
                        return Err(StorageError::backend(
                            B::NAME,
                            Operation::PurgeUpload,
                            path,
                            "the upload was closed since it was listed; list it again",
                        ));
                    }
                    self.backend.delete(cx, &leftover.id, false).await?;
                }
                Ok(())
            }
            LeftoverKind::Orphan => self.backend.abort_upload(cx, &key, &leftover.id).await,
            _ => Err(StorageError::Unsupported {
                driver: B::NAME.into(),
                operation: Operation::PurgeUpload,
                feature: format!("purging a {}", leftover.kind).into(),
                path: Some(path.to_string()),
            }),
        }
    }
}

/// Whether an upload's `key` is at `own`'s path or below `below`.
fn in_scope_key(key: &str, below: &str, own: Option<&str>) -> bool {
    key.starts_with(below) || own.is_some_and(|o| o.strip_suffix(SUFFIX) == Some(key))
}
