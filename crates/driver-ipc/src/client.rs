//! The host side: [`IpcDriver`], a `StorageDriver` whose operations run in a child
//! process speaking docs/ipc-protocol.md.
//!
//! The child is started on first use (or at [`IpcDriver::spawn`]), its `HELLO` checked
//! (protocol and API versions, creation errors), and its stderr forwarded to `tracing`.
//! Many operations run at once over the one pipe pair, each under its own request id.
//! If the child dies, the operations in flight fail with an error naming the driver and
//! the exit status, and the next operation starts a new child (after a backoff that grows
//! with repeated failures, up to 5 s). A child that sends nothing for `timeout` while an
//! operation waits on it is killed, and a child that breaks the protocol (garbage on
//! stdout) is killed: the host never hangs and never panics on what a child sends.

use driver_api::Operation;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use driver_api::{
    async_trait, ByteStream, FileInfo, FileWriter, Leftover, RedirectMethod, RedirectRequest,
    Result, StorageDriver, StorageError, StoragePath, WalkControl, WalkFn, WalkOptions,
};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::codec::FramedRead;

use crate::chan::{Chan, ChanError, DirectSink, Gather, Outbox, Router};
use crate::frame::{Frame, FrameCodec, Kind};
use crate::shm::HostOffer;
use crate::wire::{
    size_hint, Action, Finish, Hello, Info, Request, SizeHint, SizeReply, UploadsReply, UrlReply,
    WireLeftover, MIN_PROTOCOL, PROTOCOL,
};

/// How to run a driver executable.
#[derive(Clone)]
pub struct IpcOptions {
    /// The name errors carry (the `<name>` of `registry-storage-<name>`).
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its parameters, passed as JSON in `argv[1]`.
    pub params: serde_json::Value,
    /// Longest wait for the child's `HELLO`.
    pub hello_timeout: Duration,
    /// Longest wait for the next frame of an operation before the child is deemed stuck
    /// (and killed).
    pub timeout: Duration,
    /// Offer the child shared memory for stream data (Linux; used only if the child
    /// takes it up in `HELLO`). On by default; off, every byte goes through the pipes.
    pub shared_memory: bool,
}

impl std::fmt::Debug for IpcOptions {
    /// Parameters may hold secrets: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = match &self.params {
            serde_json::Value::Object(m) => m.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        f.debug_struct("IpcOptions")
            .field("name", &self.name)
            .field("program", &self.program)
            .field("param_keys", &keys)
            .field("hello_timeout", &self.hello_timeout)
            .field("timeout", &self.timeout)
            .field("shared_memory", &self.shared_memory)
            .finish()
    }
}

impl IpcOptions {
    /// Options with the default timeouts (10 s for `HELLO`, 120 s per frame).
    pub fn new(
        name: impl Into<String>,
        program: impl Into<PathBuf>,
        params: serde_json::Value,
    ) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            params,
            hello_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            shared_memory: true,
        }
    }
}

/// One running child.
struct Conn {
    out: Outbox,
    router: Arc<Router>,
    /// Tells the reader task the host is done (it then waits for the child to exit).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    reader: tokio::task::AbortHandle,
    /// The shared memory, if the child took it up.
    shm: Option<Arc<crate::shm::Shm>>,
    /// The task that gives back shared memory (`RELEASE`), if shared memory is used.
    releases: Option<tokio::task::AbortHandle>,
    started: Instant,
    pid: Option<u32>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(r) = &self.releases {
            r.abort();
        }
        // Dropping the sink (with the last request) closes stdin, which asks the child to
        // exit; the reader task (which owns the child) waits a moment for that, then
        // kills it. A dead connection's child is killed at once.
        match self.stop.take() {
            Some(stop) if self.router.dead_reason().is_none() => {
                let _ = stop.send(());
            }
            _ => self.reader.abort(),
        }
    }
}

/// A driver in a child process (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct IpcDriver {
    host: Arc<Host>,
}

