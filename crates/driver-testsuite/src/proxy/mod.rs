//! A TCP proxy on 127.0.0.1 that sits between a driver and its server and changes what
//! crosses the network, for tests and measurements. It has two modes.
//!
//! # Delay mode
//!
//! Every byte arrives `delay` after it was sent, in both directions, as over a link with
//! that one-way latency. [`Proxy::delay`] holds back nothing but the delay (up to 64 MiB in
//! flight per direction); [`Proxy::link`] also bounds the bytes in flight per connection
//! and direction to a `window`, as TCP over a long path does, so one connection carries
//! at most about `window / delay` bytes a second and parallel connections add up.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! let server: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
//! let proxy = driver_testsuite::proxy::Proxy::delay(server, Duration::from_millis(20)).await?;
//! // Point the driver at proxy.addr() instead of the server.
//! # let _ = proxy.addr(); Ok(()) }
//! ```
//!
//! # Fault mode
//!
//! [`Proxy::faults`] speaks HTTP/1.1 (plain, no TLS) and spoils chosen *requests*: the
//! transient failures a driver meets on a real network and in front of a real object store,
//! which it must absorb (retry, resume, re-upload) without the caller noticing. Each fault
//! is one [`Fault`], applied to one request:
//!
//! | Fault | What the proxy does | What it models |
//! |---|---|---|
//! | [`ResetRequest`](Fault::ResetRequest) `{ after }` | passes `after` bytes of the request (head and body) to the server, then resets both connections (TCP RST) | a connection lost during an upload |
//! | [`ResetResponse`](Fault::ResetResponse) `{ after }` | passes the request, delivers `after` bytes of the response (head and body), then resets the client's connection | a download cut short: a partial body, then `ECONNRESET` |
//! | [`ResetAfterResponse`](Fault::ResetAfterResponse) | delivers the whole response, then resets the client's connection | a pooled keep-alive connection that died while idle: the *next* request sent on it fails before any answer |
//! | [`Status`](Fault::Status) `{ code, retry_after }` | answers by itself (503, 500, 429, …) with an empty body and `Retry-After` if set; the server never sees the request | throttling and a server's transient errors |
//! | [`Delay`](Fault::Delay) | holds the response head back | a slow server (a read timeout that is too short shows up here) |
//! | [`Stall`](Fault::Stall) `{ after }` | delivers `after` bytes of the response, then moves nothing either way, holding both connections open | a hung server or a dead path without RST: only a timeout ends it |
//! | [`StallRequest`](Fault::StallRequest) `{ after }` | passes `after` bytes of the request, then stops reading from the client | an upload that stops moving |
//! | [`Corrupt`](Fault::Corrupt) `{ response, offset }` | flips one bit of the request or response body at `offset` (the last byte if the body is shorter; nothing if it is empty) | damage that only a checksum catches |
//!
//! Besides, [`Proxy::set_black_hole`] makes the proxy a server gone silent: new
//! connections are accepted and then never read or answered (a listen queue that still
//! takes connections), and a request arriving on a connection already open is neither
//! passed on nor answered; connect succeeds, the request times out.
//!
//! ## Per-request framing
//!
//! Clients keep connections alive and send many requests on one, so faults are chosen per
//! request, not per connection. Each client connection gets its own connection to the
//! server, and the proxy follows the HTTP/1.1 messages on it:
//!
//! - a request is its head (up to the empty line) and a body framed by
//!   `Transfer-Encoding: chunked` or `Content-Length` (no body without either);
//! - a response is any interim `1xx` heads (`100 Continue` for `Expect: 100-continue`),
//!   passed straight on, then the final head and a body: none for `HEAD` requests and
//!   `204`/`304`; else chunked, `Content-Length`, or everything until the server closes;
//! - bodies stream through as they arrive (64 KiB reads), never buffered whole;
//! - requests and responses flow concurrently (a server may answer early, a client may
//!   pipeline); the response side takes the requests' faults in order;
//! - when the server closes, the client's connection is closed; a message that cannot be
//!   parsed closes both (no panic, no guessing).
//!
//! Byte counts (`after`) cover the whole message, head and body (for responses, interim
//! heads too); `offset` counts body bytes only (chunked bodies: data bytes, not framing).
//!
//! ## Plans
//!
//! A [`FaultPlan`] decides, as each request head arrives, whether and how it is spoiled:
//! [`FaultPlan::none`], [`FaultPlan::once`], a [`scripted`](FaultPlan::scripted) closure that
//! sees a [`RequestInfo`] (method, target, headers, body length, indexes), or
//! [`seeded`](FaultPlan::seeded): a rate and weighted [`FaultKind`]s, drawn from a small PRNG
//! keyed by the seed and the request's number under the plan, so the same seed and the same
//! traffic give the same faults. Offsets of seeded faults fall inside the body where its
//! length is known (so a reset really cuts it), otherwise within a cap.
//! [`Proxy::set_plan`] swaps plans at any time, e.g. faults off for a test's setup and for
//! checking what it left behind. [`Proxy::stats`] counts requests and the faults that took
//! effect, per kind; each fault is also logged through `tracing` at debug level
//! (`RUST_LOG=driver_testsuite::proxy=debug`).
//!
//! ```no_run
//! use driver_testsuite::proxy::{FaultKind, FaultPlan, Proxy};
//! # fn driver_at(_endpoint: &str) -> driver_api::Driver { unimplemented!() }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator: std::net::SocketAddr = "127.0.0.1:9000".parse()?;
//! let proxy = Proxy::faults(emulator, FaultPlan::none()).await?;
//! // The driver under test talks to the proxy (e.g. its `endpoint` parameter).
//! let driver = driver_at(&proxy.url());
//!
//! // One request in five spoiled, reproducibly: the default kinds plus stalls (the
//! // driver's timeouts must end them), 429 besides the default 5xx answers.
//! proxy.set_plan(
//!     FaultPlan::seeded(7, 0.2)
//!         .weight(FaultKind::Stall, 1)
//!         .statuses(&[500, 503, 429]),
//! );
//! let blob = vec![7u8; 40 << 20];
//! driver.put_content("/faulty/blob", blob.clone()).await?;
//! assert_eq!(driver.get_content("/faulty/blob").await?, blob);
//!
//! // Faults off; check the backend directly, without the proxy.
//! proxy.set_plan(FaultPlan::none());
//! let direct = driver_at(&format!("http://{emulator}"));
//! assert_eq!(direct.get_content("/faulty/blob").await?, blob);
//! println!("{}", proxy.stats());
//! # Ok(()) }
//! ```
//!
//! A terminal version: `cargo run -p driver-testsuite --example fault_proxy -- <host:port>`.

