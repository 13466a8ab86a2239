//! The idle timeout of every request the SDK sends: an attempt fails with a timeout (which
//! the SDK retries) once no byte has moved for `idle_timeout`, whether it is still sending
//! its body or waiting for the answer.
//!
//! The SDK's own timeouts cannot say this: its read timeout runs from the start of the
//! request to the first byte of the answer, so it would cut a large part on a slow but
//! moving link, and its stalled-stream protection watches a body's throughput but not the
//! wait after the last byte is sent (a server that took the whole body into its socket
//! buffers and never answers). Here the request body is handed to the connection in small
//! frames, each taken frame counts as progress, and so does the end of the body; the
//! answer's head must come within `idle_timeout` of the last progress. The answer's body is
//! watched by the SDK's stalled-stream protection.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::config::http::HttpRequest;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// The largest frame of a request body handed to the connection at once: progress is
/// seen at least every `FRAME` bytes sent.
const FRAME: usize = 64 << 10;

/// An [`HttpClient`] whose connectors fail an attempt after `idle` without progress.
#[derive(Debug)]
pub struct IdleClient {
    inner: SharedHttpClient,
    idle: Duration,
}

impl IdleClient {
    pub fn new(inner: SharedHttpClient, idle: Duration) -> Self {
        Self { inner, idle }
    }
}

impl HttpClient for IdleClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(IdleConnector {
            inner: self.inner.http_connector(settings, components),
            idle: self.idle,
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.inner
            .validate_base_client_config(runtime_components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct IdleConnector {
    inner: SharedHttpConnector,
    idle: Duration,
}

impl HttpConnector for IdleConnector {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        let progress = Arc::new(Progress::new());
        let tracked = progress.clone();
        let body = request.take_body();
        *request.body_mut() = body.map_preserve_contents(move |b| {
            SdkBody::from_body_1_x(Tracked {
                inner: b,
                pending: None,
                progress: tracked.clone(),
            })
        });
        let call = self.inner.call(request);
        let idle = self.idle;
        HttpConnectorFuture::new(async move {
            tokio::pin!(call);
            loop {
                let deadline = progress.last() + idle;
                tokio::select! {
                    res = &mut call => return res,
                    () = tokio::time::sleep_until(deadline) => {
                        if progress.last() + idle <= Instant::now() {
                            return Err(ConnectorError::timeout(
                                format!("no byte moved for {idle:?}").into(),
                            ));
                        }
                    }
                }
            }
        })
    }
}

/// When the attempt last moved a byte.
#[derive(Debug)]
struct Progress {
    start: Instant,
    /// Nanoseconds after `start`.
    last: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn mark(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.fetch_max(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// A request body handed on in frames of at most [`FRAME`] bytes, marking progress as the
/// connection takes each one and when it ends.
struct Tracked {
    inner: SdkBody,
    /// The rest of a data frame larger than `FRAME`.
    pending: Option<Bytes>,
    progress: Arc<Progress>,
}

impl Tracked {
    /// The next at most `FRAME` bytes of `data`, keeping the rest.
    fn split(&mut self, mut data: Bytes) -> Frame<Bytes> {
        if data.len() > FRAME {
            let rest = data.split_off(FRAME);
            self.pending = Some(rest);
        }
        self.progress.mark();
        Frame::data(data)
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(data) = this.pending.take() {
            return Poll::Ready(Some(Ok(this.split(data))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Poll::Ready(Some(Ok(this.split(data)))),
                Err(frame) => {
                    this.progress.mark();
                    Poll::Ready(Some(Ok(frame)))
                }
            },
            Poll::Ready(None) => {
                this.progress.mark();
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let extra = self.pending.as_ref().map_or(0, |b| b.len() as u64);
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + extra);
        }
        hint.set_lower(inner.lower() + extra);
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_is_handed_on_in_small_frames_whole() {
        let data: Bytes = (0..200_000u32).map(|i| i as u8).collect::<Vec<_>>().into();
        let progress = Arc::new(Progress::new());
        let mut body = Tracked {
            inner: SdkBody::from(data.clone()),
            pending: None,
            progress: progress.clone(),
        };
        assert_eq!(body.size_hint().exact(), Some(200_000));
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            let chunk = frame.into_data().unwrap();
            assert!(chunk.len() <= FRAME);
            got.extend_from_slice(&chunk);
            frames += 1;
            assert_eq!(body.size_hint().exact(), Some(200_000 - got.len() as u64));
        }
        assert_eq!(frames, 4);
        assert_eq!(got, data);
        assert!(progress.last() > progress.start);
    }
}
