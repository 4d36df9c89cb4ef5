//! Loopback ports for servers a test starts, and waiting for one to answer.

use std::net::TcpListener;
use std::time::Duration;

use crate::wait::eventually;

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `url` with GET until it answers `status`, for at most `limit`; whether it did.
pub async fn wait_for_status(
    http: &reqwest::Client,
    url: &str,
    status: u16,
    limit: Duration,
) -> bool {
    eventually(limit, Duration::from_millis(100), || async {
        http.get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == status)
    })
    .await
}
