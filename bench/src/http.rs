//! The HTTP load generator: `connections` clients, each on its own keep-alive connection, sending
//! `GET <path>` back to back for a fixed time and timing every request from send to the last byte
//! of the body. A server that closes the connection after each response (gunicorn's sync
//! workers) is followed by a reconnect, counted in that request's time, as a real client pays it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONNECTION, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What one load run measured.
pub struct Load {
    pub errors: usize,
    pub per_second: f64,
    /// Request times in ms, sorted.
    pub latencies: Vec<f64>,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One request on `sender` (reconnecting first if it is gone); `Ok(false)` when the server
/// answered something other than 200. Drops the connection the server asked to close.
async fn request(
    addr: SocketAddr,
    path: &str,
    sender: &mut Option<SendRequest<Empty<Bytes>>>,
) -> anyhow::Result<bool> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(addr).await?);
    }
    let s = sender.as_mut().expect("connected");
    s.ready().await?;
    let req = Request::get(path)
        .header(HOST, addr.to_string())
        .body(Empty::new())?;
    let resp = s.send_request(req).await?;
    let status = resp.status();
    if resp
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    {
        *sender = None;
    }
    resp.into_body().collect().await?;
    Ok(status == StatusCode::OK)
}

/// Loads `GET http://addr/path` from `connections` clients for `duration`.
pub async fn load(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let path = path.to_owned();
        clients.spawn(async move {
            let mut sender = None;
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                match request(addr, &path, &mut sender).await {
                    Ok(true) => latencies.push(t.elapsed().as_secs_f64() * 1e3),
                    Ok(false) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        sender = None;
                    }
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(r) = clients.join_next().await {
        let (l, e) = r.context("a load client panicked")?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(Load {
        errors,
        per_second: latencies.len() as f64 / elapsed,
        latencies,
    })
}

/// Whether one `GET path` on a fresh connection answers 200.
pub async fn get_ok(addr: SocketAddr, path: &str) -> bool {
    request(addr, path, &mut None).await.unwrap_or(false)
}