struct Host {
    opts: IpcOptions,
    name: String,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    next_id: AtomicU64,
    /// Consecutive short-lived children, for the restart backoff.
    failures: std::sync::Mutex<u32>,
    /// From the last `HELLO`.
    shared_state: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for IpcDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Parameters may hold secrets: only the program is shown.
        f.debug_struct("IpcDriver")
            .field("name", &self.host.name)
            .field("program", &self.host.opts.program)
            .finish_non_exhaustive()
    }
}

fn backend(name: &str, op: Operation, path: &str, retryable: bool, msg: String) -> StorageError {
    StorageError::Backend {
        driver: name.to_owned().into(),
        operation: op,
        path: path.to_owned(),
        retryable,
        source: msg.into(),
    }
}

impl IpcDriver {
    /// Starts the child and checks its handshake.
    pub async fn spawn(opts: IpcOptions) -> Result<Self> {
        let d = Self {
            host: Arc::new(Host {
                name: opts.name.clone(),
                opts,
                conn: tokio::sync::Mutex::new(None),
                next_id: AtomicU64::new(1),
                failures: std::sync::Mutex::new(0),
                shared_state: std::sync::atomic::AtomicBool::new(true),
            }),
        };
        d.host.conn(Operation::Connect).await?;
        Ok(d)
    }

    /// What the running child's shared memory has carried, or `None` when no child runs
    /// or it does not use shared memory (not offered, not Linux, or a 1.0 child).
    pub async fn shm_stats(&self) -> Option<crate::shm::ShmStats> {
        let c = self.host.conn.lock().await;
        c.as_ref()
            .filter(|c| c.router.dead_reason().is_none())
            .and_then(|c| c.shm.as_ref())
            .map(|s| s.stats())
    }

    /// The process id of the running child, if one runs.
    pub async fn pid(&self) -> Option<u32> {
        let c = self.host.conn.lock().await;
        c.as_ref()
            .filter(|c| c.router.dead_reason().is_none())
            .and_then(|c| c.pid)
    }
}

impl Host {
    fn err(&self, op: Operation, path: &str, e: ChanError) -> StorageError {
        match e {
            ChanError::Remote(w) => w.into_storage(&self.name, op, path),
            ChanError::Closed(why) => backend(&self.name, op, path, true, why),
            ChanError::Timeout(t) => backend(
                &self.name,
                op,
                path,
                true,
                format!("the driver process sent nothing for {t:?}; it was stopped"),
            ),
            ChanError::Protocol(m) => {
                backend(&self.name, op, path, false, format!("protocol error: {m}"))
            }
            ChanError::Cancelled => backend(&self.name, op, path, false, "cancelled".into()),
        }
    }

