//! [`RestClient`]: sending a [`Call`], retried and mapped, written once for every REST
//! driver.

use driver_api::Operation;
use driver_api::{async_trait, Result, StorageError, StoragePath};
use reqwest::Response;

use crate::{transport_error, Call, Retry, SendRetry};

/// A REST driver's client: how one attempt of a [`Call`] becomes a request (signed or
/// authorised, per attempt, so signatures and tokens are never stale) and how an error
/// answer is read. [`send`](Self::send) and [`expect`](Self::expect) come with it.
///
/// ```
/// use driver_api::{async_trait, Operation, Result, StorageError, StoragePath};
/// use driver_http::{Call, RestClient, Retry};
/// struct Demo(reqwest::Client);
/// #[async_trait]
/// impl RestClient for Demo {
///     const DRIVER: &'static str = "demo";
///     fn http(&self) -> &reqwest::Client { &self.0 }
///     fn retry(&self) -> Retry { Retry::NONE }
///     async fn build(&self, call: &Call<'_>) -> Result<reqwest::Request> {
///         let mut parts = call.parts(Self::DRIVER)?;
///         parts.headers.insert("authorization", "Bearer t".parse().unwrap());
///         call.request(Self::DRIVER, parts)
///     }
///     async fn error(&self, op: Operation, path: &StoragePath, r: reqwest::Response) -> StorageError {
///         driver_http::status_error(Self::DRIVER, op, path, r.status(), "", "")
///     }
/// }
/// ```
#[async_trait]
pub trait RestClient: Sync {
    /// The driver's name, in errors.
    const DRIVER: &'static str;

    /// The HTTP client.
    fn http(&self) -> &reqwest::Client;

    /// Retries of idempotent calls.
    fn retry(&self) -> Retry;

    /// The request of one attempt of `call` (signed or authorised).
    async fn build(&self, call: &Call<'_>) -> Result<reqwest::Request>;

    /// Maps an unsuccessful answer (not found, authentication, service errors).
    async fn error(&self, op: Operation, path: &StoragePath, resp: Response) -> StorageError;

    /// Whether the client renews credentials that the service calls stale: then
    /// [`send`](Self::send) keeps the headers of each attempt for [`stale`](Self::stale).
    const RENEWS: bool = false;

    /// Whether `resp` says the credentials that the request (sent with `sent` headers)
    /// carried are stale (Swift's 401 to an expired token): the client renews them, unless
    /// another request already did (and may point `call` at a new URL), and
    /// [`send`](Self::send) sends once more. Default: never.
    async fn stale(
        &self,
        _call: &mut Call<'_>,
        _sent: &reqwest::header::HeaderMap,
        _resp: &Response,
    ) -> Result<bool> {
        Ok(false)
    }

    /// Sends `call`, rebuilt for each attempt and retried if idempotent; returns the
    /// response whatever its status. Transport failures are errors. A
    /// [`gone_is_done`](Call::gone_is_done) call whose retry after a lost answer finds
    /// nothing answers 204.
    async fn send(&self, mut call: Call<'_>) -> Result<Response> {
        let retry = if call.idempotent {
            self.retry()
        } else {
            Retry::NONE
        };
        // Whether an earlier attempt may have reached the server without its answer
        // reaching us.
        let lost = std::sync::atomic::AtomicBool::new(false);
        let headers = std::sync::Mutex::new(reqwest::header::HeaderMap::new());
        let mut renewed = false;
        let resp = loop {
            let resp = retry
                .send(|| async {
                    let req = self.build(&call).await?;
                    if Self::RENEWS {
                        if let Ok(mut h) = headers.lock() {
                            h.clone_from(req.headers());
                        }
                    }
                    let sent = self.http().execute(req).await;
                    if sent.is_err() {
                        lost.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    sent.map_err(|e| transport_error(Self::DRIVER, call.op, call.path, e))
                })
                .await?;
            let sent = headers.lock().map(|h| h.clone()).unwrap_or_default();
            if renewed || !Self::RENEWS || !self.stale(&mut call, &sent, &resp).await? {
                break resp;
            }
            renewed = true;
        };
        if call.gone_is_done
            && resp.status() == reqwest::StatusCode::NOT_FOUND
            && lost.load(std::sync::atomic::Ordering::Relaxed)
        {
            tracing::debug!(
                driver = Self::DRIVER,
                op = %call.op,
                path = %call.path,
                "a retried delete found nothing: the attempt whose answer was lost deleted it"
            );
            return Ok(Response::from(
                http::Response::builder()
                    .status(reqwest::StatusCode::NO_CONTENT)
                    .body(Vec::<u8>::new())
                    .map_err(|e| StorageError::backend(Self::DRIVER, call.op, call.path, e))?,
            ));
        }
        Ok(resp)
    }

    /// Like [`send`](Self::send), but any status outside `ok` is mapped into an error.
    async fn expect(&self, call: Call<'_>, ok: &[u16]) -> Result<Response> {
        let (op, path) = (call.op, call.path);
        let resp = self.send(call).await?;
        if ok.contains(&resp.status().as_u16()) {
            Ok(resp)
        } else {
            Err(self.error(op, path, resp).await)
        }
    }

    /// Like [`expect`](Self::expect), with the body read whole: for an idempotent call,
    /// a body cut on the way (a reset, a stall) repeats the whole exchange, within the
    /// same retry policy. Statuses in `ok` are answers (a caller that treats 404 as
    /// "none" lists it); any other is mapped into an error.
    async fn fetch(&self, call: Call<'_>, ok: &[u16]) -> Result<Answer> {
        let retry = if call.idempotent {
            self.retry()
        } else {
            Retry::NONE
        };
        let started = tokio::time::Instant::now();
        let mut n = 0;
        loop {
            let resp = self.expect(call.clone(), ok).await?;
            let (status, headers) = (resp.status(), resp.headers().clone());
            match resp.bytes().await {
                Ok(body) => {
                    return Ok(Answer {
                        status,
                        headers,
                        body,
                    })
                }
                Err(e) => {
                    let e = transport_error(Self::DRIVER, call.op, call.path, e);
                    let Some(delay) = retry.next_delay(n, started, None) else {
                        return Err(e);
                    };
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, attempt = n + 1, ?delay, "retrying a cut answer");
                    tokio::time::sleep(delay).await;
                    n += 1;
                }
            }
        }
    }
}

/// An answer read whole ([`RestClient::fetch`]).
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: reqwest::StatusCode,
    /// Its headers.
    pub headers: reqwest::header::HeaderMap,
    /// Its body.
    pub body: bytes::Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        driver: &'static str,
        op: Operation,
        path: &StoragePath,
    ) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| StorageError::backend(driver, op, path, format!("unexpected answer: {e}")))
    }

    /// Back into a response (to hand to an error mapper that reads one).
    pub fn into_response(self) -> Response {
        let mut r = http::Response::new(self.body);
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers;
        Response::from(r)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}
