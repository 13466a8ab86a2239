//! One request's frames, on either side: sending with credit, receiving with grants.
//!
//! A connection's reader task routes each incoming frame to the [`Chan`] of its id (an
//! unbounded inbox: the task never waits for a slow consumer, and flow control bounds
//! what a stream can queue to one window). Outgoing frames go through one bounded queue to
//! the connection's writer task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

use crate::frame::{Frame, Kind};
use crate::pool::Pool;
use crate::shm::{Shm, MIN_SHARED, REGION};
use crate::wire::WireError;

/// Each stream's initial window, and the most a receiver buffers.
pub const WINDOW: u32 = 1 << 20;
/// The largest `DATA` frame this crate sends.
pub const CHUNK: usize = 512 << 10;

/// Why a request's frames stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChanError {
    /// The peer reported an error (`ERROR`, or a failed `HELLO`).
    Remote(Box<WireError>),
    /// The peer broke the protocol.
    Protocol(String),
    /// The connection is gone (the reason, e.g. the child's exit status).
    Closed(String),
    /// The host cancelled the request.
    Cancelled,
    /// Nothing arrived in time.
    Timeout(Duration),
}

/// Where a request's outgoing frames go, and the shared region its `DATA` may use.
#[derive(Clone)]
pub struct Outbox {
    sink: Sink,
    shm: Option<Arc<Shm>>,
}

/// A writer task's queue (the child side, where one task owns stdout), or the pipe itself
/// behind a lock (the host side: the caller writes its own frames, one task hop less per
/// request).
#[derive(Clone)]
enum Sink {
    Queue(mpsc::Sender<Frame>),
    Direct(Arc<tokio::sync::Mutex<DirectSink>>),
}

/// The host's end of a child's stdin.
pub type DirectSink = crate::frame::FrameWriter<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>;

impl Outbox {
    /// Frames go to a writer task's queue.
    pub fn queue(tx: mpsc::Sender<Frame>) -> Self {
        Self {
            sink: Sink::Queue(tx),
            shm: None,
        }
    }

    /// Frames are written to the pipe by the sender.
    pub fn direct(sink: DirectSink) -> Self {
        Self {
            sink: Sink::Direct(Arc::new(tokio::sync::Mutex::new(sink))),
            shm: None,
        }
    }

    /// Large `DATA` may go through `shm` (agreed in `HELLO`).
    pub fn with_shm(mut self, shm: Option<Arc<Shm>>) -> Self {
        self.shm = shm;
        self
    }

    /// Sends one frame; `Err` when the other side is gone.
    pub async fn send(&self, f: Frame) -> Result<(), ()> {
        self.put(f, true).await
    }

    /// Queues one frame without flushing it to the pipe (a writer task's queue flushes
    /// when it runs dry anyway): for a request whose next frames follow at once.
    pub async fn feed(&self, f: Frame) -> Result<(), ()> {
        self.put(f, false).await
    }

    /// Writes what [`feed`](Self::feed) left unflushed.
    pub async fn flush(&self) -> Result<(), ()> {
        match &self.sink {
            Sink::Queue(_) => Ok(()),
            Sink::Direct(sink) => sink.lock().await.flush().await.map_err(drop),
        }
    }

    async fn put(&self, f: Frame, flush: bool) -> Result<(), ()> {
        match &self.sink {
            Sink::Queue(tx) => tx.send(f).await.map_err(drop),
            Sink::Direct(sink) => {
                let mut sink = sink.lock().await;
                // Ranges given back ride in front of whatever goes out.
                if let Some(r) = self.shm.as_ref().and_then(|s| s.take_released()) {
                    sink.feed(r).await.map_err(drop)?;
                }
                sink.feed(f).await.map_err(drop)?;
                if flush {
                    sink.flush().await.map_err(drop)?;
                }
                Ok(())
            }
        }
    }

    /// Sends `f` from a destructor: at once if possible, else from a task.
    fn send_soon(&self, f: Frame) {
        let f = match &self.sink {
            Sink::Queue(tx) => match tx.try_send(f) {
                Err(mpsc::error::TrySendError::Full(f)) => f,
                _ => return,
            },
            Sink::Direct(_) => f,
        };
        let out = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = out.send(f).await;
            });
        }
    }
}

/// Routes incoming frames to requests; remembers why the connection died.
#[derive(Debug, Default)]
pub struct Router {
    inboxes: Mutex<HashMap<u64, mpsc::UnboundedSender<Frame>>>,
    dead: Mutex<Option<String>>,
}