    /// The live connection, starting a child if there is none (or it died).
    async fn conn(&self, op: Operation) -> Result<Arc<Conn>> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            if c.router.dead_reason().is_none() {
                return Ok(c.clone());
            }
            let lived = c.started.elapsed();
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            *f = if lived > Duration::from_secs(30) {
                0
            } else {
                *f + 1
            };
        }
        *slot = None;
        let failures = *self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures > 0 {
            let wait = Duration::from_millis(100u64 << failures.min(6)).min(Duration::from_secs(5));
            tracing::warn!(driver = %self.name, ?wait, "restarting the driver process");
            tokio::time::sleep(wait).await;
        }
        let c = match self.start(op).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                *self.failures.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                return Err(e);
            }
        };
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn start(&self, op: Operation) -> Result<Conn> {
        let fail = |m: String| backend(&self.name, op, "", true, m);
        let program = &self.opts.program;
        let mut cmd = Command::new(program);
        cmd.arg(self.opts.params.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let offer = match self.opts.shared_memory {
            true => HostOffer::create()
                .inspect_err(|e| {
                    tracing::debug!(driver = %self.name, error = %e, "no shared memory; streams go through the pipes")
                })
                .ok(),
            false => None,
        };
        match &offer {
            Some(o) => o.attach(&mut cmd),
            None => {
                cmd.env_remove(crate::shm::ENV);
            }
        }
        let mut child = cmd.spawn().map_err(|e| StorageError::Config {
            driver: self.name.clone().into(),
            message: format!("cannot start {}: {e}", program.display()),
        })?;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => return Err(fail("the driver process has no pipes".into())),
            };
        let name = self.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "driver_ipc::child", driver = %name, "{line}");
            }
        });
        crate::pipes::grow(&stdin);
        crate::pipes::grow(&stdout);
        let pid = child.id();
        let mut frames = FramedRead::new(stdout, FrameCodec);
        let hello = match tokio::time::timeout(self.opts.hello_timeout, frames.next()).await {
            Err(_) => {
                let _ = child.start_kill();
                return Err(fail(format!(
                    "the driver process sent no HELLO within {:?}",
                    self.opts.hello_timeout
                )));
            }
            Ok(None) => {
                let status = exit_status(&mut child).await;
                return Err(fail(format!(
                    "the driver process exited before its HELLO ({status})"
                )));
            }
            Ok(Some(Err(e))) => {
                let _ = child.start_kill();
                return Err(fail(format!("protocol error before HELLO: {e}")));
            }
            Ok(Some(Ok(f))) if f.kind == Kind::Hello => f,
            Ok(Some(Ok(f))) => {
                let _ = child.start_kill();
                return Err(fail(format!("the first frame is {:?}, not HELLO", f.kind)));
            }
        };
        let hello: Hello = serde_json::from_slice(&hello.payload).map_err(|e| {
            let _ = child.start_kill();
            fail(format!("malformed HELLO: {e}"))
        })?;
        self.check(&hello).inspect_err(|_| {
            let _ = child.start_kill();
        })?;
        self.shared_state
            .store(hello.shared_state.unwrap_or(true), Ordering::Relaxed);
        let shm = match (offer, hello.shm) {
            (Some(o), Some(true)) => Some(Arc::new(o.accept())),
            _ => None,
        };
        tracing::debug!(driver = %self.name, child = %hello.driver, version = %hello.version, shared_memory = shm.is_some(), "driver process ready");

        let sink: DirectSink = crate::frame::FrameWriter::new(Box::new(stdin));
        let out = Outbox::direct(sink).with_shm(shm.clone());
        let releases = shm
            .clone()
            .map(|s| tokio::spawn(crate::shm::send_releases(s, out.clone())).abort_handle());
        let shm_conn = shm.clone();
        let router = Arc::new(Router::default());
        let r = router.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let reader = tokio::spawn(async move {
            let why = loop {
                let next = tokio::select! {
                    biased;
                    f = frames.next() => f,
                    _ = &mut stopped => {
                        // The driver was dropped and stdin closed: give the child a
                        // moment to finish and exit, then kill it.
                        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                        let _ = child.start_kill();
                        return;
                    }
                };
                match next.map(|f| f.and_then(|f| crate::shm::receive(shm.as_deref(), f))) {
                    Some(Ok(Some(f))) => {
                        r.route(f);
                    }
                    Some(Ok(None)) => {}
                    Some(Err(crate::frame::FrameError::Truncated(_))) => {
                        // Died while writing a frame.
                        let status = exit_status(&mut child).await;
                        break format!(
                            "the driver process exited in the middle of a frame ({status})"
                        );
                    }
                    Some(Err(e)) => {
                        let _ = child.start_kill();
                        break format!("protocol error: {e}; the driver process was stopped");
                    }
                    None => {
                        let status = exit_status(&mut child).await;
                        break format!("the driver process exited ({status})");
                    }
                }
            };
            tracing::warn!(reason = %why, "driver process connection lost");
            r.kill(why);
        });
        Ok(Conn {
            pid,
            out,
            router,
            stop: Some(stop),
            reader: reader.abort_handle(),
            shm: shm_conn,
            releases,
            started: Instant::now(),
        })
    }

    fn check(&self, h: &Hello) -> Result<()> {
        let cfg = |message: String| StorageError::Config {
            driver: self.name.clone().into(),
            message,
        };
        if let Some(e) = &h.error {
            return Err(e.clone().into_storage(&self.name, Operation::Connect, ""));
        }
        match driver_api::Version::parse(&h.protocol) {
            Some(v) if MIN_PROTOCOL.accepts(v) => {}
            _ => {
                return Err(cfg(format!(
                    "incompatible protocol version: the driver process speaks {:?}, this host {PROTOCOL} (it accepts {}.{} or a later minor)",
                    h.protocol, MIN_PROTOCOL.major, MIN_PROTOCOL.minor
                )))
            }
        }
        match driver_api::Version::parse(&h.api) {
            Some(v) if driver_api::CURRENT_VERSION.accepts(v) => Ok(()),
            _ => Err(cfg(format!(
                "incompatible storage API version: the driver implements {:?}, this host {}",
                h.api,
                driver_api::CURRENT_VERSION
            ))),
        }
    }

    /// Sends `req` and returns its channel.
    async fn call(&self, op: Operation, path: &str, req: &Request) -> Result<Chan> {
        self.open(op, path, req, true).await
    }

    /// Like [`call`](Self::call); with `flush` false the request waits in the pipe's
    /// buffer for the frames that follow it (one write, one wake-up of the child).
    async fn open(&self, op: Operation, path: &str, req: &Request, flush: bool) -> Result<Chan> {
        let conn = self.conn(op).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let inbox = conn
            .router
            .register(id)
            .map_err(|e| self.err(op, path, e))?;
        let chan = Chan::new(
            id,
            conn.out.clone(),
            inbox,
            conn.router.clone(),
            Some(self.opts.timeout),
        )
        .cancel_on_drop();
        let body = serde_json::to_vec(req)
            .map_err(|e| self.err(op, path, ChanError::Protocol(e.to_string())))?;
        match flush {
            true => chan.send(Kind::Request, body).await,
            false => chan.feed(Kind::Request, body).await,
        }
        .map_err(|e| self.err(op, path, e))?;
        Ok(chan)
    }

    /// The next frame; a timeout stops the child (it is stuck).
    async fn next(&self, chan: &mut Chan, op: Operation, path: &str) -> Result<Frame> {
        match chan.next().await {
            Ok(f) => Ok(f),
            Err(e) => {
                if let ChanError::Timeout(_) = e {
                    self.kill_current().await;
                }
                Err(self.err(op, path, e))
            }
        }
    }

    async fn kill_current(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            c.router
                .kill("the driver process stopped answering and was stopped".into());
        }
    }

    /// Expects `RESPONSE` and returns its payload.
    async fn response(&self, chan: &mut Chan, op: Operation, path: &str) -> Result<Bytes> {
        let f = self.next(chan, op, path).await?;
        match f.kind {
            Kind::Response => Ok(f.payload),
            k => Err(self.err(
                op,
                path,
                ChanError::Protocol(format!("expected RESPONSE, got {k:?}")),
            )),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        op: Operation,
        path: &str,
        b: &[u8],
    ) -> Result<T> {
        serde_json::from_slice(b).map_err(|e| {
            self.err(
                op,
                path,
                ChanError::Protocol(format!("malformed RESPONSE: {e}")),
            )
        })
    }

    /// Collects a stream to its `END`.
    async fn collect(
        &self,
        chan: &mut Chan,
        op: Operation,
        path: &str,
        capacity: usize,
    ) -> Result<Bytes> {
        let mut all = Gather::new(capacity, chan);
        loop {
            let f = self.next(chan, op, path).await?;
            match f.kind {
                Kind::Data => all.push(f),
                Kind::End => {
                    chan.finish();
                    return Ok(all.finish(chan));
                }
                k => {
                    return Err(self.err(
                        op,
                        path,
                        ChanError::Protocol(format!("unexpected {k:?} in a stream")),
                    ))
                }
            }
        }
    }

    async fn simple(&self, op: Operation, path: &str, req: Request) -> Result<Bytes> {
        let mut chan = self.call(op, path, &req).await?;
        let r = self.response(&mut chan, op, path).await?;
        chan.finish();
        Ok(r)
    }
}

