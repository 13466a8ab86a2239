//! [`Call`]: one request as a driver describes it, rebuilt for every attempt.
//!
//! A driver describes a request once (operation and path for errors, method, URL,
//! headers, body, whether it is idempotent); each attempt turns it into
//! [`http::request::Parts`] ([`Call::parts`]), lets the driver's signer or credentials
//! add their headers, and sends [`Call::request`]. The body is [`Bytes`], so a retry
//! costs no copy.
//!
//! ```
//! # fn main() -> driver_api::Result<()> {
//! use driver_api::Operation;
//! use driver_http::Call;
//! let path = driver_api::StoragePath::new("/a").unwrap();
//! let url = reqwest::Url::parse("http://127.0.0.1:1/bucket/a").unwrap();
//! let call = Call::new(Operation::PutContent, &path, reqwest::Method::PUT, url)
//!     .header("content-type", "application/octet-stream")
//!     .body(bytes::Bytes::from_static(b"hi"));
//! let mut parts = call.parts("demo")?;
//! parts.headers.insert("authorization", "Bearer t".parse().unwrap());
//! let req = call.request("demo", parts)?;
//! assert_eq!(req.headers()["content-length"], "2");
//! # Ok(()) }
//! ```

use bytes::Bytes;
use driver_api::Operation;
use driver_api::{Result, StorageError, StoragePath};
use reqwest::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use reqwest::{Method, Url};

/// One request (see the module docs).
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// Operation name, for errors.
    pub op: Operation,
    /// Path, for errors.
    pub path: &'a StoragePath,
    /// Method.
    pub method: Method,
    /// Full URL (query included).
    pub url: Url,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body (cheap to clone for retries).
    pub body: Option<Bytes>,
    /// Whether sending it twice is harmless (only idempotent calls are retried).
    pub idempotent: bool,
    /// A delete: a 404 to an attempt that follows one whose answer was lost means the
    /// lost attempt deleted it ([`gone_is_done`](Self::gone_is_done)).
    pub gone_is_done: bool,
}

impl<'a> Call<'a> {
    /// An idempotent request without a body.
    pub fn new(op: Operation, path: &'a StoragePath, method: Method, url: Url) -> Self {
        Self {
            op,
            path,
            method,
            url,
            headers: Vec::new(),
            body: None,
            idempotent: true,
            gone_is_done: false,
        }
    }

    /// Adds a header (`name` in lower case).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }

    /// Marks the request as a delete: when an attempt's answer is lost (a reset, a
    /// timeout) and the retry finds nothing (404), the first attempt did delete it, and
    /// [`RestClient::send`](crate::RestClient::send) answers 204 instead of reporting a
    /// false "not found".
    pub fn gone_is_done(mut self) -> Self {
        self.gone_is_done = true;
        self
    }

    /// Marks the request as one that must not be sent twice.
    pub fn once(mut self) -> Self {
        self.idempotent = false;
        self
    }

    fn bad(&self, driver: &'static str, what: String) -> StorageError {
        StorageError::backend(driver, self.op, self.path, what)
    }

    /// Method, URI and headers of one attempt (`Content-Length` set for bodies, PUT and
    /// POST), for the driver to sign or authorise.
    pub fn parts(&self, driver: &'static str) -> Result<http::request::Parts> {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = self.method.clone();
        parts.uri = self
            .url
            .as_str()
            .parse()
            .map_err(|e| self.bad(driver, format!("bad URL: {e}")))?;
        for (k, v) in &self.headers {
            let v = HeaderValue::from_str(v)
                .map_err(|_| self.bad(driver, format!("bad value of header {k}")))?;
            parts.headers.insert(HeaderName::from_static(k), v);
        }
        let len = self.body.as_ref().map_or(0, Bytes::len);
        if self.body.is_some() || matches!(self.method, Method::PUT | Method::POST) {
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        Ok(parts)
    }

    /// The request to send: `parts` (as signed) with the body.
    pub fn request(
        &self,
        driver: &'static str,
        parts: http::request::Parts,
    ) -> Result<reqwest::Request> {
        let url = Url::parse(&parts.uri.to_string())
            .map_err(|e| self.bad(driver, format!("bad signed URL: {e}")))?;
        let mut req = reqwest::Request::new(parts.method, url);
        *req.headers_mut() = parts.headers;
        if let Some(b) = &self.body {
            *req.body_mut() = Some(b.clone().into());
        }
        Ok(req)
    }
}
