//! Prometheus metrics for `GET /metrics`: requests by method, route and status, a latency
//! histogram by method and route, and the process's own memory, CPU and file descriptors
//! (`process_*`, on Linux), which the Grafana dashboard graphs beside the monitor's.
//!
//! Requests are labelled with the route *template* (`/inventario/{id}`), never the raw path,
//! so the number of series stays fixed whatever ids clients ask for; requests that match no
//! route share one label. Methods likewise: a client may send any token as a method
//! (`FOO123`), so those outside HTTP's standard set share the label `otro`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The label of requests no route matched.
const SIN_RUTA: &str = "sin_ruta";

/// The label of requests whose method is none of HTTP's standard ones.
const OTRO_METODO: &str = "otro";

/// The `method` label of a request: its method if standard (RFC 9110 and PATCH), else
/// [`OTRO_METODO`].
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTRO_METODO,
    }
}

/// The service's metrics and the registry they live in. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer an HTTP request, by route",
            )
            // From 50 µs: a read from the cached listing takes a fraction of a millisecond,
            // and buckets starting at 1 ms put every request in the first one.
            .buckets(vec![
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(requests.clone()))
            .expect("metric registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("metric registered once");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric registered once");
        Metrics {
            registry,
            requests,
            latency,
        }
    }

    /// Adds the HTTP server's own counters (requests it timed out, connections it closed),
    /// which no handler sees, to what `/metrics` shows.
    pub fn register_server(&self, stats: http_server::Stats) {
        // Registered once per server; a second server on the same metrics is a programming
        // error, and the first one's figures stay.
        if let Err(e) = self.registry.register(Box::new(stats)) {
            tracing::warn!(error = %e, "http server metrics not registered");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding our own well-formed metrics into memory cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: times and counts every request. It runs on every request, so it allocates
/// nothing: the route template and the method are cheap handles, not copied strings. Its state
/// is the metrics alone, behind one `Arc`, since axum clones a layer's state per request.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or(SIN_RUTA, MatchedPath::as_str);
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency
        .with_label_values(&[method, route])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[method, route, response.status().as_str()])
        .inc();
    response
}

/// `GET /metrics`.
pub async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_get_their_own_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"FOO123").unwrap();
        assert_eq!(method_label(&invented), OTRO_METODO);
        // Methods are case-sensitive: "get" is not GET.
        assert_eq!(
            method_label(&Method::from_bytes(b"get").unwrap()),
            OTRO_METODO
        );
    }
}