async fn exit_status(child: &mut Child) -> String {
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(s)) => s.to_string(),
        Ok(Err(e)) => format!("status unknown: {e}"),
        Err(_) => {
            let _ = child.start_kill();
            "closed its output but did not exit; killed".into()
        }
    }
}

/// An upload in the child.
struct IpcWriter {
    host: Arc<Host>,
    path: StoragePath,
    chan: Option<Chan>,
    size: u64,
    /// The child's answer to the `writer` request is still to be read: a fresh upload
    /// does not wait for it (see [`IpcDriver::writer`]).
    unanswered: bool,
}

impl IpcWriter {
    async fn finish(&mut self, action: Action) -> Result<()> {
        let p = self.path.as_str().to_owned();
        let Some(mut chan) = self.chan.take() else {
            return match action {
                // Close after commit/cancel, or a second close: nothing to do.
                Action::Close | Action::Commit => Ok(()),
                // Cancel after close: resume the upload to cancel it.
                Action::Cancel => {
                    let req = Request::Writer {
                        path: p.clone(),
                        append: true,
                    };
                    let mut chan = match self.host.call(Operation::Cancel, &p, &req).await {
                        Ok(c) => c,
                        Err(e) => return Err(e),
                    };
                    match self.host.response(&mut chan, Operation::Cancel, &p).await {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => return Ok(()),
                        Err(e) => return Err(e),
                    }
                    self.send_finish(chan, Action::Cancel).await
                }
            };
        };
        if let Some(e) = chan.pending_error() {
            chan.finish();
            return Err(self.host.err(Operation::Writer, &p, e));
        }
        let _ = &mut chan;
        self.send_finish(chan, action).await
    }

