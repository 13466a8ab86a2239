//! [`Prefixed`]: a layer that presents one directory of a driver as a whole driver.
//!
//! Useful wherever a tool needs a private corner of a shared backend: the conformance
//! suite run by `storagectl check` works under a random prefix of the configured storage
//! and deletes only that prefix; `sync` can copy between subtrees. Paths in results and in
//! errors are the caller's, never the inner driver's.
//!
//! ```
//! # async fn demo(inner: driver_api::Driver) -> driver_api::Result<()> {
//! use driver_api::{prefix::Prefixed, Driver};
//! let scoped = Driver::new(Prefixed::new(inner.inner().clone(), inner.path("/scratch")?));
//! scoped.put_content("/a", "x").await?; // stored at /scratch/a
//! assert_eq!(&inner.get_content("/scratch/a").await?[..], b"x");
//! # Ok(()) }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::driver::{
    ByteStream, Capabilities, FileInfo, FileWriter, Leftover, RedirectRequest, StorageDriver,
    WalkControl, WalkFn, WalkOptions,
};
use crate::error::{Result, StorageError};
use crate::path::StoragePath;

/// A driver rooted at `prefix` inside another driver (see the [module docs](self)).
///
/// The prefix directory need not exist: like any driver's root, listing it when it is
/// missing gives an empty list. The root itself is not a file (file operations on `/`
/// are `InvalidPath`, as on every driver).
#[derive(Debug, Clone)]
pub struct Prefixed {
    inner: Arc<dyn StorageDriver>,
    prefix: StoragePath,
}

impl Prefixed {
    /// Presents `prefix` of `inner` as a driver of its own.
    pub fn new(inner: Arc<dyn StorageDriver>, prefix: StoragePath) -> Self {
        Self { inner, prefix }
    }

    /// The prefix within the inner driver.
    pub fn prefix(&self) -> &StoragePath {
        &self.prefix
    }

    fn to_inner(&self, path: &StoragePath) -> StoragePath {
        path.under(&self.prefix)
    }

    /// Maps a path the inner driver reported back into this driver's namespace.
    fn to_outer_str(&self, inner: &str) -> String {
        match StoragePath::new(inner) {
            Ok(p) => match p.strip_prefix(&self.prefix) {
                Some(outer) => outer.as_str().to_owned(),
                None => inner.to_owned(),
            },
            Err(_) => inner.to_owned(),
        }
    }

    fn map_err(&self, e: StorageError) -> StorageError {
        e.map_path(|p| self.to_outer_str(p))
    }

    fn file(&self, path: &StoragePath) -> Result<StoragePath> {
        if path.is_root() {
            return Err(StorageError::InvalidPath {
                driver: self.inner.name().to_owned().into(),
                path: path.as_str().to_owned(),
                reason: "the root is a directory, not a file",
            });
        }
        Ok(self.to_inner(path))
    }
}

struct PrefixedWriter {
    inner: Box<dyn FileWriter>,
    layer: Prefixed,
}

#[async_trait]
impl FileWriter for PrefixedWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.inner
            .write(data)
            .await
            .map_err(|e| self.layer.map_err(e))
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    async fn close(&mut self) -> Result<()> {
        self.inner.close().await.map_err(|e| self.layer.map_err(e))
    }
    async fn cancel(&mut self) -> Result<()> {
        self.inner.cancel().await.map_err(|e| self.layer.map_err(e))
    }
    async fn commit(&mut self) -> Result<()> {
        self.inner.commit().await.map_err(|e| self.layer.map_err(e))
    }
}

#[async_trait]
impl StorageDriver for Prefixed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        let p = self.file(path)?;
        self.inner
            .get_content(&p)
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        let p = self.file(path)?;
        self.inner
            .put_content(&p, content)
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let p = self.file(path)?;
        let stream = self
            .inner
            .reader(&p, offset)
            .await
            .map_err(|e| self.map_err(e))?;
        let layer = self.clone();
        Ok(stream.map(move |r| r.map_err(|e| layer.map_err(e))).boxed())
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>> {
        let p = self.file(path)?;
        let inner = self
            .inner
            .writer(&p, append)
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(Box::new(PrefixedWriter {
            inner,
            layer: self.clone(),
        }))
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let mut fi = match self.inner.stat(&self.to_inner(path)).await {
            Ok(fi) => fi,
            // The root of a driver always exists, even before anything is written to it.
            Err(StorageError::PathNotFound { .. }) if path.is_root() => FileInfo {
                path: path.clone(),
                size: 0,
                mod_time: std::time::UNIX_EPOCH,
                is_dir: true,
            },
            Err(e) => return Err(self.map_err(e)),
        };
        fi.path = path.clone();
        Ok(fi)
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        match self.inner.list(&self.to_inner(path)).await {
            Ok(entries) => Ok(entries
                .into_iter()
                .filter_map(|p| p.strip_prefix(&self.prefix))
                .collect()),
            // The root of a driver always exists, even before anything is written to it.
            Err(StorageError::PathNotFound { .. }) if path.is_root() => Ok(Vec::new()),
            Err(e) => Err(self.map_err(e)),
        }
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let (s, d) = (self.file(src)?, self.file(dst)?);
        self.inner.rename(&s, &d).await.map_err(|e| self.map_err(e))
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let p = self.file(path)?;
        self.inner.delete(&p).await.map_err(|e| self.map_err(e))
    }

    async fn redirect_url(
        &self,
        request: &RedirectRequest,
        path: &StoragePath,
    ) -> Result<Option<String>> {
        let p = self.file(path)?;
        self.inner
            .redirect_url(request, &p)
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn walk(
        &self,
        path: &StoragePath,
        options: &WalkOptions,
        f: &mut WalkFn<'_>,
    ) -> Result<()> {
        let mut inner_options = options.clone();
        inner_options.start_after_hint =
            options.start_after_hint.as_ref().map(|h| self.to_inner(h));
        let prefix = self.prefix.clone();
        let mut mapped = |fi: &FileInfo| -> WalkControl {
            match fi.path.strip_prefix(&prefix) {
                Some(outer) => f(&FileInfo {
                    path: outer,
                    ..fi.clone()
                }),
                None => WalkControl::Continue,
            }
        };
        match self
            .inner
            .walk(&self.to_inner(path), &inner_options, &mut mapped)
            .await
        {
            Ok(()) => Ok(()),
            Err(StorageError::PathNotFound { .. }) if path.is_root() => Ok(()),
            Err(e) => Err(self.map_err(e)),
        }
    }

    async fn uploads(&self, path: &StoragePath) -> Result<Vec<Leftover>> {
        let found = self
            .inner
            .uploads(&self.to_inner(path))
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(found
            .into_iter()
            .filter_map(|l| {
                let path = l.path.strip_prefix(&self.prefix)?;
                Some(Leftover { path, ..l })
            })
            .collect())
    }

    async fn purge_upload(&self, leftover: &Leftover) -> Result<()> {
        let inner = Leftover {
            path: self.to_inner(&leftover.path),
            ..leftover.clone()
        };
        self.inner
            .purge_upload(&inner)
            .await
            .map_err(|e| self.map_err(e))
    }
}
