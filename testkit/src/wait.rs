//! Waiting for a condition that lives in another process (Redis, a child) and announces
//! nothing: checked at a fixed step until a deadline, never a bare sleep.

use std::time::Duration;

/// Waits until `cond` holds, checking after every `step`, for at most `limit`. Returns whether
/// it held.
pub async fn eventually<F, Fut>(limit: Duration, step: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(step).await;
    }
}