    async fn send_finish(&mut self, mut chan: Chan, action: Action) -> Result<()> {
        let p = self.path.as_str().to_owned();
        let op = match action {
            Action::Commit => Operation::Commit,
            Action::Close => Operation::Close,
            Action::Cancel => Operation::Cancel,
        };
        chan.send_json(Kind::End, &Finish { action })
            .await
            .map_err(|e| self.host.err(op, &p, e))?;
        if std::mem::take(&mut self.unanswered) {
            // An upload the child could not open fails here, with the child's error.
            self.host.response(&mut chan, op, &p).await?;
        }
        let r = self.host.response(&mut chan, op, &p).await?;
        chan.finish();
        let s: SizeReply = self.host.json(op, &p, &r)?;
        self.size = s.size;
        Ok(())
    }
}

#[async_trait]
impl FileWriter for IpcWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let p = self.path.as_str();
        let Some(chan) = self.chan.as_mut() else {
            return Err(backend(
                &self.host.name,
                Operation::Write,
                p,
                false,
                "the upload is finished".into(),
            ));
        };
        if let Some(e) = chan.pending_error() {
            chan.finish();
            self.chan = None;
            return Err(self.host.err(Operation::Write, p, e));
        }
        let n = data.len() as u64;
        chan.send_data(data)
            .await
            .map_err(|e| self.host.err(Operation::Write, p, e))?;
        self.size += n;
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(&mut self) -> Result<()> {
        self.finish(Action::Close).await
    }

    async fn cancel(&mut self) -> Result<()> {
        self.finish(Action::Cancel).await
    }

    async fn commit(&mut self) -> Result<()> {
        self.finish(Action::Commit).await
    }
}

#[async_trait]
impl StorageDriver for IpcDriver {
    fn name(&self) -> &str {
        &self.host.name
    }

    fn capabilities(&self) -> driver_api::Capabilities {
        driver_api::Capabilities::default()
            .with_shared_state(self.host.shared_state.load(Ordering::Relaxed))
    }

