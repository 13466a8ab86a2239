//! The S3 client: SDK configuration (credentials, endpoint, retries, timeouts, checksums),
//! and errors mapped into [`StorageError`].

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{AppName, BehaviorVersion, Region};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls;
use driver_api::Operation;
use driver_api::{Result, StorageError, StoragePath};
use driver_objectstore::auth::AuthFailure;

use crate::params::S3Params;
use crate::DRIVER;

/// Builds a client for `p`, talking to `endpoint` (the S3 endpoint, or the redirect
/// endpoint for presigning).
pub async fn build(p: &S3Params, endpoint: Option<&str>) -> Result<Client> {
    let n = &p.network;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::idle::IdleClient::new(http, n.idle_timeout))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(n.max_retries + 1)
                .with_initial_backoff(n.retry_delay)
                .with_max_backoff(n.max_retry_delay),
        )
        .timeout_config(
            // An attempt that moves no byte for idle_timeout fails (`crate::idle`; the
            // answer's body: stalled-stream protection below). Requests that carry no
            // data are also bounded as a whole, all attempts within retry_budget (the
            // SDK cannot stop starting attempts at the budget, so the budget ends the
            // last one instead); those that carry data or work long on the server opt
            // out (`long_call`), as a slow but moving transfer must not be cut.
            TimeoutConfig::builder()
                .connect_timeout(n.connect_timeout)
                .operation_timeout(n.retry_budget.max(n.idle_timeout))
                .build(),
        )
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .grace_period(n.idle_timeout)
                .build(),
        );
    // With an endpoint of its own (MinIO, Ceph RGW, moto...) any region name signs.
    let region = p.region.clone().unwrap_or_else(|| "us-east-1".to_owned());
    loader = loader.region(Region::new(region));
    if let (Some(ak), Some(sk)) = (&p.access_key, &p.secret_key) {
        loader = loader.credentials_provider(Credentials::new(
            ak.clone(),
            sk.clone(),
            p.session_token.clone(),
            None,
            "storage-driver-parameters",
        ));
    }
    if let Some(ua) = &p.user_agent {
        let name = AppName::new(ua.clone()).map_err(|_| StorageError::InvalidParameter {
            driver: DRIVER.into(),
            key: "useragent".into(),
            expected: "a name of letters, digits and !#$%&'*+-.^_`|~".into(),
        })?;
        loader = loader.app_name(name);
    }
    let sdk = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(p.force_path_style)
        .accelerate(p.accelerate)
        .use_dual_stack(p.dual_stack)
        .use_fips(p.fips)
        // Checksums only where S3 requires them: S3-compatible stores (older MinIO, Ceph,
        // many appliances) reject the SDK's default aws-chunked trailers.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(e) = endpoint {
        b = b.endpoint_url(e);
    }
    if p.log_requests {
        b = b.interceptor(RequestLog);
    }
    b = b.interceptor(EmptyBodyLength);
    Ok(Client::from_conf(b.build()))
}

/// The override for a request that carries data or may work long on the service (a
/// part, a put, a copy, completing an upload): no operation timeout, as a slow but moving
/// transfer must not be cut; a stall is still caught (`crate::idle`, stalled-stream
/// protection), and the connect timeout stays.
///
/// The SDK does not retry these: its retries have no time budget, so the driver retries
/// them itself with the shared policy (`Retry`, from the network parameters).
pub fn long_call(p: &S3Params) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new()
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(p.network.connect_timeout)
                .disable_operation_timeout()
                .build(),
        )
}

/// States `Content-Length: 0` on a PUT or POST without a body (UploadPartCopy,
/// CopyObject, CreateMultipartUpload, an empty PutObject): the SDK sends such requests
/// with neither Content-Length nor Transfer-Encoding, which AWS accepts but strict
/// S3 implementations refuse (Ceph's RADOS Gateway answers 411 MissingContentLength, so
/// a move above `multipartcopythresholdsize` failed there). Added before signing, so the
/// header is signed like the others.
#[derive(Debug)]
struct EmptyBodyLength;

