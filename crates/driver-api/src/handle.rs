//! The user-facing handles: [`Driver`] and [`Writer`].

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use crate::driver::{
    ByteStream, Capabilities, FileInfo, FileWriter, Leftover, RedirectRequest, StorageDriver,
    WalkControl, WalkOptions,
};
use crate::error::{Result, StorageError, WriterStatus};
use crate::operation::Operation;
use crate::path::StoragePath;

/// A cheap-to-clone handle on any driver: takes `&str` paths, validates them (so errors name
/// the driver), opens a `tracing` span per operation, and adds conveniences.
///
/// ```
/// # async fn demo(driver: driver_api::Driver) -> driver_api::Result<()> {
/// driver.put_content("/greeting", "hello").await?;
/// assert_eq!(&driver.get_content("/greeting").await?[..], b"hello");
/// let mut w = driver.writer("/upload", false).await?;
/// w.write("part one, ").await?;
/// w.write("part two").await?;
/// w.commit().await?;
/// assert_eq!(driver.stat("/upload").await?.size, 18);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Driver {
    inner: Arc<dyn StorageDriver>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Driver").field(&self.inner).finish()
    }
}

macro_rules! op_span {
    ($self:expr, $op:expr, $path:expr) => {
        tracing::debug_span!("storage", op = $op.as_str(), driver = $self.name(), path = %$path)
    };
}

impl Driver {
    /// Wraps a driver.
    pub fn new(driver: impl StorageDriver) -> Self {
        Self {
            inner: Arc::new(driver),
        }
    }

    /// Wraps a shared driver.
    pub fn from_arc(inner: Arc<dyn StorageDriver>) -> Self {
        Self { inner }
    }

    /// The raw driver.
    pub fn inner(&self) -> &Arc<dyn StorageDriver> {
        &self.inner
    }

    /// The driver's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The driver's capabilities.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// Validates `path` (the root is allowed).
    pub fn path(&self, path: &str) -> Result<StoragePath> {
        StoragePath::new(path).map_err(|e| StorageError::invalid_path(self.name().to_owned(), e))
    }

    /// Validates `path` as a file path (the root is rejected).
    pub fn file_path(&self, path: &str) -> Result<StoragePath> {
        let p = self.path(path)?;
        if p.is_root() {
            return Err(StorageError::InvalidPath {
                driver: self.name().to_owned().into(),
                path: path.to_owned(),
                reason: "the root is a directory, not a file",
            });
        }
        Ok(p)
    }

    /// See [`StorageDriver::get_content`].
    pub async fn get_content(&self, path: &str) -> Result<Bytes> {
        let p = self.file_path(path)?;
        let span = op_span!(self, Operation::GetContent, p);
        self.inner.get_content(&p).instrument(span).await
    }

    /// See [`StorageDriver::put_content`].
    pub async fn put_content(&self, path: &str, content: impl Into<Bytes>) -> Result<()> {
        let p = self.file_path(path)?;
        let span = op_span!(self, Operation::PutContent, p);
        self.inner
            .put_content(&p, content.into())
            .instrument(span)
            .await
    }

    /// See [`StorageDriver::reader`].
    pub async fn reader(&self, path: &str, offset: u64) -> Result<ByteStream> {
        let p = self.file_path(path)?;
        let span = op_span!(self, Operation::Reader, p);
        self.inner.reader(&p, offset).instrument(span).await
    }