impl Router {
    /// Registers `id`; `None` if the connection is already dead.
    pub fn register(&self, id: u64) -> Result<mpsc::UnboundedReceiver<Frame>, ChanError> {
        if let Some(why) = self.dead_reason() {
            return Err(ChanError::Closed(why));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(id, tx);
        Ok(rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::UnboundedSender<Frame>>> {
        self.inboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets `id`.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Hands `f` to its request; frames for unknown ids (late, after a cancel) are
    /// dropped. Returns whether the id was known.
    pub fn route(&self, f: Frame) -> bool {
        let map = self.lock();
        match map.get(&f.id) {
            Some(tx) => tx.send(f).is_ok(),
            None => false,
        }
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: u64) -> bool {
        self.lock().contains_key(&id)
    }

    /// The connection died: every request in flight sees `Closed(why)`.
    pub fn kill(&self, why: String) {
        let mut d = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_none() {
            *d = Some(why);
        }
        drop(d);
        self.lock().clear();
    }

    /// Why the connection died, if it did.
    pub fn dead_reason(&self) -> Option<String> {
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One request's end of the connection.
pub struct Chan {
    /// Its id.
    pub id: u64,
    out: Outbox,
    inbox: mpsc::UnboundedReceiver<Frame>,
    router: Arc<Router>,
    /// Bytes this side may still send.
    credit: u64,
    /// Bytes received and handed out but not yet granted back.
    ungranted: u32,
    /// Longest wait for the next frame (`None`: forever).
    timeout: Option<Duration>,
    /// Frames arrived while waiting for credit, to hand out next.
    held: std::collections::VecDeque<Frame>,
    /// Send `CANCEL` if dropped before [`finish`](Self::finish) (the host's side).
    cancel_on_drop: bool,
}

impl Chan {
    /// A channel for `id` (registered with `router` already: `inbox`).
    pub fn new(
        id: u64,
        out: Outbox,
        inbox: mpsc::UnboundedReceiver<Frame>,
        router: Arc<Router>,
        timeout: Option<Duration>,
    ) -> Self {
        Self {
            id,
            out,
            inbox,
            router,
            credit: WINDOW as u64,
            ungranted: 0,
            timeout,
            held: Default::default(),
            cancel_on_drop: false,
        }
    }

    /// Sends `CANCEL` for the request if this is dropped before [`finish`](Self::finish).
    pub fn cancel_on_drop(mut self) -> Self {
        self.cancel_on_drop = true;
        self
    }

    /// The request ended normally: nothing to cancel on drop.
    pub fn finish(&mut self) {
        self.cancel_on_drop = false;
    }

    fn closed(&self) -> ChanError {
        ChanError::Closed(
            self.router
                .dead_reason()
                .unwrap_or_else(|| "the connection closed".into()),
        )
    }

    /// Why a write to the peer failed: the pipe breaks before the reader side has seen
    /// the peer exit, so wait a moment for the reason (its exit status) to be known.
    async fn write_failed(&self) -> ChanError {
        for _ in 0..300 {
            if let Some(why) = self.router.dead_reason() {
                return ChanError::Closed(why);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.closed()
    }

    /// Sends a frame of this request.
    pub async fn send(&self, kind: Kind, payload: impl Into<Bytes>) -> Result<(), ChanError> {
        self.send_frame(Frame::new(kind, self.id, payload)).await
    }

    async fn send_frame(&self, f: Frame) -> Result<(), ChanError> {
        self.put(f, true).await
    }

    async fn put(&self, f: Frame, flush: bool) -> Result<(), ChanError> {
        if self.out.put(f, flush).await.is_err() {
            return Err(self.write_failed().await);
        }
        Ok(())
    }

    /// Queues a frame of this request without flushing it (see [`Outbox::feed`]); the
    /// next [`send`](Self::send), or a wait for credit, flushes it.
    pub async fn feed(&self, kind: Kind, payload: impl Into<Bytes>) -> Result<(), ChanError> {
        self.put(Frame::new(kind, self.id, payload), false).await
    }

    /// Like [`send_data`](Self::send_data), leaving the last frame unflushed.
    pub async fn feed_data(&mut self, data: Bytes) -> Result<(), ChanError> {
        self.data(data, false).await
    }

    /// Sends a JSON payload.
    pub async fn send_json<T: serde::Serialize>(&self, kind: Kind, v: &T) -> Result<(), ChanError> {
        let body = serde_json::to_vec(v).map_err(|e| ChanError::Protocol(e.to_string()))?;
        self.send(kind, body).await
    }

    async fn raw_next(&mut self) -> Result<Frame, ChanError> {
        let next = self.inbox.recv();
        let f = match self.timeout {
            Some(t) => tokio::time::timeout(t, next)
                .await
                .map_err(|_| ChanError::Timeout(t))?,
            None => next.await,
        };
        f.ok_or_else(|| self.closed())
    }

    /// The next frame for this request. `CREDIT` frames are absorbed; `DATA` is granted
    /// back as it is handed out; `ERROR` becomes `Remote`; `CANCEL` becomes `Cancelled`.
    pub async fn next(&mut self) -> Result<Frame, ChanError> {
        loop {
            let f = match self.held.pop_front() {
                Some(f) => f,
                None => self.raw_next().await?,
            };
            match f.kind {
                Kind::Credit => self.add_credit(&f)?,
                Kind::Error => return Err(ChanError::Remote(Box::new(parse_error(&f.payload)))),
                Kind::Cancel => return Err(ChanError::Cancelled),
                Kind::Data => {
                    self.ungranted = self.ungranted.saturating_add(f.payload.len() as u32);
                    if self.ungranted >= WINDOW / 2 {
                        let n = std::mem::take(&mut self.ungranted);
                        if self.out.send(Frame::credit(self.id, n)).await.is_err() {
                            return Err(self.write_failed().await);
                        }
                    }
                    return Ok(f);
                }
                _ => return Ok(f),
            }
        }
    }

    fn add_credit(&mut self, f: &Frame) -> Result<(), ChanError> {
        let n = f
            .credit_amount()
            .ok_or_else(|| ChanError::Protocol("a CREDIT frame without 4 bytes".into()))?;
        self.credit = self.credit.saturating_add(n as u64);
        Ok(())
    }

    /// Sends `data` as `DATA` frames, waiting for credit as needed. Frames other than
    /// `CREDIT` that arrive meanwhile are kept for [`next`](Self::next), except `ERROR`
    /// and `CANCEL`, which end the send.
    pub async fn send_data(&mut self, data: Bytes) -> Result<(), ChanError> {
        self.data(data, true).await
    }

    async fn data(&mut self, mut data: Bytes, flush: bool) -> Result<(), ChanError> {
        while !data.is_empty() {
            if self.credit == 0 && !flush && self.out.flush().await.is_err() {
                // What was fed must reach the peer before its credit can come back.
                return Err(self.write_failed().await);
            }
            while self.credit == 0 {
                let f = self.raw_next().await?;
                match f.kind {
                    Kind::Credit => self.add_credit(&f)?,
                    Kind::Error => {
                        return Err(ChanError::Remote(Box::new(parse_error(&f.payload))))
                    }
                    Kind::Cancel => return Err(ChanError::Cancelled),
                    _ => self.held.push_back(f),
                }
            }
            // Absorb credit that is already there without waiting.
            while let Ok(f) = self.inbox.try_recv() {
                match f.kind {
                    Kind::Credit => self.add_credit(&f)?,
                    Kind::Error => {
                        return Err(ChanError::Remote(Box::new(parse_error(&f.payload))))
                    }
                    Kind::Cancel => return Err(ChanError::Cancelled),
                    _ => self.held.push_back(f),
                }
            }
            let n = data.len().min(self.credit as usize);
            let frame = match (&self.out.shm, n >= MIN_SHARED) {
                (Some(shm), true) => {
                    // The rest in one frame when the credit covers it and it is at most
                    // one window (a whole small object), else CHUNK-sized frames that
                    // keep several in flight.
                    let whole = n == data.len() && n <= WINDOW as usize;
                    let n = if whole { n } else { n.min(CHUNK) };
                    // Bytes a driver read into the region go by reference; others are
                    // copied in.
                    let frame = shm.reference(self.id, &data[..n]);
                    frame.or_else(|| shm.put(self.id, &data[..n])).map(|f| {
                        data.advance(n);
                        (f, n)
                    })
                }
                _ => None,
            };
            // No shared region, too small, or the region is full: through the pipe.
            let (frame, n) = frame.unwrap_or_else(|| {
                let n = n.min(CHUNK);
                (Frame::new(Kind::Data, self.id, data.split_to(n)), n)
            });
            self.credit -= n as u64;
            self.put(frame, flush).await?;
        }
        Ok(())
    }

    /// A `DATA` payload as lent from the peer's shared region (no copy), unless this
    /// side already holds more than half of that region, when it is copied out: a
    /// consumer that keeps the buffers it is given (an in-memory store) then costs a copy
    /// instead of starving the peer of space. The child hands its driver bytes this way,
    /// and the host a reader's chunks (a consumer passes them on and drops them); what
    /// `get_content` returns, which callers may keep indefinitely, is always copied
    /// ([`owned`](Self::owned)).
    pub fn lend(&self, f: Frame) -> Bytes {
        match &self.out.shm {
            Some(shm) if f.is_shared() && shm.held_bytes() <= REGION as u64 / 2 => f.payload,
            _ => self.owned(f),
        }
    }

    /// A `DATA` payload to hand on: bytes lent from the peer's shared region are copied
    /// out (into a warm buffer of the connection's [`Pool`]) and so given back, so that a
    /// lease never outlives the handling of its frame, whatever the caller does with the
    /// bytes.
    pub fn owned(&self, f: Frame) -> Bytes {
        match &self.out.shm {
            Some(shm) if f.is_shared() => shm.pool().copy(&[&f.payload]),
            _ => f.payload,
        }
    }

    /// Whether an `ERROR` (or `CANCEL`) is already waiting, without blocking: how a
    /// sender learns early that the peer gave up.
    pub fn pending_error(&mut self) -> Option<ChanError> {
        while let Ok(f) = self.inbox.try_recv() {
            match f.kind {
                Kind::Error => return Some(ChanError::Remote(Box::new(parse_error(&f.payload)))),
                Kind::Cancel => return Some(ChanError::Cancelled),
                Kind::Credit => {
                    if let Err(e) = self.add_credit(&f) {
                        return Some(e);
                    }
                }
                _ => self.held.push_back(f),
            }
        }
        None
    }
}

impl Drop for Chan {
    fn drop(&mut self) {
        self.router.remove(self.id);
        if self.cancel_on_drop && self.router.dead_reason().is_none() {
            self.out
                .send_soon(Frame::new(Kind::Cancel, self.id, Bytes::new()));
        }
    }
}

/// Reads an error object (a malformed one becomes a `backend` error saying so).
pub fn parse_error(payload: &[u8]) -> WireError {
    serde_json::from_slice(payload).unwrap_or_else(|_| {
        WireError::backend(format!(
            "malformed error from the driver: {}",
            String::from_utf8_lossy(&payload[..payload.len().min(200)])
        ))
    })
}

/// Joins a stream's `DATA` payloads into one buffer, sized once from a hint; a stream of
/// one frame is passed on without a copy (unless it was lent: see [`Chan::owned`]).
#[derive(Debug, Default)]
pub struct Gather {
    first: Option<Frame>,
    buf: Option<Vec<u8>>,
    capacity: usize,
    pool: Option<Pool>,
}

impl Gather {
    /// A gatherer expecting about `capacity` bytes, for `chan`'s stream.
    pub fn new(capacity: usize, chan: &Chan) -> Self {
        Self {
            capacity,
            pool: chan.out.shm.as_ref().map(|s| s.pool().clone()),
            ..Self::default()
        }
    }

    /// Adds a `DATA` frame's bytes.
    pub fn push(&mut self, f: Frame) {
        let buf = match (&mut self.buf, self.first.take()) {
            (Some(buf), _) => buf,
            (None, None) => {
                self.first = Some(f);
                return;
            }
            (None, Some(first)) => {
                let want = self.capacity.max(first.payload.len() + f.payload.len());
                let mut buf = match &self.pool {
                    Some(p) => p.take(want),
                    None => Vec::with_capacity(want),
                };
                buf.extend_from_slice(&first.payload);
                self.buf.insert(buf)
            }
        };
        buf.extend_from_slice(&f.payload);
    }

    /// All the bytes; lent ones are copied out (see [`Chan::owned`]).
    pub fn finish(self, chan: &Chan) -> Bytes {
        match (self.first, self.buf) {
            (Some(f), _) => chan.owned(f),
            (None, Some(buf)) => match &self.pool {
                Some(p) => p.wrap(buf),
                None => buf.into(),
            },
            (None, None) => Bytes::new(),
        }
    }

    /// All the bytes, lent ones as [`Chan::lend`] decides.
    pub fn finish_lent(self, chan: &Chan) -> Bytes {
        match self.first {
            Some(f) => chan.lend(f),
            None => self.finish(chan),
        }
    }
}
