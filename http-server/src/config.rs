//! The HTTP limits as settings: one clap struct that each service flattens into its own, so
//! both services take the same variables with the same defaults and `--help` documents them.
//!
//! Values are checked by clap as they are parsed: a zero, or a value past the bounds below,
//! stops the program at start with a message naming the variable, rather than serving with a
//! timeout that closes every connection at once or one that never fires.

use std::time::Duration;

/// Default of `HTTP_HEADER_TIMEOUT_MS`: enough for a real client on a bad mobile link, short
/// enough that a connection which never sends its headers is gone quickly.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default of `HTTP_REQUEST_TIMEOUT_MS`.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default of `HTTP_IDLE_TIMEOUT_MS`: longer than the dashboard stream's 15 s keep-alive, so a
/// page that reads its stream is never cut.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default of `HTTP_MAX_CONNECTIONS`: far more than the services' real clients open, few enough
/// that the sockets fit in the open-file limit containers are given (the server warns at start
/// when the limit is lower).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Default of `HTTP_DRAIN_TIMEOUT_MS`: below the 10 s a container runtime waits after SIGTERM
/// before SIGKILL, so the process still exits by itself.
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 8_000;

/// The longest header timeout taken: past this a slow client holds a connection for longer
/// than any real one needs to send a few hundred bytes.
pub const MAX_HEADER_TIMEOUT_MS: u64 = 30_000;
/// The longest request, idle and drain timeouts taken (ten minutes): past this the setting is
/// a mistake, not a choice.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// The HTTP server's settings, for `#[command(flatten)]` in a service's `Config`.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Milliseconds a client has to send a request's head (request line and headers) once it
    /// has connected, or once its previous answer was sent on a kept-alive connection; then
    /// the connection is closed. At most 30000.
    #[arg(
        long,
        env = "HTTP_HEADER_TIMEOUT_MS",
        default_value_t = DEFAULT_HEADER_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..=MAX_HEADER_TIMEOUT_MS)
    )]
    pub http_header_timeout_ms: u64,
    /// Milliseconds a request may take until its answer starts (its status and headers): then
    /// it gets 503 `tiempo_agotado`, or 408 `peticion_incompleta` if its body was still
    /// arriving. A stream (the dashboard's) goes on past it once started.
    #[arg(
        long,
        env = "HTTP_REQUEST_TIMEOUT_MS",
        default_value_t = DEFAULT_REQUEST_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS)
    )]
    pub http_request_timeout_ms: u64,
    /// A connection on which no byte moves either way for this many milliseconds while no
    /// request is being worked on is closed: a client that stopped reading its answer (or a
    /// stream) or stopped sending its body. (The wait for the next request on a kept-alive
    /// connection is bounded by HTTP_HEADER_TIMEOUT_MS already.)
    #[arg(
        long,
        env = "HTTP_IDLE_TIMEOUT_MS",
        default_value_t = DEFAULT_IDLE_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS)
    )]
    pub http_idle_timeout_ms: u64,
    /// Connections served at once. At the cap no new connection is accepted (it waits in the
    /// kernel's backlog) until one closes; a warning is logged.
    #[arg(
        long,
        env = "HTTP_MAX_CONNECTIONS",
        default_value_t = DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub http_max_connections: u32,
    /// On SIGTERM, milliseconds the requests in flight get to finish before their connections
    /// are closed and the program exits.
    #[arg(
        long,
        env = "HTTP_DRAIN_TIMEOUT_MS",
        default_value_t = DEFAULT_DRAIN_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS)
    )]
    pub http_drain_timeout_ms: u64,
}

/// The limits a [`crate::Server`] enforces, as durations. Built from [`HttpArgs`] by a service,
/// directly by a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The time to send a request head, from the connection's start or the previous answer.
    pub header_timeout: Duration,
    /// The time from a request's head to its answer's head.
    pub request_timeout: Duration,
    /// The time a connection may go without a byte moved and without a request being handled.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// The time in-flight requests get after shutdown is asked.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            drain_timeout: Duration::from_millis(DEFAULT_DRAIN_TIMEOUT_MS),
        }
    }
}

impl From<&HttpArgs> for Limits {
    fn from(a: &HttpArgs) -> Self {
        Limits {
            header_timeout: Duration::from_millis(a.http_header_timeout_ms),
            request_timeout: Duration::from_millis(a.http_request_timeout_ms),
            idle_timeout: Duration::from_millis(a.http_idle_timeout_ms),
            max_connections: a.http_max_connections as usize,
            drain_timeout: Duration::from_millis(a.http_drain_timeout_ms),
        }
    }
}

impl HttpArgs {
    pub fn limits(&self) -> Limits {
        Limits::from(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        http: HttpArgs,
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let cli = Cli::try_parse_from(["s"]).unwrap();
        assert_eq!(cli.http.limits(), Limits::default());
        assert_eq!(Limits::default().header_timeout, Duration::from_secs(10));
        assert_eq!(Limits::default().max_connections, 1024);
    }

    #[test]
    fn zero_and_absurd_values_are_refused_at_start() {
        for args in [
            ["s", "--http-header-timeout-ms", "0"],
            ["s", "--http-header-timeout-ms", "30001"],
            ["s", "--http-request-timeout-ms", "0"],
            ["s", "--http-idle-timeout-ms", "600001"],
            ["s", "--http-max-connections", "0"],
            ["s", "--http-drain-timeout-ms", "0"],
            ["s", "--http-request-timeout-ms", "-5"],
            ["s", "--http-max-connections", "many"],
            ["s", "--http-idle-timeout-ms", "1s"],
        ] {
            let line = format!("{}={}", args[1], args[2]);
            let err = Cli::try_parse_from([args[0], &line]).expect_err(&line);
            assert!(
                err.to_string().contains(args[1]),
                "the error names the setting: {err}"
            );
        }
        let ok = Cli::try_parse_from(["s", "--http-header-timeout-ms", "30000"]).unwrap();
        assert_eq!(ok.http.limits().header_timeout, Duration::from_secs(30));
    }
}
