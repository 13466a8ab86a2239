//! The resumable writer: chunk objects written as the data comes (memory: one chunk),
//! the upload's state in `u/<key>` after `close`, the head swapped in on `commit`.

use driver_api::Operation;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use driver_api::{FileWriter, Result, StorageError, StoragePath};
use serde::{Deserialize, Serialize};

use crate::{err, new_gen, now_ns, Head, Inner, RadosDriverError, DRIVER};

/// What `u/<key>` holds: enough to resume from any process.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Upload {
    gen: String,
    chunk: u64,
    size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    Committed,
    Cancelled,
}

pub(crate) struct RadosWriter {
    s: Arc<Inner>,
    path: StoragePath,
    up: Upload,
    /// Bytes in RADOS (`up.size` is only saved on close).
    flushed: u64,
    /// Bytes after `flushed`, fewer than what completes the current chunk.
    buf: BytesMut,
    state: State,
}

impl Inner {
    async fn read_upload(&self, path: &StoragePath) -> Result<Option<Upload>> {
        let oid = self.upload_oid(path);
        match self.io.read(&oid, 0, 64 << 10).await {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                err(
                    Operation::Writer,
                    path,
                    RadosDriverError::Corrupt {
                        what: "upload state",
                        oid,
                        reason: e.to_string(),
                    },
                )
            }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(err(Operation::Writer, path, e)),
        }
    }

    async fn save_upload(&self, op: Operation, path: &StoragePath, up: &Upload) -> Result<()> {
        let body = serde_json::to_vec(up).map_err(|e| {
            err(
                op,
                path,
                RadosDriverError::Corrupt {
                    what: "upload state",
                    oid: self.upload_oid(path),
                    reason: e.to_string(),
                },
            )
        })?;
        self.io
            .write_full(&self.upload_oid(path), Bytes::from(body))
            .await
            .map_err(|e| err(op, path, e))
    }

    /// Discards an upload: its chunks (probing past the saved size, for uploads whose
    /// process died before `close`), then its state.
    async fn discard_upload(&self, op: Operation, path: &StoragePath, up: &Upload) -> Result<()> {
        self.remove_chunks(&up.gen, up.size.div_ceil(up.chunk.max(1)), true)
            .await
            .map_err(|e| err(op, path, e))?;
        match self.io.remove(&self.upload_oid(path)).await {
            Err(e) if !e.is_not_found() => Err(err(op, path, e)),
            _ => Ok(()),
        }
    }
}

impl RadosWriter {
    pub(crate) async fn open(s: Arc<Inner>, path: &StoragePath, append: bool) -> Result<Self> {
        let existing = s.read_upload(path).await?;
        let up = match (append, existing) {
            (true, Some(up)) => up,
            (true, None) => match s.head(Operation::Writer, path).await? {
                None => return Err(StorageError::not_found(DRIVER, path)),
                Some(h) if h.size > 0 => {
                    return Err(StorageError::append_to_committed(DRIVER, path, h.size))
                }
                Some(_) => Self::start(&s, path).await?,
            },
            (false, old) => {
                if let Some(old) = old {
                    s.discard_upload(Operation::Writer, path, &old).await?;
                }
                Self::start(&s, path).await?
            }
        };
        Ok(Self {
            flushed: up.size,
            s,
            path: path.clone(),
            up,
            buf: BytesMut::new(),
            state: State::Open,
        })
    }

    /// A new upload, its state saved at once so a later writer can clean it up even if
    /// this process dies before `close`.
    async fn start(s: &Inner, path: &StoragePath) -> Result<Upload> {
        let up = Upload {
            gen: new_gen(),
            chunk: s.p.chunk_size,
            size: 0,
        };
        s.save_upload(Operation::Writer, path, &up).await?;
        Ok(up)
    }

    fn chunk(&self) -> u64 {
        self.up.chunk.max(1)
    }

    /// Writes `data` at `flushed` (it never crosses a chunk boundary).
    async fn put(&mut self, data: Bytes) -> Result<()> {
        let (i, off) = (self.flushed / self.chunk(), self.flushed % self.chunk());
        let len = data.len() as u64;
        let oid = self.s.chunk_oid(&self.up.gen, i);
        self.s
            .io
            .write(&oid, off, data)
            .await
            .map_err(|e| err(Operation::Write, &self.path, e))?;
        self.flushed += len;
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            let data = self.buf.split().freeze();
            self.put(data).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl FileWriter for RadosWriter {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        while !data.is_empty() {
            let filled = (self.flushed + self.buf.len() as u64) % self.chunk();
            let need = (self.chunk() - filled) as usize;
            if data.len() < need {
                self.buf.extend_from_slice(&data);
                break;
            }
            // This completes a chunk: write it (without a copy when nothing is buffered).
            let piece = if self.buf.is_empty() {
                data.split_to(need)
            } else {
                self.buf.extend_from_slice(&data.split_to(need));
                self.buf.split().freeze()
            };
            self.put(piece).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    async fn close(&mut self) -> Result<()> {
        if self.state != State::Open {
            return Ok(());
        }
        self.flush().await?;
        self.up.size = self.flushed;
        self.s
            .save_upload(Operation::Close, &self.path, &self.up)
            .await?;
        self.state = State::Closed;
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        self.buf.clear();
        self.up.size = self.flushed;
        self.s
            .discard_upload(Operation::Cancel, &self.path, &self.up)
            .await?;
        self.state = State::Cancelled;
        Ok(())
    }

    async fn commit(&mut self) -> Result<()> {
        self.flush().await?;
        let head = Head {
            size: self.flushed,
            chunk: self.chunk(),
            gen: self.up.gen.clone(),
            mtime_ns: now_ns(),
        };
        self.s.commit(Operation::Commit, &self.path, &head).await?;
        match self.s.io.remove(&self.s.upload_oid(&self.path)).await {
            Err(e) if !e.is_not_found() => {
                tracing::warn!(path = %self.path, error = %e, "rados: upload state left behind")
            }
            _ => {}
        }
        self.state = State::Committed;
        Ok(())
    }
}
