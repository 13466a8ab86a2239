//! The fault proxy's connections: accepting, black-holing, and following the requests and
//! responses on each connection to spoil the ones the plan picks.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::fault::{Fault, FaultKind, FaultStats};
use super::http::{body, Framing, Head, Out, Reader, Stop, MAX_HEAD};
use super::plan::{FaultPlan, Planned, RequestInfo, Spot};

/// How often a held connection checks whether its client has gone.
const HOLD_POLL: Duration = Duration::from_millis(100);
/// Requests a client may pipeline ahead of the responses.
const PIPELINE: usize = 16;

/// What the proxy's handle and its connections share: the plan, the switch, the counters.
pub(super) struct Shared {
    plan: Mutex<Arc<Installed>>,
    pub(super) black_hole: AtomicBool,
    requests: AtomicU64,
    connections: AtomicU64,
    black_holed: AtomicU64,
    open: AtomicU64,
    faults: [AtomicU64; FaultKind::ALL.len()],
}

/// A plan and the requests it has seen since it was set.
struct Installed {
    plan: FaultPlan,
    seen: AtomicU64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn new(plan: FaultPlan) -> Self {
        Self {
            plan: Mutex::new(Arc::new(Installed {
                plan,
                seen: AtomicU64::new(0),
            })),
            black_hole: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            black_holed: AtomicU64::new(0),
            open: AtomicU64::new(0),
            faults: Default::default(),
        }
    }

    pub(super) fn set_plan(&self, plan: FaultPlan) {
        let installed = Arc::new(Installed {
            plan,
            seen: AtomicU64::new(0),
        });
        *self.plan.lock().unwrap_or_else(PoisonError::into_inner) = installed;
    }

    pub(super) fn stats(&self) -> FaultStats {
        FaultStats {
            requests: self.requests.load(Relaxed),
            connections: self.connections.load(Relaxed),
            black_holed: self.black_holed.load(Relaxed),
            open: self.open.load(Relaxed),
            faults: std::array::from_fn(|i| self.faults.get(i).map_or(0, |n| n.load(Relaxed))),
        }
    }

    /// Numbers a request whose head has arrived and asks the current plan about it.
    fn plan(&self, mut info: RequestInfo) -> (Arc<RequestInfo>, Option<Planned>) {
        let installed = self
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        info.index = self.requests.fetch_add(1, Relaxed);
        info.plan_index = installed.seen.fetch_add(1, Relaxed);
        let planned = installed.plan.decide(&info);
        (Arc::new(info), planned)
    }

    /// Counts (and logs) a fault that took effect.
    fn record(&self, fault: &Fault, info: &RequestInfo) {
        if let Some(n) = self.faults.get(fault.kind().index()) {
            n.fetch_add(1, Relaxed);
        }
        tracing::debug!(
            connection = info.connection,
            request = info.index,
            method = %info.method,
            target = %info.target,
            %fault,
            "fault injected"
        );
    }
}

/// Counts an open client connection while it lives.
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Relaxed);
        Self(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// Accepts clients until aborted; aborting drops every connection's task with it.
pub(super) async fn accept(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, peer)) = accepted else {
                    // Out of descriptors, or the like: try again shortly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let open = Open::new(&shared);
                if shared.black_hole.load(Relaxed) {
                    shared.black_holed.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, "connection black-holed");
                    conns.spawn(async move {
                        let _open = open;
                        hold(&client).await;
                    });
                } else {
                    let shared = shared.clone();
                    conns.spawn(async move {
                        let _open = open;
                        serve(client, upstream, shared).await;
                    });
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Holds a connection without reading or writing until its client closes it.
async fn hold(client: &TcpStream) {
    loop {
        match client.ready(Interest::READABLE | Interest::ERROR).await {
            Ok(ready) if !ready.is_read_closed() && !ready.is_error() => {
                tokio::time::sleep(HOLD_POLL).await;
            }
            _ => return,
        }
    }
}

/// How one side of a connection ended.
enum End {
    /// The client closed between requests: finish the responses due, then close.
    Done,
    /// Close both connections.
    Close,
    /// Reset the client's connection, and the server's too if `upstream`; close the other.
    Reset { upstream: bool },
    /// Move nothing more; hold both connections until the client goes.
    Hold,
}

/// What the request side tells the response side about each request, in order.
enum Next {
    /// Pass the server's response on, spoiled by `fault` if any.
    Forward {
        head_request: bool,
        fault: Option<Planned>,
        info: Arc<RequestInfo>,
    },
    /// Answer with this status (and close after it if `close`).
    Answer {
        code: u16,
        retry_after: Option<u32>,
        close: bool,
        info: Arc<RequestInfo>,
    },
}

/// Proxies one client connection to a connection of its own to the server.
async fn serve(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(e) => {
            tracing::debug!(%upstream, error = %e, "cannot reach the server; client dropped");
            return;
        }
    };
    let conn = shared.connections.fetch_add(1, Relaxed);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, mut cw) = client.into_split();
    let (sr, mut sw) = server.into_split();
    let mut cr = Reader::new(cr);
    let mut sr = Reader::new(sr);
    let (tx, rx) = mpsc::channel(PIPELINE);
    let end = {
        let requests = requests(&mut cr, &mut sw, tx, &shared, conn);
        let responses = responses(&mut sr, &mut cw, rx, &shared);
        tokio::pin!(requests, responses);
        let mut requests_done = false;
        loop {
            tokio::select! {
                end = &mut requests, if !requests_done => match end {
                    End::Done => requests_done = true,
                    end => break end,
                },
                end = &mut responses => break end,
            }
        }
    };
    match end {
        End::Reset { upstream } => {
            // A zero linger makes the close an RST; `forget` keeps the write half from
            // sending a FIN first.
            let _ = cw.as_ref().set_zero_linger();
            cw.forget();
            if upstream {
                let _ = sw.as_ref().set_zero_linger();
                sw.forget();
            }
        }
        End::Hold => hold(cr.inner.as_ref()).await,
        End::Done | End::Close => {}
    }
}

