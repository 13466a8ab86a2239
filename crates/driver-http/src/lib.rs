//! HTTP plumbing shared by the REST storage drivers (Azure Blob, GCS, Swift, OSS).
//!
//! Those drivers speak their service's REST API over `reqwest`; what is the same for all
//! of them lives here, written once:
//!
//! - [`HttpConfig::client`]: one `reqwest::Client` per driver, rustls on the `ring`
//!   provider (no OpenSSL, no aws-lc build), explicit connect and read timeouts, an
//!   optional User-Agent, and certificate checks that can only be turned off on purpose.
//! - [`Retry`] (the object-store core's policy, from the network parameters) with
//!   [`SendRetry::send`]: retries with capped exponential backoff, full jitter and a time
//!   budget, for requests the caller declares idempotent; `Retry-After` is honoured; each
//!   attempt is rebuilt (and re-signed) by the caller's closure, so signatures never go
//!   stale.
//! - [`Call`]: a request described once and rebuilt (and re-signed) for every attempt.
//! - [`RestClient`]: `send` and `expect` written once; a driver's client says how one
//!   attempt is built (signed, authorised) and how an error answer reads.
//! - [`transport_error`], [`status_error`], [`body_stream`]: failures become
//!   [`StorageError`]s that name the driver, the operation and the path, and say whether
//!   trying again may help.
//!
//! ```no_run
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_api::Operation;
//! use driver_http::{HttpConfig, Retry, SendRetry};
//! let path = driver_api::StoragePath::new("/a").unwrap();
//! let cfg = HttpConfig::default();
//! let client = cfg.client("demo")?;
//! let retry = Retry::from(&cfg);
//! let resp = retry
//!     .send(|| client.get("http://127.0.0.1:1/a").send())
//!     .await
//!     .map_err(|e| driver_http::transport_error("demo", Operation::GetContent, &path, e))?;
//! if !resp.status().is_success() {
//!     let status = resp.status();
//!     let body = driver_http::error_body(resp).await;
//!     return Err(driver_http::status_error("demo", Operation::GetContent, &path, status, "", &body));
//! }
//! # Ok(()) }
//! ```

mod call;
mod rest;

pub use driver_objectstore::network::Retry;

pub use call::Call;
pub use rest::{Answer, RestClient};

use driver_api::Operation;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use driver_api::{ByteStream, StorageError, StoragePath};
use futures::{StreamExt, TryStreamExt};
use reqwest::{Response, StatusCode};

/// How a driver's HTTP client behaves; drivers fill it from their parameters.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response (a stalled server fails instead of
    /// hanging); a large transfer that keeps moving is never cut off.
    pub read_timeout: Duration,
    /// Retries after the first attempt (0: none).
    pub max_retries: u32,
    /// Backoff before the first retry; it doubles on each further retry.
    pub retry_delay: Duration,
    /// Cap of the backoff.
    pub max_retry_delay: Duration,
    /// Time after the first attempt of a request past which no new attempt starts: with
    /// `read_timeout`, it bounds how long an unanswered request can take, whatever
    /// `max_retries` allows.
    pub retry_budget: Duration,
    /// Accept any TLS certificate (only for test servers; a warning is logged).
    pub skip_verify: bool,
    /// Sent as the `User-Agent` header.
    pub user_agent: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            max_retries: 5,
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(5),
            retry_budget: Duration::from_secs(60),
            skip_verify: false,
            user_agent: None,
        }
    }
}

impl From<&driver_objectstore::Network> for HttpConfig {
    /// The timeouts and retries of the shared network parameters.
    fn from(n: &driver_objectstore::Network) -> Self {
        Self {
            connect_timeout: n.connect_timeout,
            read_timeout: n.idle_timeout,
            max_retries: n.max_retries,
            retry_delay: n.retry_delay,
            max_retry_delay: n.max_retry_delay,
            retry_budget: n.retry_budget,
            ..Self::default()
        }
    }
}

