//! The child side: [`serve`] turns any driver into an out-of-process driver executable.
//!
//! ```no_run
//! // src/bin/registry-storage-mydriver.rs
//! use driver_inmemory as _; // or your own driver crate
//! fn main() -> std::process::ExitCode {
//!     driver_ipc::serve::main("inmemory")
//! }
//! ```
//!
//! Requests are served concurrently, each in its own task; `CANCEL` aborts the task.
//! Streams are sent in `DATA` frames of up to 512 KiB within the host's credit (through
//! the host's shared memory when it offered some: see [`crate::shm`]), so a child's memory
//! per stream stays around one window (1 MiB) whatever the object's size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use driver_api::{Driver, Parameters, RedirectRequest, StorageError, WalkControl, WalkOptions};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use crate::chan::{Chan, ChanError, Gather, Outbox, Router};
use crate::frame::{Frame, FrameCodec, FrameError, FrameWriter, Kind};
use crate::wire::{
    size_hint, Action, Finish, Hello, Info, Request, SizeHint, SizeReply, UploadsReply, UrlReply,
    WireError, WireLeftover, PROTOCOL,
};

/// Walk entries sent per batch (the child walks again after the last one sent).
const WALK_BATCH: usize = 1000;

/// Chunks of an upload taken in from the host while the driver is still writing earlier
/// ones (each at most one frame: with the window, at most about 2 MiB per upload).
const WRITE_AHEAD: usize = 2;

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Hands an upload's chunks to the driver in order; the writer comes back at the end.
async fn write_all(
    mut w: driver_api::Writer,
    mut chunks: mpsc::Receiver<Bytes>,
) -> driver_api::Result<driver_api::Writer> {
    while let Some(b) = chunks.recv().await {
        w.write(b).await?;
    }
    Ok(w)
}

/// How the host's side of an upload ended.
enum UploadEnd {
    /// Its `END`, with the action to take.
    Finish(Action),
    /// A `CANCEL`.
    Cancelled,
    /// The driver stopped taking chunks (its error is the writer task's result).
    DriverStopped,
}

/// Takes an upload's `DATA` in until its `END`, a `CANCEL`, or the driver stopping.
async fn receive_upload(chan: &mut Chan, chunks: &mpsc::Sender<Bytes>) -> Result<UploadEnd, Fail> {
    loop {
        let f = match chan.next().await {
            Ok(f) => f,
            Err(ChanError::Cancelled) => return Ok(UploadEnd::Cancelled),
            Err(e) => return Err(e.into()),
        };
        match f.kind {
            Kind::Data => {
                if chunks.send(chan.lend(f)).await.is_err() {
                    return Ok(UploadEnd::DriverStopped);
                }
            }
            Kind::End => {
                let fin: Finish = serde_json::from_slice(&f.payload)
                    .map_err(|e| Fail::Wire(WireError::backend(format!("bad END: {e}"))))?;
                return Ok(UploadEnd::Finish(fin.action));
            }
            k => return Err(protocol(k)),
        }
    }
}

