//! The HTTP load generator: `connections` clients, each on its own keep-alive connection, sending
//! a request (`GET <path>`, or a JSON `POST` with a bearer token) back to back for a fixed time or
//! a fixed count, and timing every request from send to the last byte of the body. A server that closes the connection after each response (gunicorn's sync
//! workers) is followed by a reconnect, counted in that request's time, as a real client pays it.
//!
//! The client is HTTP/1.1 written by hand over a `TcpStream` (the request's bytes built once, the
//! response's head parsed by `httparse`, the body counted off by its `Content-Length`), as `wrk`
//! does: the generator shares the machine's two cores with the server it measures, so every
//! microsecond it spends per request is one the server does not get. A general client (hyper's,
//! a task per connection plus a channel hop per request) took about twice the CPU per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// be used again. The body is left at the start of `buf`, its length returned, for the
    /// caller to read or drop ([`Conn::consume`]).
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<(u16, bool, usize)> {
        self.stream.write_all(request).await?;
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if !self.fill().await? {
                bail!("connection closed before a response");
            }
        };
        self.buf.drain(..head.len);
        match head.content_length {
            Some(n) => {
                while self.buf.len() < n {
                    if !self.fill().await? {
                        bail!("connection closed inside a response body");
                    }
                }
                Ok((head.status, !head.close, n))
            }
            // No length: the body runs to the end of the stream.
            None => {
                while self.fill().await? {}
                Ok((head.status, false, self.buf.len()))
            }
        }
    }

    /// Drops the first `n` bytes read (the body of the last response).
    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
    }
}

/// One request on `conn` (connecting first if there is none): the status answered. Drops the
/// connection the server asked to close.
async fn request(addr: SocketAddr, req: &[u8], conn: &mut Option<Conn>) -> anyhow::Result<u16> {
    if conn.is_none() {
        *conn = Some(Conn::open(addr).await?);
    }
    let c = conn.as_mut().expect("connected");
    let (status, keep, body) = c.exchange(req).await?;
    c.consume(body);
    if !keep {
        *conn = None;
    }
    Ok(status)
}

/// A request the load sends, its bytes built once, and the status that counts as a success.
#[derive(Clone)]
pub struct Request {
    bytes: Arc<[u8]>,
    expect: u16,
}

impl Request {
    /// `GET path`, expecting 200.
    pub fn get(addr: SocketAddr, path: &str) -> Self {
        Request {
            bytes: format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")
                .into_bytes()
                .into(),
            expect: 200,
        }
    }

    /// `POST path` with a JSON body and `Authorization: Bearer <token>`, expecting `expect`.
    pub fn post_json(
        addr: SocketAddr,
        path: &str,
        token: &str,
        body: &serde_json::Value,
        expect: u16,
    ) -> Self {
        let body = body.to_string();
        Request {
            bytes: format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
            .into(),
            expect,
        }
    }
}

/// When a load stops: after a time, or once a number of requests have been sent.
#[derive(Clone, Copy)]
pub enum Until {
    Elapsed(Duration),
    Sent(usize),
}

/// Loads `GET http://addr/path` from `connections` clients for `duration`: see [`load_with`].
pub async fn load(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    load_with(
        addr,
        vec![Request::get(addr, path)],
        connections,
        Until::Elapsed(duration),
    )
    .await
}

/// Sends `requests` from `connections` clients (client `i` sends `requests[i % len]`) until
/// `until`, all on one thread of their own (as `wrk -t1`): one core's worth of load generator,
/// the rest of the machine left to the server measured. Measured on this 2-core machine, two
/// generator threads got 10 % fewer requests through our service (the generator's threads and
/// the server's contend for cores) and made no difference to Flask's.
pub async fn load_with(
    addr: SocketAddr,
    requests: Vec<Request>,
    connections: usize,
    until: Until,
) -> anyhow::Result<Load> {
    anyhow::ensure!(!requests.is_empty(), "no request to send");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("http-load".into())
        .spawn(move || {
            let run = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(clients(addr, requests, connections, until)));
            let _ = tx.send(run);
        })?;
    rx.await.context("the load thread died")?
}

async fn clients(
    addr: SocketAddr,
    requests: Vec<Request>,
    connections: usize,
    until: Until,
) -> anyhow::Result<Load> {
    let start = Instant::now();
    let (deadline, tickets) = match until {
        Until::Elapsed(d) => (Some(start + d), None),
        Until::Sent(n) => (None, Some(Arc::new(AtomicUsize::new(n)))),
    };
    // Takes one request's turn: false once the time is up or every request has been sent.
    let turn = move |tickets: &Option<Arc<AtomicUsize>>| match (deadline, tickets) {
        (Some(d), _) => Instant::now() < d,
        (None, Some(t)) => t
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok(),
        (None, None) => false,
    };
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..connections {
        let req = requests[i % requests.len()].clone();
        let tickets = tickets.clone();
        clients.spawn(async move {
            let mut conn = None;
            let mut latencies = Vec::new();
            let mut errors = 0;
            while turn(&tickets) {
                let t = Instant::now();
                match request(addr, &req.bytes, &mut conn).await {
                    Ok(status) if status == req.expect => {
                        latencies.push(t.elapsed().as_secs_f64() * 1e3)
                    }
                    Ok(_) => errors += 1,
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

/// `GET path` on a fresh connection: the status and the body.
pub async fn fetch(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut conn = Conn::open(addr).await?;
    let (status, _, n) = conn.exchange(&Request::get(addr, path).bytes).await?;
    Ok((status, conn.buf[..n].to_vec()))
}

/// Whether one `GET path` on a fresh connection answers 200.
pub async fn get_ok(addr: SocketAddr, path: &str) -> bool {
    request(addr, &Request::get(addr, path).bytes, &mut None)
        .await
        .is_ok_and(|s| s == 200)
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