    /// The reader as a [`tokio::io::AsyncRead`].
    pub async fn async_reader(
        &self,
        path: &str,
        offset: u64,
    ) -> Result<impl AsyncRead + Send + Unpin + 'static> {
        let stream = self.reader(path, offset).await?;
        Ok(tokio_util::io::StreamReader::new(
            stream.map_err(io::Error::from),
        ))
    }

    /// Reads a whole file through [`Driver::reader`] (a single chunk is returned as is).
    pub async fn read_to_end(&self, path: &str) -> Result<Bytes> {
        let mut stream = self.reader(path, 0).await?;
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next().await {
            chunks.push(chunk?);
        }
        if chunks.len() == 1 {
            return Ok(chunks.swap_remove(0));
        }
        let mut buf = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
        for c in &chunks {
            buf.extend_from_slice(c);
        }
        Ok(buf.freeze())
    }

    /// See [`StorageDriver::writer`]; the returned [`Writer`] enforces the protocol.
    pub async fn writer(&self, path: &str, append: bool) -> Result<Writer> {
        let p = self.file_path(path)?;
        let span = op_span!(self, Operation::Writer, p);
        let inner = self.inner.writer(&p, append).instrument(span).await?;
        Ok(Writer {
            inner,
            driver: self.clone(),
            path: p,
            status: None,
        })
    }

    /// Streams `data` into a new upload at `path` and commits it; cancels the upload if the
    /// stream fails. Returns the bytes written.
    pub async fn write_stream<S, E>(&self, path: &str, mut data: S) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: Into<crate::error::BoxError>,
    {
        let mut w = self.writer(path, false).await?;
        while let Some(chunk) = data.next().await {
            let res = match chunk {
                Ok(c) => w.write(c).await,
                Err(e) => Err(StorageError::backend(
                    self.name().to_owned(),
                    Operation::Write,
                    &w.path,
                    e,
                )),
            };
            if let Err(e) = res {
                let _ = w.cancel().await;
                return Err(e);
            }
        }
        w.commit().await?;
        Ok(w.size())
    }

    /// Copies the file `src` to `dst` by streaming (bounded memory).
    pub async fn copy(&self, src: &str, dst: &str) -> Result<u64> {
        let stream = self.reader(src, 0).await?;
        self.write_stream(dst, stream).await
    }

    /// See [`StorageDriver::stat`].
    pub async fn stat(&self, path: &str) -> Result<FileInfo> {
        let p = self.path(path)?;
        let span = op_span!(self, Operation::Stat, p);
        self.inner.stat(&p).instrument(span).await
    }

    /// See [`StorageDriver::list`].
    pub async fn list(&self, path: &str) -> Result<Vec<StoragePath>> {
        let p = self.path(path)?;
        let span = op_span!(self, Operation::List, p);
        self.inner.list(&p).instrument(span).await
    }

    /// Moves `src` to `dst` (Distribution's `Move`); see [`StorageDriver::rename`].
    pub async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        let s = self.file_path(src)?;
        let d = self.file_path(dst)?;
        let span = tracing::debug_span!("storage", op = Operation::Rename.as_str(), driver = self.name(), path = %s, dst = %d);
        self.inner.rename(&s, &d).instrument(span).await
    }

    /// See [`StorageDriver::delete`].
    pub async fn delete(&self, path: &str) -> Result<()> {
        let p = self.file_path(path)?;
        let span = op_span!(self, Operation::Delete, p);
        self.inner.delete(&p).instrument(span).await
    }

    /// See [`StorageDriver::redirect_url`].
    pub async fn redirect_url(
        &self,
        request: &RedirectRequest,
        path: &str,
    ) -> Result<Option<String>> {
        let p = self.file_path(path)?;
        let span = op_span!(self, Operation::RedirectUrl, p);
        self.inner.redirect_url(request, &p).instrument(span).await
    }

    /// See [`StorageDriver::walk`].
    pub async fn walk<F>(&self, path: &str, options: &WalkOptions, mut f: F) -> Result<()>
    where
        F: FnMut(&FileInfo) -> WalkControl + Send,
    {
        let p = self.path(path)?;
        let span = op_span!(self, Operation::Walk, p);
        self.inner.walk(&p, options, &mut f).instrument(span).await
    }

    /// See [`StorageDriver::uploads`]; `path` may be the root.
    pub async fn uploads(&self, path: &str) -> Result<Vec<Leftover>> {
        let p = self.path(path)?;
        let span = op_span!(self, Operation::Uploads, p);
        self.inner.uploads(&p).instrument(span).await
    }

    /// See [`StorageDriver::purge_upload`].
    pub async fn purge_upload(&self, leftover: &Leftover) -> Result<()> {
        let p = &leftover.path;
        let span = op_span!(self, Operation::PurgeUpload, p);
        self.inner.purge_upload(leftover).instrument(span).await
    }

    /// Every file and directory below `path`, in walk order.
    pub async fn walk_collect(&self, path: &str) -> Result<Vec<FileInfo>> {
        let mut out = Vec::new();
        self.walk(path, &WalkOptions::default(), |fi| {
            out.push(fi.clone());
            WalkControl::Continue
        })
        .await?;
        Ok(out)
    }
}

/// An upload in progress, from [`Driver::writer`].
///
/// Enforces the writer protocol: after `close`, `commit` or `cancel`, `write` and `commit`
/// return [`StorageError::WriterFinished`]; `close` after `commit` or `cancel` is a no-op
/// (Distribution's callers do that); a second `close` is an error. A failed `commit`
/// leaves the writer cancellable.
pub struct Writer {
    inner: Box<dyn FileWriter>,
    driver: Driver,
    path: StoragePath,
    status: Option<WriterStatus>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("driver", &self.driver.name())
            .field("path", &self.path)
            .field("size", &self.inner.size())
            .field("status", &self.status)
            .finish()
    }
}