impl HttpConfig {
    /// Builds the client. `driver` names the driver in the error, should building fail.
    pub fn client(&self, driver: &'static str) -> driver_api::Result<reqwest::Client> {
        // reqwest is built without a bundled provider; `ring` is installed unless the
        // application installed its own first (then that one is used).
        let _ = rustls::crypto::ring::default_provider().install_default();
        if self.skip_verify {
            tracing::warn!(driver, "TLS certificate verification is off (skipverify)");
        }
        let ua = self
            .user_agent
            .clone()
            .unwrap_or_else(|| concat!("storage-drivers/", env!("CARGO_PKG_VERSION")).into());
        let builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            // A request given up on (a timeout, a dropped body) can leave its connection
            // behind in the client's background task, blocked on a peer that no longer
            // reads or answers. Keepalive probes close it once the path is dead.
            .tcp_keepalive(self.read_timeout)
            .tcp_keepalive_interval(self.read_timeout / 4)
            .tcp_keepalive_retries(4u32);
        // Data sent and never acknowledged (a peer that stopped reading an upload keeps
        // answering window probes) closes the connection after the idle timeout as well.
        #[cfg(target_os = "linux")]
        let builder = builder.tcp_user_timeout(self.read_timeout);
        builder
            .tls_danger_accept_invalid_certs(self.skip_verify)
            .user_agent(ua)
            .build()
            .map_err(|e| StorageError::Config {
                driver: driver.into(),
                message: format!("cannot build the HTTP client: {e}"),
            })
    }
}

impl From<&HttpConfig> for Retry {
    fn from(c: &HttpConfig) -> Self {
        Retry::new(
            c.max_retries,
            c.retry_delay,
            c.max_retry_delay,
            c.retry_budget,
        )
    }
}

/// Whether a response status is worth another attempt (timeouts, throttling, 5xx that
/// are not "not implemented").
pub fn retryable_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a transport failure is worth another attempt: timeouts, connections that
/// failed or broke, and bodies cut on the way (which reqwest reports as a decoding error
/// wrapping the broken read).
pub fn retryable_transport(e: &reqwest::Error) -> bool {
    e.is_timeout()
        || e.is_connect()
        || e.is_request()
        || e.is_body()
        || (e.is_decode() && (io_source(e).is_some() || body_source(e)))
}

/// The I/O error at the bottom of `e`'s causes, if any.
fn io_source<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        src = s.source();
    }
    None
}

/// Whether a cause of `e` is a body that failed (not a body that was malformed).
fn body_source(e: &reqwest::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if s.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_body)
        {
            return true;
        }
        src = s.source();
    }
    false
}

/// An error [`Retry`] may try again after.
pub trait Transient {
    /// Whether another attempt may succeed.
    fn transient(&self) -> bool;
}

impl Transient for reqwest::Error {
    fn transient(&self) -> bool {
        retryable_transport(self)
    }
}

impl Transient for StorageError {
    fn transient(&self) -> bool {
        self.is_retryable()
    }
}

/// [`Retry`] over `reqwest`: an answer with a retryable status (honouring its
/// `Retry-After`) or a [`Transient`] error is tried again.
pub trait SendRetry {
    /// Sends the request `attempt` builds (and signs), again after retryable failures.
    /// Returns the last response, whatever its status (the caller maps it), or the last
    /// error. Errors that are not [`Transient`] (a request that cannot be signed, say)
    /// end the loop at once.
    fn send<F, Fut, E>(&self, attempt: F) -> impl Future<Output = Result<Response, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response, E>>,
        E: Transient + std::fmt::Display;
}

impl SendRetry for Retry {
    async fn send<F, Fut, E>(&self, attempt: F) -> Result<Response, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response, E>>,
        E: Transient + std::fmt::Display,
    {
        self.retrying(attempt, |outcome| match outcome {
            Ok(r) if retryable_status(r.status()) => {
                tracing::debug!(status = r.status().as_u16(), "retryable answer");
                Some(retry_after(r))
            }
            Err(e) if e.transient() => {
                tracing::debug!(error = %e, "retryable failure");
                Some(None)
            }
            Ok(_) | Err(_) => None,
        })
        .await
    }
}