impl aws_sdk_s3::config::Intercept for EmptyBodyLength {
    fn name(&self) -> &'static str {
        "storage-driver-empty-body-length"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _rc: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let r = context.request_mut();
        let bodiless_write = matches!(r.method(), "PUT" | "POST")
            && r.body().content_length() == Some(0)
            && !r.headers().contains_key("content-length")
            && !r.headers().contains_key("transfer-encoding");
        if bodiless_write {
            r.headers_mut().insert("content-length", "0");
        }
        Ok(())
    }
}

/// `loglevel` other than off: every request and response status at INFO through tracing
/// (target `driver_s3::requests`; method and URL only, never headers or bodies).
#[derive(Debug)]
struct RequestLog;

impl aws_sdk_s3::config::Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "storage-driver-request-log"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let r = context.request();
        tracing::info!(target: "driver_s3::requests", method = r.method(), uri = r.uri(), "request");
        Ok(())
    }

    fn read_after_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        tracing::info!(target: "driver_s3::requests", status = context.response().status().as_u16(), "response");
        Ok(())
    }
}

/// The service's error code and the HTTP status of an SDK error, where there are any.
pub fn classify<E: ProvideErrorMetadata>(
    e: &SdkError<E, HttpResponse>,
) -> (Option<String>, Option<u16>) {
    match e {
        SdkError::ServiceError(s) => (
            s.err().code().map(str::to_owned),
            Some(s.raw().status().as_u16()),
        ),
        SdkError::ResponseError(r) => (None, Some(r.raw().status().as_u16())),
        _ => (None, None),
    }
}

/// Maps an SDK error of `operation` on `path` into a [`StorageError`]: missing keys and
/// uploads are `PathNotFound`; throttling, 5xx, timeouts and connection failures are
/// retryable backend errors; authentication failures say so.
pub fn map_err<E>(
    operation: Operation,
    path: &StoragePath,
    e: SdkError<E, HttpResponse>,
) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, status) = classify(&e);
    let code_str = code.as_deref().unwrap_or("");
    if matches!(code_str, "NoSuchKey" | "NotFound" | "NoSuchUpload")
        || (status == Some(404) && code_str != "NoSuchBucket")
    {
        return StorageError::not_found(DRIVER, path);
    }
    let retryable = matches!(
        e,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) || status.is_some_and(|s| s >= 500 || s == 429)
        || matches!(
            code_str,
            "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "RequestTimeout"
                | "OperationAborted"
                | "InternalError"
                | "ServiceUnavailable"
        );
    let mut text = match (&e, &code) {
        (SdkError::ServiceError(se), Some(c)) => match se.err().message() {
            Some(m) if !m.is_empty() => format!("{c}: {m} (HTTP {})", status.unwrap_or(0)),
            _ => format!("{c} (HTTP {})", status.unwrap_or(0)),
        },
        (SdkError::DispatchFailure(f), _) if f.is_timeout() => {
            format!("timed out: {}", driver_api::error_chain(&e))
        }
        (SdkError::DispatchFailure(f), _) if f.is_io() => {
            format!("{}: {}", io_failure(&e), driver_api::error_chain(&e))
        }
        (SdkError::TimeoutError(_), _) => format!("timed out: {}", driver_api::error_chain(&e)),
        _ => driver_api::error_chain(&e),
    };
    if let Some(auth) = status.and_then(|s| AuthFailure::of(s, code_str)) {
        text = format!("check accesskey/secretkey/sessiontoken and the bucket policy: {text}");
        return auth.error(DRIVER, operation, path, text);
    }
    StorageError::backend(DRIVER, operation, path, text).with_retryable(retryable)
}

/// What an I/O failure of a request was, in words: a connection that could not be made
/// is not one that broke on the way.
fn io_failure(e: &(dyn std::error::Error + 'static)) -> &'static str {
    use std::io::ErrorKind;
    let mut src = e.source();
    let mut connect = false;
    while let Some(s) = src {
        // hyper-util says "client error (Connect)" for a connection never made.
        connect |= s.to_string().contains("(Connect)");
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                ErrorKind::ConnectionRefused | ErrorKind::HostUnreachable => "cannot connect",
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => "connection reset",
                ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => "connection closed",
                _ if connect => "cannot connect",
                _ => "connection failed",
            };
        }
        src = s.source();
    }
    if connect {
        "cannot connect"
    } else {
        "connection failed"
    }
}