/// Runs the executable for the registered driver `name`: parameters from `argv[1]` (JSON),
/// frames on stdin/stdout, logs on stderr. Returns when the host closes stdin.
///
/// The runtime is tokio's current-thread one: the pipe reader, the requests' tasks and the
/// frame writer share one thread, so an answer leaves without waking another thread (each
/// wake-up costs tens of microseconds on small VMs). Blocking work still runs on tokio's
/// blocking pool, in parallel, except brief metadata calls (a driver's
/// [`BlockingPool::run_brief`](driver_api::blocking::BlockingPool::run_brief)), which run
/// in place on this thread (see [`allow_brief_calls_in_place`](driver_api::blocking::allow_brief_calls_in_place)).
/// A driver that needs several threads for async work calls [`serve`] from a runtime of
/// its own.
pub fn main(name: &str) -> std::process::ExitCode {
    // Before any thread or descriptor of our own exists: take up the host's shared
    // memory (descriptors 3 and 4), and keep the offer from this process's children.
    let shm = crate::shm::from_env();
    std::env::remove_var(crate::shm::ENV);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("registry-storage-{name}: cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // This thread does nothing but serve: brief metadata calls (open, readdir) run on it
    // rather than costing two thread wake-ups each (see `allow_brief_calls_in_place`).
    driver_api::blocking::allow_brief_calls_in_place();
    let arg = std::env::args().nth(1).unwrap_or_else(|| "{}".into());
    let outcome = rt.block_on(async {
        let driver = match serde_json::from_str::<serde_json::Value>(&arg) {
            Ok(v) => match Parameters::from_json(name.to_owned(), v) {
                Ok(p) => driver_api::factory::create(name, p).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(StorageError::Config {
                driver: name.to_owned().into(),
                message: format!("argv[1] is not a JSON object of parameters: {e}"),
            }),
        };
        let (input, output) = stdio();
        serve_with(name, driver, shm, input, output).await
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-storage-{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves `driver` over stdin/stdout (see the module docs), taking up the host's shared
/// memory if it offered some.
pub async fn serve(driver: Driver) -> Result<(), FrameError> {
    let name = driver.name().to_owned();
    let (input, output) = stdio();
    let shm = crate::shm::from_env();
    serve_with(&name, Ok(driver), shm, input, output).await
}

type Input = Box<dyn AsyncRead + Unpin + Send>;
type Output = Box<dyn AsyncWrite + Unpin + Send>;

/// Stdin and stdout as non-blocking pipes driven by the reactor when they are pipes (as
/// the host starts us), with 1 MiB pipe buffers where the system allows; otherwise
/// tokio's stdio, which goes through blocking threads.
fn stdio() -> (Input, Output) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let input = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| {
            crate::pipes::grow(&fd);
            pipe::Receiver::from_file(std::fs::File::from(fd)).ok()
        });
    let output = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| {
            crate::pipes::grow(&fd);
            pipe::Sender::from_file(std::fs::File::from(fd)).ok()
        });
    (
        match input {
            Some(p) => Box::new(p),
            None => Box::new(tokio::io::stdin()),
        },
        match output {
            Some(p) => Box::new(p),
            None => Box::new(tokio::io::stdout()),
        },
    )
}

/// Serves over any pipe pair, without shared memory. `driver` is the driver, or why it
/// could not be created (sent in `HELLO`; then the function returns once the host hangs
/// up).
pub async fn serve_io<R, W>(
    name: &str,
    driver: driver_api::Result<Driver>,
    input: R,
    output: W,
) -> Result<(), FrameError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    serve_with(name, driver, None, input, output).await
}

async fn serve_with<R, W>(
    name: &str,
    driver: driver_api::Result<Driver>,
    shm: Option<std::io::Result<crate::shm::Shm>>,
    input: R,
    output: W,
) -> Result<(), FrameError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let shm = match shm {
        Some(Ok(s)) if driver.is_ok() => Some(Arc::new(s)),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the host's shared memory could not be mapped; using the pipes");
            None
        }
        _ => None,
    };
    let (out_tx, out_rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(write_frames(FrameWriter::new(output), out_rx, shm.clone()));
    let out = Outbox::queue(out_tx.clone()).with_shm(shm.clone());
    let releases = shm
        .clone()
        .map(|s| tokio::spawn(crate::shm::send_releases(s, out.clone())));
    let hello = Hello {
        shm: shm.as_ref().map(|_| true),
        protocol: PROTOCOL.to_string(),
        api: driver_api::CURRENT_VERSION.to_string(),
        driver: name.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        shared_state: driver.as_ref().ok().map(|d| d.capabilities().shared_state),
        error: driver.as_ref().err().map(WireError::from_storage),
    };
    let hello = serde_json::to_vec(&hello).map_err(|e| FrameError::Io(e.to_string()))?;
    let _ = out_tx.send(Frame::new(Kind::Hello, 0, hello)).await;

    let router = Arc::new(Router::default());
    let buffers = shm
        .clone()
        .map(|s| Arc::new(crate::shm::Source(s)) as Arc<dyn driver_api::buffer::BufferSource>);
    let tasks: Arc<Mutex<HashMap<u64, tokio::task::AbortHandle>>> = Default::default();
    let mut frames = FramedRead::new(input, FrameCodec);
    let result = loop {
        let f = match frames.next().await {
            None => break Ok(()),
            Some(Err(e)) => break Err(e),
            Some(Ok(f)) => f,
        };
        let f = match crate::shm::receive(shm.as_deref(), f) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(e) => break Err(e),
        };
        match (f.kind, &driver) {
            (Kind::Request, Ok(d)) => {
                let inbox = match router.register(f.id) {
                    Ok(i) => i,
                    Err(_) => break Ok(()),
                };
                let chan = Chan::new(f.id, out.clone(), inbox, router.clone(), None);
                let d = d.clone();
                let t = tasks.clone();
                let id = f.id;
                let source = buffers.clone();
                let h = tokio::spawn(async move {
                    let work = handle(d, chan, f.payload);
                    match source {
                        // What the driver reads lands in shared memory.
                        Some(s) => driver_api::buffer::with_buffer_source(s, work).await,
                        None => work.await,
                    }
                    lock(&t).remove(&id);
                });
                lock(&tasks).insert(id, h.abort_handle());
            }
            (Kind::Request, Err(e)) => {
                let err = serde_json::to_vec(&WireError::from_storage(e)).unwrap_or_default();
                let _ = out_tx.send(Frame::new(Kind::Error, f.id, err)).await;
            }
            (Kind::Cancel, _) => {
                if let Some(h) = lock(&tasks).remove(&f.id) {
                    h.abort();
                }
                router.remove(f.id);
            }
            (Kind::Data | Kind::End | Kind::Credit, _) => {
                router.route(f);
            }
            (k, _) => {
                tracing::warn!(kind = ?k, id = f.id, "unexpected frame from the host, ignored");
            }
        }
    };
    for (_, h) in lock(&tasks).drain() {
        h.abort();
    }
    router.kill("the host closed the connection".into());
    if let Some(r) = releases {
        r.abort();
        let _ = r.await;
    }
    drop(out);
    drop(out_tx);
    let _ = writer.await;
    result
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes queued frames, flushing when the queue is empty; shared memory given back
/// since the last write rides along as a `RELEASE`.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut sink: FrameWriter<W>,
    mut rx: mpsc::Receiver<Frame>,
    shm: Option<Arc<crate::shm::Shm>>,
) -> Result<(), FrameError> {
    while let Some(f) = rx.recv().await {
        sink.feed(f).await?;
        while let Ok(f) = rx.try_recv() {
            sink.feed(f).await?;
        }
        if let Some(r) = shm.as_ref().and_then(|s| s.take_released()) {
            sink.feed(r).await?;
        }
        sink.flush().await?;
    }
    Ok(())
}

