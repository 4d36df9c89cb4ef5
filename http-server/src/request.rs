//! One request through the router, bounded by `HTTP_REQUEST_TIMEOUT_MS`.
//!
//! The bound covers the time until the answer's head (status and headers) is ready: that is
//! the router's future. A streamed body, such as the dashboard's server-sent events, is sent
//! after the head and is not cut by it (the idle timeout watches it instead).
//!
//! A request that runs out of time is answered with the services' JSON error. Which status
//! depends on who was slow (RFC 9110):
//! - the handler was waiting for the request's body, which the client had not finished
//!   sending: 408 `peticion_incompleta` ("did not receive a complete request message within
//!   the time it was prepared to wait"), and the connection is closed, since the rest of that
//!   body may still be on its way;
//! - anything else, the service itself was slow: 503 `tiempo_agotado` with `Retry-After`, like
//!   the services' other "not now" answers, so monitoring counts it as the service's failure.
//!
//! The handler's future is dropped on timeout, as it would be if the client hung up: handlers
//! already have to be safe to cancel.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::{Json, Router};
use hyper::body::{Frame, SizeHint};
use serde_json::json;
use tower::ServiceExt;

use crate::activity::Activity;
use crate::shorten;
use crate::stats::TimedOut;
use crate::Answering;

/// Seconds a client is told to wait after a 503 for slowness.
const RETRY_AFTER_SECS: &str = "5";

/// Serves one request of a connection whose life is `activity`.
pub(crate) async fn handle<B>(
    router: Router,
    request: Request<B>,
    limit: Duration,
    activity: Arc<Activity>,
    answering: Answering,
) -> Result<Response<Body>, Infallible>
where
    B: hyper::body::Body<Data = axum::body::Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    let _busy = activity.busy();
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let request = request.map(|inner| {
        Body::new(Tracked {
            inner,
            activity: Arc::clone(&activity),
        })
    });
    let mut response = match tokio::time::timeout(limit, router.oneshot(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => {
            let client_was_slow = activity.body_pending();
            let ms = limit.as_millis();
            let (method, uri) = (shorten(&method), shorten(&uri));
            answering.stats.timed_out(if client_was_slow {
                TimedOut::Client
            } else {
                TimedOut::Service
            });
            if client_was_slow {
                // A client can cause this at will: not worth a warning each time.
                tracing::debug!(%method, %uri, timeout_ms = ms, "request body too slow: 408");
            } else {
                tracing::warn!(%method, %uri, timeout_ms = ms, "request timed out: 503");
            }
            timed_out(client_was_slow, limit)
        }
    };
    if let Some(name) = answering.instance {
        response.headers_mut().insert(crate::X_INSTANCIA, name);
    }
    Ok(response)
}

/// The answer to a request that ran out of time.
fn timed_out(client_was_slow: bool, limit: Duration) -> Response<Body> {
    let ms = limit.as_millis();
    let (status, code, detalle) = if client_was_slow {
        (
            StatusCode::REQUEST_TIMEOUT,
            "peticion_incompleta",
            format!("el cuerpo de la petición no llegó completo en {ms} ms"),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "tiempo_agotado",
            format!("la respuesta no estuvo lista en {ms} ms"),
        )
    };
    let mut response = (status, Json(json!({"error": code, "detalle": detalle}))).into_response();
    let (name, value) = if client_was_slow {
        (header::CONNECTION, HeaderValue::from_static("close"))
    } else {
        (
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        )
    };
    response.headers_mut().insert(name, value);
    response
}

/// A request body that tells its connection's [`Activity`] whether the handler is waiting for
/// bytes the client has not sent yet.
struct Tracked<B> {
    inner: B,
    activity: Arc<Activity>,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        self.activity.set_body_pending(poll.is_pending());
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
