//! The HTTP load generator: `connections` clients, each on its own keep-alive connection, sending
//! `GET <path>` back to back for a fixed time and timing every request from send to the last byte
//! of the body. A server that closes the connection after each response (gunicorn's sync
//! workers) is followed by a reconnect, counted in that request's time, as a real client pays it.
//!
//! The client is HTTP/1.1 written by hand over a `TcpStream` (the request's bytes built once, the
//! response's head parsed by `httparse`, the body counted off by its `Content-Length`), as `wrk`
//! does: the generator shares the machine's two cores with the server it measures, so every
//! microsecond it spends per request is one the server does not get. A general client (hyper's,
//! a task per connection plus a channel hop per request) took about twice the CPU per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one load run measured.
pub struct Load {
    pub errors: usize,
    pub per_second: f64,
    /// Request times in ms, sorted.
    pub latencies: Vec<f64>,
}

/// One keep-alive connection and what has been read from it past the last response.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// What a response's head says about its body and the connection.
struct Head {
    status: u16,
    len: usize,
    content_length: Option<usize>,
    close: bool,
}

fn parse_head(buf: &[u8]) -> anyhow::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = resp.parse(buf)? else {
        return Ok(None);
    };
    let mut head = Head {
        status: resp.code.context("no status code")?,
        len,
        content_length: None,
        close: resp.version == Some(0),
    };
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)?.trim();
            head.content_length = Some(v.parse().with_context(|| format!("Content-Length {v:?}"))?);
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close = h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not supported by the load generator");
        }
    }
    Ok(Some(head))
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Reads more of the stream into `buf`; false at end of stream.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Sends `request` and reads the whole response: its status and whether the connection may
    /// be used again.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<(u16, bool)> {
        self.stream.write_all(request).await?;
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if !self.fill().await? {
                bail!("connection closed before a response");
            }
        };
        match head.content_length {
            Some(n) => {
                while self.buf.len() < head.len + n {
                    if !self.fill().await? {
                        bail!("connection closed inside a response body");
                    }
                }
                self.buf.drain(..head.len + n);
                Ok((head.status, !head.close))
            }
            // No length: the body runs to the end of the stream.
            None => {
                while self.fill().await? {}
                self.buf.clear();
                Ok((head.status, false))
            }
        }
    }
}

/// One request on `conn` (connecting first if there is none); `Ok(false)` when the server
/// answered something other than 200. Drops the connection the server asked to close.
async fn request(addr: SocketAddr, req: &[u8], conn: &mut Option<Conn>) -> anyhow::Result<bool> {
    if conn.is_none() {
        *conn = Some(Conn::open(addr).await?);
    }
    let (status, keep) = conn.as_mut().expect("connected").exchange(req).await?;
    if !keep {
        *conn = None;
    }
    Ok(status == 200)
}

fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

/// Loads `GET http://addr/path` from `connections` clients for `duration`, all on one thread of
/// their own (as `wrk -t1`): one core's worth of load generator, the rest of the machine left to
/// the server measured. Measured on this 2-core machine, two generator threads got 10 % fewer
/// requests through our service (the generator's threads and the server's contend for cores)
/// and made no difference to Flask's.
pub async fn load(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let req: Arc<[u8]> = get(addr, path).into();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("http-load".into())
        .spawn(move || {
            let run = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(clients(addr, req, connections, duration)));
            let _ = tx.send(run);
        })?;
    rx.await.context("the load thread died")?
}

async fn clients(
    addr: SocketAddr,
    req: Arc<[u8]>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let req = req.clone();
        clients.spawn(async move {
            let mut conn = None;
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                match request(addr, &req, &mut conn).await {
                    Ok(true) => latencies.push(t.elapsed().as_secs_f64() * 1e3),
                    Ok(false) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = None;
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
    request(addr, &get(addr, path), &mut None)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::parse_head;

    #[test]
    fn heads() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{\"a\"")
            .unwrap()
            .expect("complete");
        assert_eq!(
            (h.status, h.len, h.content_length, h.close),
            (200, 39, Some(12), false)
        );
        let h = parse_head(b"HTTP/1.1 503 x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .expect("complete");
        assert_eq!((h.status, h.content_length, h.close), (503, Some(0), true));
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n")
            .unwrap()
            .expect("complete");
        assert_eq!((h.content_length, h.close), (None, true));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
            .unwrap()
            .is_none());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }
}
