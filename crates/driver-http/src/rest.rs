//! [`RestClient`]: sending a [`Call`], retried and mapped, written once for every REST
//! driver.

use driver_api::{async_trait, Result, StorageError, StoragePath};
use reqwest::Response;

use crate::{transport_error, Call, Retry};

/// A REST driver's client: how one attempt of a [`Call`] becomes a request (signed or
/// authorised, per attempt, so signatures and tokens are never stale) and how an error
/// answer is read. [`send`](Self::send) and [`expect`](Self::expect) come with it.
///
/// ```
/// use driver_api::{async_trait, Result, StorageError, StoragePath};
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
///     async fn error(&self, op: &'static str, path: &StoragePath, r: reqwest::Response) -> StorageError {
///         driver_http::status_error(Self::DRIVER, op, path, r.status(), "")
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
    async fn error(&self, op: &'static str, path: &StoragePath, resp: Response) -> StorageError;

    /// Sends `call`, rebuilt for each attempt and retried if idempotent; returns the
    /// response whatever its status. Transport failures are errors.
    async fn send(&self, call: Call<'_>) -> Result<Response> {
        let retry = if call.idempotent {
            self.retry()
        } else {
            Retry::NONE
        };
        retry
            .send(|| async {
                let req = self.build(&call).await?;
                self.http()
                    .execute(req)
                    .await
                    .map_err(|e| transport_error(Self::DRIVER, call.op, call.path, e))
            })
            .await
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
}