    async fn get_content(&self, path: &StoragePath) -> Result<Bytes> {
        let (h, p) = (&self.host, path.as_str());
        let mut chan = h
            .call(
                Operation::GetContent,
                p,
                &Request::GetContent { path: p.into() },
            )
            .await?;
        let r = h.response(&mut chan, Operation::GetContent, p).await?;
        let size = serde_json::from_slice::<SizeHint>(&r)
            .unwrap_or_default()
            .size;
        h.collect(&mut chan, Operation::GetContent, p, size_hint(size))
            .await
    }

    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()> {
        let (h, p) = (&self.host, path.as_str());
        let req = Request::PutContent {
            path: p.into(),
            size: Some(content.len() as u64),
        };
        // Request, data and end in as few writes as the pipe takes.
        let mut chan = h.open(Operation::PutContent, p, &req, false).await?;
        chan.feed_data(content)
            .await
            .map_err(|e| h.err(Operation::PutContent, p, e))?;
        chan.send(Kind::End, Bytes::new())
            .await
            .map_err(|e| h.err(Operation::PutContent, p, e))?;
        h.response(&mut chan, Operation::PutContent, p).await?;
        chan.finish();
        Ok(())
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream> {
        let h = self.host.clone();
        let p = path.as_str().to_owned();
        let mut chan = h
            .call(
                Operation::Reader,
                &p,
                &Request::Reader {
                    path: p.clone(),
                    offset,
                },
            )
            .await?;
        h.response(&mut chan, Operation::Reader, &p).await?;
        let s = futures::stream::unfold(Some((h, chan, p)), |st| async move {
            let (h, mut chan, p) = st?;
            match h.next(&mut chan, Operation::Reader, &p).await {
                Ok(f) if f.kind == Kind::Data => {
                    // Lent from the child's region while this side holds at most half
                    // of it: a reader's consumer passes chunks on and drops them.
                    let data = chan.lend(f);
                    Some((Ok(data), Some((h, chan, p))))
                }
                Ok(f) if f.kind == Kind::End => {
                    chan.finish();
                    None
                }
                Ok(f) => {
                    let e = h.err(
                        Operation::Reader,
                        &p,
                        ChanError::Protocol(format!("unexpected {:?} in a stream", f.kind)),
                    );
                    Some((Err(e), None))
                }
                Err(e) => {
                    chan.finish();
                    Some((Err(e), None))
                }
            }
        });
        Ok(s.boxed())
    }

    /// A fresh upload (`append` false) is returned as soon as it is asked for, its request
    /// still in the pipe's buffer until the first write or the end: its size is 0, and the
    /// child's answer is read with the first `write` that finds it there, or at
    /// the end (`commit`, `close`, `cancel`), which saves a round trip per upload. An
    /// upload the child cannot open then fails at that point, with the child's error, as
    /// the in-process filesystem driver's fresh uploads do. Resuming (`append`) waits for
    /// the answer, which carries the size so far.
    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>> {
        let (h, p) = (&self.host, path.as_str());
        let req = Request::Writer {
            path: p.into(),
            append,
        };
        // A fresh upload's request goes out with its first data (or its end): one write
        // and one wake-up of the child less.
        let mut chan = h.open(Operation::Writer, p, &req, append).await?;
        let size = match append {
            true => {
                let r = h.response(&mut chan, Operation::Writer, p).await?;
                h.json::<SizeReply>(Operation::Writer, p, &r)?.size
            }
            false => 0,
        };
        Ok(Box::new(IpcWriter {
            host: h.clone(),
            path: path.clone(),
            chan: Some(chan),
            size,
            unanswered: !append,
        }))
    }

    async fn stat(&self, path: &StoragePath) -> Result<FileInfo> {
        let (h, p) = (&self.host, path.as_str());
        let r = h
            .simple(Operation::Stat, p, Request::Stat { path: p.into() })
            .await?;
        let info: Info = h.json(Operation::Stat, p, &r)?;
        info.into_file_info().ok_or_else(|| {
            h.err(
                Operation::Stat,
                p,
                ChanError::Protocol("an invalid path in stat".into()),
            )
        })
    }

    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>> {
        let (h, p) = (&self.host, path.as_str());
        let mut chan = h
            .call(Operation::List, p, &Request::List { path: p.into() })
            .await?;
        h.response(&mut chan, Operation::List, p).await?;
        let body = h.collect(&mut chan, Operation::List, p, 0).await?;
        let text = std::str::from_utf8(&body).map_err(|_| {
            h.err(
                Operation::List,
                p,
                ChanError::Protocol("list is not UTF-8".into()),
            )
        })?;
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                StoragePath::new(l).map_err(|_| {
                    h.err(
                        Operation::List,
                        p,
                        ChanError::Protocol(format!("invalid path {l:?} in list")),
                    )
                })
            })
            .collect()
    }

    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()> {
        let req = Request::Rename {
            src: src.as_str().into(),
            dst: dst.as_str().into(),
        };
        self.host
            .simple(Operation::Rename, src.as_str(), req)
            .await
            .map(drop)
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        let p = path.as_str();
        self.host
            .simple(Operation::Delete, p, Request::Delete { path: p.into() })
            .await
            .map(drop)
    }

    async fn redirect_url(
        &self,
        request: &RedirectRequest,
        path: &StoragePath,
    ) -> Result<Option<String>> {
        let (h, p) = (&self.host, path.as_str());
        let req = Request::RedirectUrl {
            path: p.into(),
            method: match request.method {
                RedirectMethod::Head => "HEAD".into(),
                _ => "GET".into(),
            },
            expires_in_ms: request
                .expires_in
                .map(|d| d.as_millis().min(u64::MAX as u128) as u64),
        };
        let r = h.simple(Operation::RedirectUrl, p, req).await?;
        Ok(h.json::<UrlReply>(Operation::RedirectUrl, p, &r)?.url)
    }

    async fn uploads(&self, path: &StoragePath) -> Result<Vec<Leftover>> {
        let (h, p) = (&self.host, path.as_str());
        let r = h
            .simple(Operation::Uploads, p, Request::Uploads { path: p.into() })
            .await?;
        h.json::<UploadsReply>(Operation::Uploads, p, &r)?
            .uploads
            .into_iter()
            .map(|w| {
                let shown = format!("{w:?}");
                w.into_leftover().ok_or_else(|| {
                    h.err(
                        Operation::Uploads,
                        p,
                        ChanError::Protocol(format!("invalid upload {shown} in uploads")),
                    )
                })
            })
            .collect()
    }

    async fn purge_upload(&self, leftover: &Leftover) -> Result<()> {
        let p = leftover.path.as_str();
        let req = Request::PurgeUpload {
            upload: WireLeftover::from(leftover),
        };
        self.host
            .simple(Operation::PurgeUpload, p, req)
            .await
            .map(drop)
    }

    async fn walk(
        &self,
        path: &StoragePath,
        options: &WalkOptions,
        f: &mut WalkFn<'_>,
    ) -> Result<()> {
        let (h, p) = (&self.host, path.as_str());
        let req = Request::Walk {
            path: p.into(),
            start_after: options
                .start_after_hint
                .as_ref()
                .map(|s| s.as_str().to_owned()),
        };
        let mut chan = h.call(Operation::Walk, p, &req).await?;
        h.response(&mut chan, Operation::Walk, p).await?;
        let mut partial = BytesMut::new();
        let mut skip: Option<StoragePath> = None;
        loop {
            let fr = h.next(&mut chan, Operation::Walk, p).await?;
            match fr.kind {
                Kind::Data => partial.extend_from_slice(&fr.payload),
                Kind::End => {
                    chan.finish();
                    return Ok(());
                }
                k => {
                    return Err(h.err(
                        Operation::Walk,
                        p,
                        ChanError::Protocol(format!("unexpected {k:?} in a stream")),
                    ))
                }
            }
            while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
                let line = partial.split_to(nl + 1);
                let info: Info = h.json(Operation::Walk, p, &line[..nl])?;
                let info = info.into_file_info().ok_or_else(|| {
                    h.err(
                        Operation::Walk,
                        p,
                        ChanError::Protocol("an invalid path in walk".into()),
                    )
                })?;
                if skip.as_ref().is_some_and(|s| s.is_ancestor_of(&info.path)) {
                    continue;
                }
                match f(&info) {
                    WalkControl::Continue => {}
                    WalkControl::SkipDir if info.is_dir => skip = Some(info.path.clone()),
                    WalkControl::SkipDir => {}
                    // Dropping the channel cancels the child's walk.
                    WalkControl::Stop => return Ok(()),
                }
            }
        }
    }
}