/// The request side: reads each request from the client, asks the plan, and passes it on
/// (or drops it, for a status answer).
async fn requests(
    client: &mut Reader<OwnedReadHalf>,
    upstream: &mut OwnedWriteHalf,
    tx: mpsc::Sender<Next>,
    shared: &Shared,
    conn: u64,
) -> End {
    loop {
        let raw = match client.head().await {
            Ok(Some(raw)) => raw,
            Ok(None) => return End::Done,
            Err(_) => return End::Close,
        };
        if shared.black_hole.load(Relaxed) {
            // A server gone silent: the request is neither passed on nor answered.
            shared.black_holed.fetch_add(1, Relaxed);
            return End::Hold;
        }
        let Some(head) = Head::parse(&raw) else {
            return End::Close;
        };
        let Some((method, target)) = head
            .request_line()
            .map(|(m, t)| (m.to_owned(), t.to_owned()))
        else {
            return End::Close;
        };
        let Some(framing) = Framing::request(&head) else {
            return End::Close;
        };
        let expects_continue = head.has_token("expect", "100-continue");
        let info = RequestInfo {
            index: 0,
            plan_index: 0,
            connection: conn,
            method,
            target,
            headers: head.headers,
            body_len: framing.len(),
            head_len: raw.len() as u64,
        };
        let (info, planned) = shared.plan(info);
        let head_request = info.method == "HEAD";

        if let Some(Planned::Status { code, retry_after }) = planned {
            // Answered here: the body is dropped, unless the client waits for a go-ahead
            // before sending it; then the answer comes at once and the connection closes.
            if !expects_continue {
                let mut sink = tokio::io::sink();
                if body(client, &mut Out::new(&mut sink), framing)
                    .await
                    .is_err()
                {
                    return End::Close;
                }
            }
            let next = Next::Answer {
                code,
                retry_after,
                close: expects_continue,
                info,
            };
            if tx.send(next).await.is_err() || expects_continue {
                return End::Done;
            }
            continue;
        }

        let (on_request, on_response) = match planned {
            Some(p) if p.on_request() => (Some(p), None),
            p => (None, p),
        };
        let next = Next::Forward {
            head_request,
            fault: on_response,
            info: info.clone(),
        };
        if tx.send(next).await.is_err() {
            return End::Close;
        }
        let mut out = Out::new(&mut *upstream);
        match &on_request {
            Some(Planned::ResetRequest(spot) | Planned::StallRequest(spot)) => {
                out.cut_at(spot.cut(raw.len() as u64, framing.len()));
            }
            Some(Planned::Corrupt { at, .. }) => {
                out.corrupt_at(at.offset(framing.len()), framing.len());
            }
            _ => {}
        }
        let res = match out.framing(&raw).await {
            Ok(()) => body(client, &mut out, framing).await,
            Err(stop) => Err(stop),
        };
        let after = out.cut().unwrap_or(0);
        match (res, on_request) {
            (Err(Stop::Broken), _) => return End::Close,
            (_, Some(Planned::ResetRequest(_))) => {
                shared.record(&Fault::ResetRequest { after }, &info);
                return End::Reset { upstream: true };
            }
            (_, Some(Planned::StallRequest(_))) => {
                shared.record(&Fault::StallRequest { after }, &info);
                return End::Hold;
            }
            (Err(Stop::Cut), _) => return End::Close,
            (Ok(()), _) => {
                if let Some(offset) = out.flipped {
                    let fault = Fault::Corrupt {
                        response: false,
                        offset,
                    };
                    shared.record(&fault, &info);
                }
            }
        }
    }
}