fn retry_after(r: &Response) -> Option<Duration> {
    let v = r
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A transport failure (connection refused, timeout, broken body) as a `Backend` error;
/// retryable where another attempt may help. The URL is left out: it may carry a SAS or
/// signature.
pub fn transport_error(
    driver: &'static str,
    operation: Operation,
    path: &StoragePath,
    e: reqwest::Error,
) -> StorageError {
    let retryable = retryable_transport(&e);
    let io = io_source(&e).map(std::io::Error::kind);
    let kind = if e.is_timeout() || io == Some(std::io::ErrorKind::TimedOut) {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if io == Some(std::io::ErrorKind::ConnectionReset) {
        "connection reset"
    } else if e.is_body() || e.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let text = format!("{kind}: {}", driver_api::error_chain(&e));
    StorageError::backend(driver, operation, path, text).with_retryable(retryable)
}

/// An unexpected status as an error whose message is the service's `detail` (its error
/// code and message, already extracted by the driver) and the status: `Unauthenticated`
/// or `PermissionDenied` where the status and the service's error `code` (empty if
/// none) say so ([`AuthFailure::of`](driver_objectstore::auth::AuthFailure::of)), a
/// `Backend` error otherwise (retryable for 408, 429 and 5xx).
pub fn status_error(
    driver: &'static str,
    operation: Operation,
    path: &StoragePath,
    status: StatusCode,
    code: &str,
    detail: &str,
) -> StorageError {
    let detail = detail.trim();
    let text = if detail.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("{detail} (HTTP {})", status.as_u16())
    };
    if let Some(auth) = driver_objectstore::auth::AuthFailure::of(status.as_u16(), code) {
        return auth.error(driver, operation, path, text);
    }
    StorageError::backend(driver, operation, path, text).with_retryable(retryable_status(status))
}

/// The body of an error response, at most 64 KiB of it, as text (empty if unreadable).
pub async fn error_body(resp: Response) -> String {
    const LIMIT: usize = 64 << 10;
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = LIMIT - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= LIMIT {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response body as the driver API's byte stream: chunks as they arrive, never the
/// whole body in memory; a broken connection ends the stream with a retryable error.
pub fn body_stream(
    driver: &'static str,
    operation: Operation,
    path: &StoragePath,
    resp: Response,
) -> ByteStream {
    let path = path.clone();
    resp.bytes_stream()
        .map_err(move |e| transport_error(driver, operation, &path, e))
        .try_filter(|b: &Bytes| futures::future::ready(!b.is_empty()))
        .boxed()
}

/// A successful GET's response as the object-store core's [`Body`]: the
/// [`body_stream`], the object's version from the `version_header` (an ETag, GCS's
/// `x-goog-generation`) and the body's length, so that the core can resume the read
/// where a cut leaves it.
///
/// [`Body`]: driver_objectstore::Body
pub fn object_body(
    driver: &'static str,
    operation: Operation,
    path: &StoragePath,
    resp: Response,
    version_header: &str,
) -> driver_objectstore::Body {
    let version = resp
        .headers()
        .get(version_header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let len = resp.content_length();
    driver_objectstore::Body::new(body_stream(driver, operation, path, resp))
        .version(version)
        .len(len)
}

/// Extracts the text of the first `<tag>…</tag>` in an XML error body (Azure, OSS and
/// S3-style services answer with `<Error><Code>…</Code><Message>…</Message></Error>`).
pub fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(xml[start..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(StatusCode::from_u16(s).unwrap()));
        }
        for s in [400, 401, 403, 404, 409, 412, 501] {
            assert!(!retryable_status(StatusCode::from_u16(s).unwrap()));
        }
    }

    #[test]
    fn xml_error_fields() {
        let x = "<?xml version=\"1.0\"?><Error><Code>BlobNotFound</Code><Message>gone\n</Message></Error>";
        assert_eq!(xml_tag(x, "Code"), Some("BlobNotFound"));
        assert_eq!(xml_tag(x, "Message"), Some("gone"));
        assert_eq!(xml_tag(x, "Nope"), None);
    }

    /// A server that answers 503 twice, then 200: the request succeeds on the third try;
    /// a server that is down gives a retryable transport error after the retries.
    #[tokio::test]
    async fn retries_then_succeeds_and_gives_up_on_a_dead_server() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for i in 0..3 {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let reply = if i < 2 {
                    "HTTP/1.1 503 Busy\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                };
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let cfg = HttpConfig {
            retry_delay: Duration::from_millis(1),
            ..HttpConfig::default()
        };
        let client = cfg.client("t").unwrap();
        let url = format!("http://{addr}/x");
        let resp = Retry::from(&cfg)
            .send(|| client.get(&url).send())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok");

        // Nothing listens on a port we just closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/x");
        let p = StoragePath::new("/x").unwrap();
        let err = Retry::from(&HttpConfig {
            max_retries: 2,
            retry_delay: Duration::from_millis(1),
            ..HttpConfig::default()
        })
        .send(|| client.get(&url).send())
        .await
        .map_err(|e| transport_error("t", Operation::Stat, &p, e))
        .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }
}
