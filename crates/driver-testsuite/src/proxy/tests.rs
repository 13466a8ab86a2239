//! The fault proxy against a tiny HTTP/1.1 server (raw TCP, fixed answers), with reqwest
//! and raw sockets as clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::http::{body, Framing, Head, Out, Reader};
use super::plan::Planned;
use super::{Fault, FaultKind, FaultPlan, FaultStats, Proxy, RequestInfo};

/// `/large`'s length.
const LARGE: usize = 1 << 20;
/// `/chunked`'s chunks.
const CHUNKS: [&str; 3] = ["hello ", "chunked ", "world"];
/// `/close`'s body, ended by the server closing.
const CLOSE_BODY: &[u8] = b"read until the server closes";

fn large() -> Vec<u8> {
    (0..LARGE).map(|i| (i % 251) as u8).collect()
}

/// A request the test server read whole (its body as framed on the wire).
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// The test server: `/small`, `/chunked`, `/large`, `/close`, `/echo` (the request body
/// back), `/garbage` (a malformed response); `HEAD` gets heads only.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicU64::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Relaxed);
                conns.spawn(answer(stream, s.clone()));
            }
        });
        Self {
            addr,
            seen,
            connections,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }
}

/// Serves one connection of the test server.
async fn answer(stream: TcpStream, seen: Arc<Mutex<Vec<Seen>>>) {
    let (r, mut w) = stream.into_split();
    let mut r = Reader::new(r);
    while let Ok(Some(raw)) = r.head().await {
        let head = Head::parse(&raw).unwrap();
        let (method, target) = head.request_line().unwrap();
        let (method, target) = (method.to_owned(), target.to_owned());
        let framing = Framing::request(&head).unwrap();
        if head.has_token("expect", "100-continue") {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
        }
        let mut data = Vec::new();
        if body(&mut r, &mut Out::new(&mut data), framing)
            .await
            .is_err()
        {
            return;
        }
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            target: target.clone(),
            body: data.clone(),
        });
        let head_only = method == "HEAD";
        let send = |head: String, body: Vec<u8>| {
            let mut msg = head.into_bytes();
            if !head_only {
                msg.extend_from_slice(&body);
            }
            msg
        };
        let msg = match target.as_str() {
            "/small" => send(
                "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n".into(),
                b"hello world".to_vec(),
            ),
            "/large" => send(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {LARGE}\r\n\r\n"),
                large(),
            ),
            "/echo" => send(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", data.len()),
                data,
            ),
            "/chunked" => {
                let mut body = Vec::new();
                for chunk in CHUNKS {
                    body.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
                }
                body.extend_from_slice(b"0\r\n\r\n");
                send(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                    body,
                )
            }
            "/close" => {
                let msg = send(
                    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(),
                    CLOSE_BODY.to_vec(),
                );
                let _ = w.write_all(&msg).await;
                return;
            }
            "/garbage" => b"HTTP/1.1 two hundred\r\n\r\n".to_vec(),
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        // In pieces, so the proxy sees more than one read.
        for piece in msg.chunks(100_000) {
            if w.write_all(piece).await.is_err() {
                return;
            }
        }
    }
}

async fn fixture(plan: FaultPlan) -> (Upstream, Proxy) {
    let upstream = Upstream::start().await;
    let proxy = Proxy::faults(upstream.addr, plan).await.unwrap();
    (upstream, proxy)
}

fn builder() -> reqwest::ClientBuilder {
    // Where the workspace builds reqwest with rustls, it needs a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

fn client() -> reqwest::Client {
    builder().build().unwrap()
}

async fn get(c: &reqwest::Client, proxy: &Proxy, path: &str) -> reqwest::Result<Vec<u8>> {
    let resp = c.get(format!("{}{path}", proxy.url())).send().await?;
    Ok(resp.error_for_status()?.bytes().await?.to_vec())
}

/// Reads until the peer closes the connection: the bytes, and the error that ended it
/// (`None` for a clean close).
async fn drain(s: &mut TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("the proxy should have closed the connection");
        match read {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e.kind())),
        }
    }
}