/// The response side: for each request in order, passes the server's response on (or
/// writes the status answer), spoiled as planned.
async fn responses(
    upstream: &mut Reader<OwnedReadHalf>,
    client: &mut OwnedWriteHalf,
    mut rx: mpsc::Receiver<Next>,
    shared: &Shared,
) -> End {
    loop {
        // Between responses, notice the server closing (its idle timeout) and pass that on.
        let next = tokio::select! {
            biased;
            next = rx.recv() => next,
            read = upstream.fill() => match read {
                Ok(n) if n > 0 && upstream.buffered() <= MAX_HEAD => continue,
                _ => return End::Close,
            },
        };
        let (head_request, fault, info) = match next {
            None => return End::Done,
            Some(Next::Answer {
                code,
                retry_after,
                close,
                info,
            }) => {
                if client
                    .write_all(&answer(code, retry_after, close))
                    .await
                    .is_err()
                {
                    return End::Close;
                }
                shared.record(&Fault::Status { code, retry_after }, &info);
                if close {
                    return End::Close;
                }
                continue;
            }
            Some(Next::Forward {
                head_request,
                fault,
                info,
            }) => (head_request, fault, info),
        };
        let mut out = Out::new(&mut *client);
        if let Some(Planned::ResetResponse(Spot::Bytes(n)) | Planned::Stall(Spot::Bytes(n))) = fault
        {
            out.cut_at(n);
        }
        let res = response(
            upstream,
            &mut out,
            head_request,
            fault.as_ref(),
            shared,
            &info,
        )
        .await;
        let after = out.cut().unwrap_or(0);
        match (res, fault) {
            (Err(Stop::Broken), _) => return End::Close,
            (_, Some(Planned::ResetResponse(_))) => {
                shared.record(&Fault::ResetResponse { after }, &info);
                return End::Reset { upstream: false };
            }
            (_, Some(Planned::Stall(_))) => {
                shared.record(&Fault::Stall { after }, &info);
                return End::Hold;
            }
            (Err(Stop::Cut), _) => return End::Close,
            (Ok(_), Some(Planned::ResetAfterResponse)) => {
                shared.record(&Fault::ResetAfterResponse, &info);
                return End::Reset { upstream: false };
            }
            (Ok(framing), _) => {
                if let Some(offset) = out.flipped {
                    let fault = Fault::Corrupt {
                        response: true,
                        offset,
                    };
                    shared.record(&fault, &info);
                }
                if framing == Framing::Close {
                    return End::Close;
                }
            }
        }
    }
}

/// Passes one response from `upstream` through `out`: interim heads, then the final head
/// and its body. Returns the body's framing.
async fn response(
    upstream: &mut Reader<OwnedReadHalf>,
    out: &mut Out<'_, OwnedWriteHalf>,
    head_request: bool,
    fault: Option<&Planned>,
    shared: &Shared,
    info: &RequestInfo,
) -> Result<Framing, Stop> {
    let (raw, head, status) = loop {
        let raw = upstream.head().await?.ok_or(Stop::Broken)?;
        let head = Head::parse(&raw).ok_or(Stop::Broken)?;
        let status = head.status().ok_or(Stop::Broken)?;
        match status {
            // No protocol switches.
            101 => return Err(Stop::Broken),
            100..=199 => out.framing(&raw).await?,
            _ => break (raw, head, status),
        }
    };
    let framing = Framing::response(&head, status, head_request).ok_or(Stop::Broken)?;
    let len = framing.len();
    match fault {
        Some(&Planned::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            shared.record(&Fault::Delay(delay), info);
        }
        Some(
            &Planned::ResetResponse(spot @ Spot::Fraction { .. })
            | &Planned::Stall(spot @ Spot::Fraction { .. }),
        ) => {
            out.cut_at(out.sent() + spot.cut(raw.len() as u64, len));
        }
        Some(Planned::Corrupt { at, .. }) => out.corrupt_at(at.offset(len), len),
        _ => {}
    }
    out.framing(&raw).await?;
    body(upstream, out, framing).await?;
    Ok(framing)
}

/// The proxy's own answer: `code`, an empty body, `Retry-After` if set.
fn answer(code: u16, retry_after: Option<u32>, close: bool) -> Vec<u8> {
    let reason = match code {
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected Fault",
    };
    let mut head = format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n");
    if let Some(secs) = retry_after {
        head.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("X-Fault-Proxy: injected\r\n\r\n");
    head.into_bytes()
}
