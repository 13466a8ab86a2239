//! A TCP proxy on 127.0.0.1 that sits between a driver and its server and changes what
//! crosses the network, for tests and measurements. This is its delay mode: every byte
//! arrives `delay` after it was sent, in both directions, as over a link with that
//! one-way latency. [`Proxy::delay`] holds back nothing but the delay (up to 64 MiB in
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

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bytes read at once.
const READ: usize = 64 << 10;
/// Reads queued per direction (64 MiB of 64 KiB reads).
const QUEUE: usize = 1024;
/// The window of [`Proxy::delay`]: as much as the queue holds.
const UNBOUNDED: usize = QUEUE * READ;

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
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
        Ok(Self { addr, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
                    let data = Bytes::copy_from_slice(&buf[..n]);
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