impl Writer {
    fn finished(&self, status: WriterStatus) -> StorageError {
        StorageError::WriterFinished {
            driver: self.driver.name().to_owned().into(),
            path: self.path.as_str().to_owned(),
            status,
        }
    }

    fn check_open(&self) -> Result<()> {
        match self.status {
            None => Ok(()),
            Some(s) => Err(self.finished(s)),
        }
    }

    /// The upload's path.
    pub fn path(&self) -> &StoragePath {
        &self.path
    }

    /// Bytes in the upload so far.
    pub fn size(&self) -> u64 {
        self.inner.size()
    }

    /// Appends `data`.
    pub async fn write(&mut self, data: impl Into<Bytes>) -> Result<()> {
        self.check_open()?;
        self.inner.write(data.into()).await
    }

    /// Flushes and keeps the upload for a later `writer(path, true)`.
    pub async fn close(&mut self) -> Result<()> {
        match self.status {
            None => {
                self.status = Some(WriterStatus::Closed);
                let span = op_span!(self.driver, Operation::Close, self.path);
                self.inner.close().instrument(span).await
            }
            Some(WriterStatus::Closed) => Err(self.finished(WriterStatus::Closed)),
            Some(_) => Ok(()),
        }
    }

    /// Makes the content readable at the path.
    ///
    /// If it fails, the writer is [`WriterStatus::CommitFailed`]: the driver has aborted
    /// what the upload had stored, `cancel` is still allowed (and removes whatever is
    /// left), and `write` and `commit` are refused.
    pub async fn commit(&mut self) -> Result<()> {
        self.check_open()?;
        let span = op_span!(self.driver, Operation::Commit, self.path);
        let res = self.inner.commit().instrument(span).await;
        self.status = Some(match res {
            Ok(()) => WriterStatus::Committed,
            Err(_) => WriterStatus::CommitFailed,
        });
        res
    }

    /// Discards the upload. Allowed on an open or closed writer, and after a failed
    /// commit.
    pub async fn cancel(&mut self) -> Result<()> {
        match self.status {
            None | Some(WriterStatus::Closed) | Some(WriterStatus::CommitFailed) => {
                self.status = Some(WriterStatus::Cancelled);
                let span = op_span!(self.driver, Operation::Cancel, self.path);
                self.inner.cancel().instrument(span).await
            }
            Some(s) => Err(self.finished(s)),
        }
    }

    /// An [`AsyncWrite`] over this writer: `poll_shutdown` commits the upload.
    pub fn into_async_write(self) -> AsyncWriter {
        AsyncWriter {
            state: AsyncState::Idle(Box::new(self)),
        }
    }
}

type Pending = BoxFuture<'static, (Box<Writer>, Result<()>)>;

enum AsyncState {
    Idle(Box<Writer>),
    Busy(Pending),
    Done,
}

/// [`AsyncWrite`] adapter from [`Writer::into_async_write`].
///
/// Each `poll_write` hands its bytes to the driver and returns at once; the next call waits
/// for that write to finish, so one write is in flight at a time and memory stays bounded.
/// `poll_shutdown` commits; after it, the writer is gone.
pub struct AsyncWriter {
    state: AsyncState,
}

impl AsyncWriter {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let AsyncState::Busy(fut) = &mut self.state {
            let (w, res) = ready!(fut.poll_unpin(cx));
            self.state = AsyncState::Idle(w);
            res?;
        }
        Poll::Ready(Ok(()))
    }

    fn start<F>(&mut self, op: F)
    where
        F: for<'a> FnOnce(&'a mut Writer) -> BoxFuture<'a, Result<()>> + Send + 'static,
    {
        if let AsyncState::Idle(mut w) = std::mem::replace(&mut self.state, AsyncState::Done) {
            self.state = AsyncState::Busy(Box::pin(async move {
                let res = op(&mut w).await;
                (w, res)
            }));
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "writer already shut down")
}

impl AsyncWrite for AsyncWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if matches!(self.state, AsyncState::Done) {
            return Poll::Ready(Err(gone()));
        }
        let data = Bytes::copy_from_slice(buf);
        self.start(move |w| Box::pin(w.write(data)));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_pending(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                AsyncState::Done => return Poll::Ready(Ok(())),
                AsyncState::Busy(_) => ready!(self.poll_pending(cx))?,
                AsyncState::Idle(w) if w.status.is_none() => {
                    self.start(|w| Box::pin(w.commit()));
                }
                AsyncState::Idle(_) => {
                    self.state = AsyncState::Done;
                }
            }
        }
    }
}