// The proxy serves whatever arrives on a socket: no panics on its traffic.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod conn;
mod fault;
mod http;
mod plan;
#[cfg(test)]
mod tests;

pub use fault::{Fault, FaultKind, FaultStats, UnknownFaultKind};
pub use plan::{FaultPlan, RequestInfo};

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use conn::Shared;

/// Bytes read at once.
const READ: usize = 64 << 10;
/// Reads queued per direction (64 MiB of 64 KiB reads).
const QUEUE: usize = 1024;
/// The window of [`Proxy::delay`]: as much as the queue holds.
const UNBOUNDED: usize = QUEUE * READ;

/// A running proxy; it stops when dropped (in fault mode, closing every connection).
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Proxies `127.0.0.1:<free port>` to `upstream`, delaying every byte by `delay` each way.
    pub async fn delay(upstream: SocketAddr, delay: Duration) -> io::Result<Self> {
        Self::link(upstream, delay, UNBOUNDED).await
    }

    /// As [`delay`](Self::delay), with at most `window` bytes in flight per connection and
    /// direction.
    pub async fn link(upstream: SocketAddr, delay: Duration, window: usize) -> io::Result<Self> {
        let window = window.clamp(READ, UNBOUNDED);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, delay, window), pipe(sr, cw, delay, window));
                });
            }
        });
        let shared = Arc::new(Shared::new(FaultPlan::none()));
        Ok(Self { addr, task, shared })
    }

    /// Proxies `127.0.0.1:<free port>` to the HTTP/1.1 server at `upstream`, spoiling the
    /// requests `plan` picks (see the [module docs](self)).
    pub async fn faults(upstream: SocketAddr, plan: FaultPlan) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(plan));
        let task = tokio::spawn(conn::accept(listener, upstream, shared.clone()));
        Ok(Self { addr, task, shared })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the fault plan; requests whose head arrives from now on follow `plan`.
    /// Fault mode only (a delay proxy ignores it).
    pub fn set_plan(&self, plan: FaultPlan) {
        self.shared.set_plan(plan);
    }

    /// Turns the black hole on or off: while on, new connections are accepted and then
    /// neither read nor answered, and requests that arrive on connections already open are
    /// swallowed; both are held open until the client closes or the proxy is dropped. A
    /// request already passed on carries on. Fault mode only.
    pub fn set_black_hole(&self, on: bool) {
        self.shared.black_hole.store(on, Ordering::Relaxed);
    }

    /// The counters so far: requests seen, connections, faults that took effect per kind.
    /// Fault mode only (a delay proxy's are all zero).
    pub fn stats(&self) -> FaultStats {
        self.shared.stats()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each read delivered `delay` after it was read; an end of
/// stream is passed on (after the bytes before it).
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration, window: usize) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes, OwnedSemaphorePermit)>(QUEUE);
    let in_flight = Arc::new(Semaphore::new(window));
    let reader = async move {
        let mut buf = vec![0u8; READ];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = Instant::now() + delay;
                    // Bytes in flight are released when delivered.
                    let Ok(permit) = in_flight.clone().acquire_many_owned(n as u32).await else {
                        break;
                    };
                    let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    if tx.send((due, data, permit)).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, data, permit)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&data).await.is_err() {
                return;
            }
            drop(permit);
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
