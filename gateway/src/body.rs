//! The body of a request: it must arrive whole by a deadline set when its headers did, and a
//! read that failed says why (too large, too slow, broken off) in the status it gets.
//!
//! tower-http's body timeout restarts with every chunk, so a client sending a byte every few
//! seconds would never meet it; the deadline here is one instant for the whole body.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Sleep;

/// Middleware: the body of every request must arrive whole within `timeout`.
pub async fn deadline(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = Body::new(Deadline {
        body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
    });
    next.run(Request::from_parts(parts, body)).await
}

/// Why a body could not be read, as the status and message a client gets.
pub fn unread(rejection: &BytesRejection, max_bytes: usize) -> (StatusCode, String) {
    if timed_out(rejection) {
        return (
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time: send it at once, after the headers".into(),
        );
    }
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {max_bytes} bytes"),
        ),
        status => (status, "the request body could not be read".into()),
    }
}

/// A body that fails with [`TimedOut`] once its deadline passes.
struct Deadline {
    body: Body,
    deadline: Pin<Box<Sleep>>,
}

/// The request's body did not arrive in time.
#[derive(Debug)]
struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for TimedOut {}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(TimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether the read failed, somewhere down its causes, because the deadline passed.
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<TimedOut>() {
            return true;
        }
        cause = error.source();
    }
    false
}
