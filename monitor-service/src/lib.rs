//! # monitor-service: is the inventory worker alive, and how fast does it answer?
//!
//! A ping-echo failure detector with heartbeats as a second signal, in the order data flows:
//!
//! - [`config`]: the settings (flags with environment fallbacks).
//! - [`targets`]: what is watched: `name:queue:task`, one or several.
//! - [`ping`]: one ping-echo through Redis, timed with `Instant`, and its log line.
//! - [`detector`]: the failure detector, a pure state machine: OK / DEGRADADO / CAIDO.
//! - [`monitor`]: the ping loops that feed it, the heartbeat table, state changes.
//! - [`change`]: a state change as published (the record and its log line).
//! - [`history`]: recent pings and changes in memory, in a Redis stream, in a file.
//! - [`metrics`]: the Prometheus metrics.
//! - [`feed`]: the last hour of pings and the live events, bounded, for the dashboard.
//! - [`http`]: the API on port 3002, built by [`http::app`].
//! - [`dashboard`]: the web page at `/` and its server-sent events at `/monitor/stream`.
//! - [`availability`]: the arithmetic of the `availability-check` tool.

pub mod availability;
pub mod change;
pub mod config;
pub mod dashboard;
pub mod detector;
pub mod feed;
pub mod history;
pub mod http;
pub mod live;
pub mod metrics;
pub mod monitor;
pub mod ping;
pub mod targets;

pub use change::StateChange;
pub use config::Config;
pub use detector::Estado;
pub use http::app;
pub use monitor::Monitor;
