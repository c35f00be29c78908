//! Response bodies: the one boxed body type every response of the HTTP path
//! has, and [`TrackedBody`], which holds a stream's guards and reports the
//! bytes sent when the body ends (for the access log and the metrics); and
//! [`discard`], for a request body no origin will read.

use crate::proxy::dispatch::Guards;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the HTTP path sends.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Reads and drops what is left of a request body no origin will read (the
/// request is answered with an error), at most `limit` bytes within `within`,
/// as nginx discards a body before an error page. Left unread, HTTP/2 resets
/// the stream right after the error response, and a client still sending
/// (curl with `-d`) reports the reset instead of the answer; HTTP/1 would
/// have to close the connection. A body over the bounds is left: the reset
/// or close is then the right answer.
pub(crate) async fn discard(
    body: hyper::body::Incoming,
    limit: usize,
    within: std::time::Duration,
) {
    let mut body = std::pin::pin!(body);
    let mut read = 0usize;
    let _ = tokio::time::timeout(within, async {
        while read <= limit {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                _ => return,
            }
        }
    })
    .await;
}

/// A whole body from bytes.
pub(crate) fn full(body: impl Into<Bytes>) -> ResponseBody {
    Full::new(body.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A response body that holds the stream's guards and reports its size
/// when it ends.
pub(crate) struct TrackedBody {
    pub(crate) inner: ResponseBody,
    pub(crate) on_end: Option<Box<dyn FnOnce(u64) + Send>>,
    pub(crate) bytes: u64,
    pub(crate) _guards: Option<Guards>,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(d) = frame.data_ref() {
                self.bytes += d.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            f(self.bytes);
        }
    }
}
