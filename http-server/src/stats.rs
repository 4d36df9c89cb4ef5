//! What the server does that no handler sees, as Prometheus metrics.
//!
//! A request that runs out of time never reaches the end of the router, so the services' own
//! access log and request counters (which run inside it) never see it; a connection closed for
//! trickling its headers or for idling never carries a request at all; a client waiting at the
//! connection cap is invisible until it gives up. Those are exactly the events an operator of
//! a public service looks for after an incident, so the server counts them itself, and each
//! service registers [`Stats`] into the registry behind its `/metrics`.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use tokio_util::task::TaskTracker;

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Closed {
    /// The request head did not arrive within `HTTP_HEADER_TIMEOUT_MS`.
    HeaderTimeout,
    /// Nothing moved for `HTTP_IDLE_TIMEOUT_MS` while no request was being handled.
    Idle,
}

/// A request the server answered itself because the router was not done in time.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimedOut {
    /// 503 `tiempo_agotado`: the service was slow.
    Service,
    /// 408 `peticion_incompleta`: the client had not finished sending its body.
    Client,
}

/// The server's counters. Cheap to clone; every clone counts into the same metrics.
#[derive(Clone)]
pub struct Stats {
    inner: Arc<Inner>,
}

struct Inner {
    accepted: IntCounter,
    cap_reached: IntCounter,
    closed: IntCounterVec,
    timed_out: IntCounterVec,
    open: IntGauge,
    connections: TaskTracker,
}

impl Stats {
    pub(crate) fn new(connections: TaskTracker) -> Self {
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help)).expect("a valid metric name")
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("a valid metric name")
        };
        let closed = counter_vec(
            "http_server_connections_closed_total",
            "Connections the server closed on its own: the request head too slow \
             (header_timeout, HTTP_HEADER_TIMEOUT_MS) or nothing moving (idle, \
             HTTP_IDLE_TIMEOUT_MS).",
            "reason",
        );
        let timed_out = counter_vec(
            "http_server_requests_timed_out_total",
            "Requests answered by the server because the router was not done within \
             HTTP_REQUEST_TIMEOUT_MS: 503 tiempo_agotado (the service was slow) or 408 \
             peticion_incompleta (the client had not sent its body). The services' own request \
             metrics do not see these.",
            "status",
        );
        // Both label values exist from the start, so a rate over them is 0, not absent.
        for reason in ["header_timeout", "idle"] {
            closed.with_label_values(&[reason]);
        }
        for status in ["503", "408"] {
            timed_out.with_label_values(&[status]);
        }
        Stats {
            inner: Arc::new(Inner {
                accepted: counter(
                    "http_server_connections_accepted_total",
                    "Connections accepted.",
                ),
                cap_reached: counter(
                    "http_server_connection_cap_reached_total",
                    "Times a connection had to wait because HTTP_MAX_CONNECTIONS were open.",
                ),
                closed,
                timed_out,
                open: IntGauge::with_opts(Opts::new(
                    "http_server_connections_open",
                    "Connections open now.",
                ))
                .expect("a valid metric name"),
                connections,
            }),
        }
    }

    pub(crate) fn accepted(&self) {
        self.inner.accepted.inc();
    }

    pub(crate) fn cap_reached(&self) {
        self.inner.cap_reached.inc();
    }

    pub(crate) fn closed(&self, why: Closed) {
        let reason = match why {
            Closed::HeaderTimeout => "header_timeout",
            Closed::Idle => "idle",
        };
        self.inner.closed.with_label_values(&[reason]).inc();
    }

    pub(crate) fn timed_out(&self, who: TimedOut) {
        let status = match who {
            TimedOut::Service => "503",
            TimedOut::Client => "408",
        };
        self.inner.timed_out.with_label_values(&[status]).inc();
    }
}

impl Collector for Stats {
    fn desc(&self) -> Vec<&Desc> {
        let i = &self.inner;
        [
            i.accepted.desc(),
            i.cap_reached.desc(),
            i.closed.desc(),
            i.timed_out.desc(),
            i.open.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let i = &self.inner;
        i.open
            .set(i64::try_from(i.connections.len()).unwrap_or(i64::MAX));
        [
            i.accepted.collect(),
            i.cap_reached.collect(),
            i.closed.collect(),
            i.timed_out.collect(),
            i.open.collect(),
        ]
        .concat()
    }
}