/// Reads until `got` ends with `end`.
async fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    while !got.ends_with(end) {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("timed out")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Waits (up to 2 s) for `check` to hold on the proxy's counters.
async fn eventually(proxy: &Proxy, check: impl Fn(&FaultStats) -> bool) {
    let start = Instant::now();
    while !check(&proxy.stats()) {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{}",
            proxy.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn passes_every_framing_through_unchanged() {
    let (upstream, proxy) = fixture(FaultPlan::none()).await;
    let c = client();
    assert_eq!(get(&c, &proxy, "/small").await.unwrap(), b"hello world");
    assert_eq!(
        get(&c, &proxy, "/chunked").await.unwrap(),
        CHUNKS.concat().as_bytes()
    );
    assert_eq!(get(&c, &proxy, "/large").await.unwrap(), large());
    assert_eq!(get(&c, &proxy, "/close").await.unwrap(), CLOSE_BODY);
    let head = c
        .head(format!("{}/large", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["content-length"], LARGE.to_string().as_str());
    assert!(head.bytes().await.unwrap().is_empty());
    let up: Vec<u8> = large().into_iter().rev().take(300_000).collect();
    let echo = c
        .put(format!("{}/echo", proxy.url()))
        .body(up.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(echo.bytes().await.unwrap(), up);
    let stats = proxy.stats();
    assert_eq!((stats.requests, stats.total()), (6, 0), "{stats}");
    assert_eq!(upstream.seen().len(), 6);
}

#[tokio::test]
async fn passes_interim_answers_and_pipelined_requests() {
    let (upstream, proxy) = fixture(FaultPlan::none()).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(
        read_until(&mut s, b"\r\n\r\n").await,
        b"HTTP/1.1 100 Continue\r\n\r\n"
    );
    s.write_all(b"hello").await.unwrap();
    assert_eq!(
        read_until(&mut s, b"hello").await,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    );
    // Three requests in one write; the HEAD's answer has no body, the chunked one does.
    s.write_all(
        b"HEAD /large HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let got = read_until(&mut s, b"0\r\n\r\n").await;
    let got = String::from_utf8(got).unwrap();
    let want_echo = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    assert!(got.starts_with(&format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {LARGE}\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    )));
    assert!(got.ends_with(&format!("0\r\n\r\n{want_echo}")), "{got}");
    assert_eq!(upstream.seen().len(), 4);
    assert_eq!(proxy.stats().connections, 1);
}

#[tokio::test]
async fn faults_one_request_of_three_on_a_kept_alive_connection() {
    let plan = FaultPlan::scripted(|r| {
        (r.index() == 1).then_some(Fault::Status {
            code: 503,
            retry_after: None,
        })
    });
    let (upstream, proxy) = fixture(plan).await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = c
            .get(format!("{}/small", proxy.url()))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        resp.bytes().await.unwrap();
    }
    assert_eq!(statuses, [200, 503, 200]);
    let seen = upstream.seen();
    assert!(seen
        .iter()
        .all(|s| s.method == "GET" && s.target == "/small"));
    assert_eq!(seen.len(), 2);
    assert_eq!(upstream.connections(), 1);
    let stats = proxy.stats();
    assert_eq!(stats.connections, 1, "{stats}");
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.count(FaultKind::Status), 1);
}

#[tokio::test]
async fn status_answers_without_the_server() {
    let fault = Fault::Status {
        code: 503,
        retry_after: Some(7),
    };
    let (upstream, proxy) = fixture(FaultPlan::once(fault)).await;
    let c = client();
    let put = || {
        c.put(format!("{}/echo", proxy.url()))
            .body(vec![5u8; 100_000])
            .send()
    };
    let resp = put().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert!(resp.bytes().await.unwrap().is_empty());
    assert!(upstream.seen().is_empty());
    // The body was read and dropped: the connection carries the next request.
    let resp = put().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 100_000);
    assert_eq!(upstream.seen().len(), 1);
    assert_eq!(proxy.stats().connections, 1);
    assert_eq!(proxy.stats().count(FaultKind::Status), 1);
}

#[tokio::test]
async fn status_answers_a_request_waiting_to_continue_and_closes() {
    let fault = Fault::Status {
        code: 429,
        retry_after: None,
    };
    let (upstream, proxy) = fixture(FaultPlan::once(fault)).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let (got, _) = drain(&mut s).await;
    let got = String::from_utf8(got).unwrap();
    assert!(
        got.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{got}"
    );
    assert!(got.contains("Connection: close\r\n"), "{got}");
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn reset_response_cuts_the_body_short() {
    let fault = Fault::ResetResponse { after: 1000 };
    let (_upstream, proxy) = fixture(FaultPlan::once(fault.clone())).await;
    let mut resp = client()
        .get(format!("{}/large", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut got = Vec::new();
    let err = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => panic!("the whole body arrived"),
            Err(e) => break e,
        }
    };
    assert!(!got.is_empty() && got.len() < 1000, "{} bytes", got.len());
    assert_eq!(got, large()[..got.len()]);
    drop(err);

    // On a raw socket: exactly 1000 bytes, then a reset (not a clean close).
    proxy.set_plan(FaultPlan::once(fault));
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, err) = drain(&mut s).await;
    assert_eq!(got.len(), 1000);
    assert_eq!(err, Some(ErrorKind::ConnectionReset));
    assert_eq!(proxy.stats().count(FaultKind::ResetResponse), 2);
}

#[tokio::test]
async fn reset_after_response_breaks_the_kept_alive_connection() {
    let (upstream, proxy) = fixture(FaultPlan::once(Fault::ResetAfterResponse)).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until(&mut s, b"hello world").await;
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    // Then the connection is reset, not closed: the next request on it would fail.
    let (more, err) = drain(&mut s).await;
    assert!(more.is_empty());
    assert_eq!(err, Some(ErrorKind::ConnectionReset));
    let next = s.write_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(next.is_err());
    assert_eq!(upstream.seen().len(), 1);
    // reqwest: the first request succeeds whole.
    proxy.set_plan(FaultPlan::once(Fault::ResetAfterResponse));
    let c = client();
    assert_eq!(get(&c, &proxy, "/small").await.unwrap(), b"hello world");
    assert_eq!(proxy.stats().count(FaultKind::ResetAfterResponse), 2);
}

#[tokio::test]
async fn reset_request_cuts_the_upload() {
    let (upstream, proxy) = fixture(FaultPlan::once(Fault::ResetRequest { after: 500 })).await;
    let res = client()
        .put(format!("{}/echo", proxy.url()))
        .body(vec![1u8; 1 << 20])
        .send()
        .await;
    assert!(res.is_err(), "{res:?}");
    assert!(upstream.seen().is_empty());
    // On a raw socket: reset, nothing answered.
    proxy.set_plan(FaultPlan::once(Fault::ResetRequest { after: 10 }));
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .unwrap();
    let (got, err) = drain(&mut s).await;
    assert!(got.is_empty());
    assert_eq!(err, Some(ErrorKind::ConnectionReset));
    assert!(upstream.seen().is_empty());
    assert_eq!(proxy.stats().count(FaultKind::ResetRequest), 2);
}

#[tokio::test]
async fn corrupt_flips_exactly_one_byte() {
    let plan = FaultPlan::scripted(|r: &RequestInfo| {
        let (response, offset) = match (r.method(), r.path()) {
            ("GET", "/large") => (true, 12_345),
            // Past the end of a chunked body, and of one read to the close: the last byte.
            ("GET", "/chunked") => (true, 10_000),
            ("GET", "/close") => (true, 10_000),
            ("PUT", "/echo") => (false, 777),
            // No body to corrupt: nothing happens, nothing is counted.
            ("GET", "/small") => (false, 0),
            _ => return None,
        };
        Some(Fault::Corrupt { response, offset })
    });
    let (upstream, proxy) = fixture(plan).await;
    let c = client();
    let diff = |a: &[u8], b: &[u8]| -> Vec<usize> {
        assert_eq!(a.len(), b.len());
        (0..a.len()).filter(|&i| a[i] != b[i]).collect()
    };
    let got = get(&c, &proxy, "/large").await.unwrap();
    assert_eq!(diff(&got, &large()), [12_345]);
    let chunked = CHUNKS.concat();
    let got = get(&c, &proxy, "/chunked").await.unwrap();
    assert_eq!(diff(&got, chunked.as_bytes()), [chunked.len() - 1]);
    let got = get(&c, &proxy, "/close").await.unwrap();
    assert_eq!(diff(&got, CLOSE_BODY), [CLOSE_BODY.len() - 1]);
    assert_eq!(get(&c, &proxy, "/small").await.unwrap(), b"hello world");
    let sent = vec![9u8; 5000];
    let resp = c
        .put(format!("{}/echo", proxy.url()))
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    let echoed = resp.bytes().await.unwrap();
    assert_eq!(diff(&echoed, &sent), [777]);
    let seen = upstream.seen();
    assert_eq!(diff(&seen.last().unwrap().body, &sent), [777]);
    let stats = proxy.stats();
    assert_eq!(stats.count(FaultKind::CorruptResponse), 3, "{stats}");
    assert_eq!(stats.count(FaultKind::CorruptRequest), 1, "{stats}");
}

#[tokio::test]
async fn delay_holds_the_response_head_back() {
    let delay = Duration::from_millis(300);
    let (_upstream, proxy) = fixture(FaultPlan::once(Fault::Delay(delay))).await;
    let c = client();
    let start = Instant::now();
    assert_eq!(get(&c, &proxy, "/small").await.unwrap(), b"hello world");
    assert!(start.elapsed() >= delay);
    assert_eq!(proxy.stats().count(FaultKind::Delay), 1);
}

#[tokio::test]
async fn stall_leaves_the_client_to_time_out() {
    let (_upstream, proxy) = fixture(FaultPlan::once(Fault::Stall { after: 2000 })).await;
    let c = builder()
        .read_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let res = get(&c, &proxy, "/large").await;
    assert!(res.as_ref().is_err_and(|e| e.is_timeout()), "{res:?}");
    assert_eq!(proxy.stats().count(FaultKind::Stall), 1);
    assert_eq!(proxy.stats().open, 1);
    // Held until the client goes.
    drop(c);
    eventually(&proxy, |s| s.open == 0).await;
}

#[tokio::test]
async fn stall_request_leaves_the_upload_hanging() {
    let (upstream, proxy) = fixture(FaultPlan::once(Fault::StallRequest { after: 1000 })).await;
    let c = builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let res = c
        .put(format!("{}/echo", proxy.url()))
        .body(vec![3u8; 4 << 20])
        .send()
        .await;
    assert!(res.as_ref().is_err_and(|e| e.is_timeout()), "{res:?}");
    assert!(upstream.seen().is_empty());
    assert_eq!(proxy.stats().count(FaultKind::StallRequest), 1);
    // The proxy is still there for others.
    assert_eq!(get(&c, &proxy, "/small").await.unwrap(), b"hello world");
}

#[tokio::test]
async fn black_hole_accepts_and_never_answers() {
    let (_upstream, proxy) = fixture(FaultPlan::none()).await;
    let pooled = client();
    assert_eq!(
        get(&pooled, &proxy, "/small").await.unwrap(),
        b"hello world"
    );
    proxy.set_black_hole(true);
    let _held = TcpStream::connect(proxy.addr()).await.unwrap();
    let fresh = builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let res = get(&fresh, &proxy, "/small").await;
    assert!(res.as_ref().is_err_and(|e| e.is_timeout()), "{res:?}");
    // A request on the connection opened before is swallowed too.
    let res =
        tokio::time::timeout(Duration::from_millis(300), get(&pooled, &proxy, "/small")).await;
    assert!(res.is_err(), "{res:?}");
    proxy.set_black_hole(false);
    let fresh = client();
    assert_eq!(get(&fresh, &proxy, "/small").await.unwrap(), b"hello world");
    let stats = proxy.stats();
    assert_eq!(stats.black_holed, 3, "{stats}");
    assert_eq!(stats.requests, 2, "{stats}");
}

fn request(plan_index: u64, method: &str, body_len: Option<u64>) -> RequestInfo {
    RequestInfo {
        index: plan_index,
        plan_index,
        connection: 0,
        method: method.into(),
        target: "/x".into(),
        headers: Vec::new(),
        body_len,
        head_len: 100,
    }
}

#[test]
fn seeded_plans_draw_the_same_faults_for_the_same_seed() {
    let draws = |plan: &FaultPlan| -> Vec<Option<Planned>> {
        (0..2000)
            .map(|n| plan.decide(&request(n, "GET", Some(0))))
            .collect()
    };
    let plan = FaultPlan::seeded(42, 0.2);
    let a = draws(&plan);
    assert_eq!(a, draws(&FaultPlan::seeded(42, 0.2)));
    assert_ne!(a, draws(&FaultPlan::seeded(43, 0.2)));
    let faulted = a.iter().flatten().count();
    assert!((300..500).contains(&faulted), "{faulted} of 2000");
    // Every default kind is drawn, no other.
    let kinds = |draws: &[Option<Planned>]| {
        let mut kinds: Vec<&str> = draws
            .iter()
            .flatten()
            .map(|p| match p {
                Planned::ResetRequest(_) => "reset-request",
                Planned::ResetResponse(_) => "reset-response",
                Planned::ResetAfterResponse => "reset-after-response",
                Planned::Status { .. } => "status",
                Planned::Delay(_) => "delay",
                Planned::Stall(_) => "stall",
                Planned::StallRequest(_) => "stall-request",
                Planned::Corrupt { .. } => "corrupt",
            })
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    };
    assert_eq!(
        kinds(&a),
        [
            "delay",
            "reset-after-response",
            "reset-request",
            "reset-response",
            "status"
        ]
    );
    // Request corruption is not drawn for requests without a body.
    let corrupt = FaultPlan::seeded(1, 1.0).only(&[FaultKind::CorruptRequest]);
    assert_eq!(corrupt.decide(&request(0, "GET", Some(0))), None);
    assert!(corrupt.decide(&request(0, "PUT", None)).is_some());
    assert_eq!(
        FaultPlan::seeded(1, 0.0).decide(&request(0, "GET", None)),
        None
    );
    assert_eq!(FaultPlan::none().decide(&request(0, "GET", None)), None);
}

#[tokio::test]
async fn seeded_plans_repeat_over_the_network() {
    let upstream = Upstream::start().await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let plan = FaultPlan::seeded(9, 0.4)
            .only(&[FaultKind::Status])
            .statuses(&[500, 503]);
        let proxy = Proxy::faults(upstream.addr, plan).await.unwrap();
        let c = client();
        let mut statuses = Vec::new();
        for _ in 0..30 {
            let resp = c
                .get(format!("{}/small", proxy.url()))
                .send()
                .await
                .unwrap();
            statuses.push(resp.status().as_u16());
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    for code in [200, 500, 503] {
        assert!(runs[0].contains(&code), "{:?}", runs[0]);
    }
}

#[tokio::test]
async fn malformed_traffic_closes_the_connections() {
    let (_upstream, proxy) = fixture(FaultPlan::none()).await;
    for garbage in [
        &b"NONSENSE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\n folded: header\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(garbage).await.unwrap();
        let (got, _) = drain(&mut s).await;
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
    // A malformed response: the client's connection is closed.
    let c = client();
    assert!(get(&c, &proxy, "/garbage").await.is_err());
    // And the proxy serves on.
    assert_eq!(get(&c, &proxy, "/small").await.unwrap(), b"hello world");
}

#[test]
fn fault_kinds_read_and_show() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Proxy>();
    shareable::<FaultPlan>();
    for kind in FaultKind::ALL {
        assert_eq!(kind.name().parse::<FaultKind>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.name());
    }
    assert!("nonsense".parse::<FaultKind>().is_err());
    assert_eq!(
        Fault::Corrupt {
            response: true,
            offset: 3
        }
        .kind(),
        FaultKind::CorruptResponse
    );
    let mut stats = FaultStats {
        requests: 10,
        ..FaultStats::default()
    };
    stats.faults[FaultKind::Status.index()] = 2;
    let shown = stats.to_string();
    assert!(
        shown.starts_with("requests 10  faults 2 (20.0%)"),
        "{shown}"
    );
    for kind in FaultKind::ALL {
        assert!(shown.contains(kind.name()), "{shown}");
    }
    assert_eq!(
        Fault::Status {
            code: 503,
            retry_after: Some(1)
        }
        .to_string(),
        "status 503 (retry-after 1)"
    );
}