/// Why a request ended without a result to send.
enum Fail {
    /// Send this error.
    Wire(WireError),
    /// The connection or the request is gone: send nothing.
    Gone,
}

impl From<StorageError> for Fail {
    fn from(e: StorageError) -> Self {
        Fail::Wire(WireError::from_storage(&e))
    }
}

impl From<ChanError> for Fail {
    fn from(e: ChanError) -> Self {
        match e {
            ChanError::Protocol(m) => Fail::Wire(WireError::backend(format!("protocol: {m}"))),
            _ => Fail::Gone,
        }
    }
}

async fn handle(d: Driver, mut chan: Chan, payload: Bytes) {
    let outcome = match serde_json::from_slice::<Request>(&payload) {
        Ok(req) => run(&d, &mut chan, req).await,
        Err(e) => Err(Fail::Wire(WireError {
            kind: "unsupported".into(),
            message: format!("request not understood: {e}"),
            ..Default::default()
        })),
    };
    if let Err(Fail::Wire(e)) = outcome {
        let _ = chan.send_json(Kind::Error, &e).await;
    }
}

async fn ok(chan: &Chan) -> Result<(), Fail> {
    Ok(chan.send(Kind::Response, &b"{}"[..]).await?)
}

async fn run(d: &Driver, chan: &mut Chan, req: Request) -> Result<(), Fail> {
    match req {
        Request::GetContent { path } => {
            let data = d.get_content(&path).await?;
            let size = Some(data.len() as u64);
            chan.send_json(Kind::Response, &SizeHint { size }).await?;
            chan.send_data(data).await?;
            chan.send(Kind::End, Bytes::new()).await?;
        }
        Request::PutContent { path, size } => {
            let mut all = Gather::new(size_hint(size), chan);
            loop {
                let f = chan.next().await?;
                match f.kind {
                    Kind::Data => all.push(f),
                    Kind::End => break,
                    k => return Err(protocol(k)),
                }
            }
            let data = all.finish_lent(chan);
            d.put_content(&path, data).await?;
            ok(chan).await?;
        }
        Request::Reader { path, offset } => {
            let mut s = d.reader(&path, offset).await?;
            ok(chan).await?;
            // Let the writer task send the answer before the first chunk is asked for
            // (which may hand off to the blocking pool first).
            tokio::task::yield_now().await;
            while let Some(chunk) = s.next().await {
                chan.send_data(chunk?).await?;
            }
            chan.send(Kind::End, Bytes::new()).await?;
        }
        Request::Writer { path, append } => {
            let w = d.writer(&path, append).await?;
            chan.send_json(Kind::Response, &SizeReply { size: w.size() })
                .await?;
            // The driver writes in a task of its own, so that frames keep being taken in
            // (and credit keeps going back) while it is in a long blocking write: the
            // host's copies overlap the driver's writes. At most WRITE_AHEAD chunks wait.
            let (tx, rx) = mpsc::channel(WRITE_AHEAD);
            let writes = tokio::spawn(write_all(w, rx));
            // Stopped with this request (a `CANCEL` aborts it), as the writer was.
            let _stop = AbortOnDrop(writes.abort_handle());
            let end = receive_upload(chan, &tx).await;
            drop(tx);
            let mut w = match writes.await {
                Ok(Ok(w)) => w,
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => {
                    return Err(Fail::Wire(WireError::backend(format!(
                        "the upload's writer stopped: {e}"
                    ))))
                }
            };
            let action = match end? {
                UploadEnd::Finish(action) => action,
                UploadEnd::Cancelled => {
                    w.cancel().await?;
                    return Err(Fail::Gone);
                }
                // The writer task ends early only with an error, returned above.
                UploadEnd::DriverStopped => {
                    return Err(Fail::Wire(WireError::backend(
                        "the upload's writer stopped",
                    )))
                }
            };
            match action {
                Action::Commit => w.commit().await?,
                Action::Close => w.close().await?,
                Action::Cancel => w.cancel().await?,
            }
            chan.send_json(Kind::Response, &SizeReply { size: w.size() })
                .await?;
        }
        Request::Stat { path } => {
            let info = d.stat(&path).await?;
            chan.send_json(Kind::Response, &Info::from(&info)).await?;
        }
        Request::List { path } => {
            let children = d.list(&path).await?;
            ok(chan).await?;
            let mut buf = String::new();
            for c in children {
                buf.push_str(c.as_str());
                buf.push('\n');
            }
            chan.send_data(Bytes::from(buf)).await?;
            chan.send(Kind::End, Bytes::new()).await?;
        }
        Request::Rename { src, dst } => {
            d.rename(&src, &dst).await?;
            ok(chan).await?;
        }
        Request::Delete { path } => {
            d.delete(&path).await?;
            ok(chan).await?;
        }
        Request::RedirectUrl {
            path,
            method,
            expires_in_ms,
        } => {
            let mut r = match method.as_str() {
                "HEAD" => RedirectRequest::head(),
                _ => RedirectRequest::get(),
            };
            if let Some(ms) = expires_in_ms {
                r = r.expires_in(std::time::Duration::from_millis(ms));
            }
            let url = d.redirect_url(&r, &path).await?;
            chan.send_json(Kind::Response, &UrlReply { url }).await?;
        }
        Request::Walk { path, start_after } => walk(d, chan, &path, start_after).await?,
        Request::Uploads { path } => {
            let uploads = d.uploads(&path).await?;
            let reply = UploadsReply {
                uploads: uploads.iter().map(WireLeftover::from).collect(),
            };
            chan.send_json(Kind::Response, &reply).await?;
        }
        Request::PurgeUpload { upload } => {
            let path = upload.path.clone();
            let Some(leftover) = upload.into_leftover() else {
                return Err(Fail::Wire(WireError {
                    path: Some(path),
                    ..WireError::backend("not an upload this driver reports (bad path or kind)")
                }));
            };
            d.purge_upload(&leftover).await?;
            ok(chan).await?;
        }
    }
    Ok(())
}

/// Walks in batches of [`WALK_BATCH`] entries, each batch a walk that starts after the
/// last entry sent: memory stays bounded whatever the tree's size.
async fn walk(d: &Driver, chan: &mut Chan, path: &str, start: Option<String>) -> Result<(), Fail> {
    let mut hint = match start {
        Some(s) => Some(d.path(&s)?),
        None => None,
    };
    let mut first = true;
    loop {
        let mut batch: Vec<Info> = Vec::new();
        let opts = match &hint {
            Some(h) => WalkOptions::start_after(h.clone()),
            None => WalkOptions::default(),
        };
        d.walk(path, &opts, |fi| {
            batch.push(Info::from(fi));
            if batch.len() >= WALK_BATCH {
                WalkControl::Stop
            } else {
                WalkControl::Continue
            }
        })
        .await?;
        if first {
            ok(chan).await?;
            first = false;
        }
        let full = batch.len() >= WALK_BATCH;
        if let Some(last) = batch.last() {
            hint = Some(d.path(&last.path)?);
        }
        let mut buf = Vec::new();
        for i in &batch {
            serde_json::to_writer(&mut buf, i)
                .map_err(|e| Fail::Wire(WireError::backend(e.to_string())))?;
            buf.push(b'\n');
        }
        chan.send_data(Bytes::from(buf)).await?;
        if !full {
            break;
        }
    }
    chan.send(Kind::End, Bytes::new()).await?;
    Ok(())
}

fn protocol(k: Kind) -> Fail {
    Fail::Wire(WireError::backend(format!(
        "protocol: unexpected {k:?} frame"
    )))
}
