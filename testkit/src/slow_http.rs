//! Slow HTTP clients, for tests of the servers' timeouts and connection cap: clients that
//! trickle a request head a byte at a time, clients that connect and send nothing, clients
//! that keep a connection alive and idle after one answer, all at once, while ordinary requests
//! on fresh connections measure how well the server still answers.
//!
//! Requests are written by hand over a `TcpStream` (an HTTP client would never send half a
//! head), which also lets a test see the exact moment the server closes a connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How a slow client misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slow {
    /// Sends the start of a request head, then one more byte every `TRICKLE_EVERY`, never the
    /// blank line that ends it.
    Trickle,
    /// Connects and sends nothing.
    Silent,
    /// Sends a whole request, reads the whole answer, then keeps the connection open and idle.
    KeptAlive,
}

/// The pace of a [`Slow::Trickle`] client: faster than any timeout under test, so trickling
/// cannot pass for silence.
pub const TRICKLE_EVERY: Duration = Duration::from_millis(100);

/// Raises this process's soft limit of open files to `want` (at most the hard limit), so a
/// test's hundreds of sockets, and the servers it starts as children, fit.
pub fn raise_open_files(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}

/// Runs one slow client against `addr` (asking for `path` where it asks at all) and returns how
/// long the server kept its connection after the client went quiet: from the connection for
/// [`Slow::Trickle`] and [`Slow::Silent`], from the end of the answer for [`Slow::KeptAlive`].
/// `Err` if the server had not closed it after `limit`, or misbehaved.
pub async fn slow_client(
    addr: SocketAddr,
    kind: Slow,
    path: &str,
    limit: Duration,
) -> Result<Duration, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut since = Instant::now();
    match kind {
        Slow::Silent => {}
        Slow::Trickle => {
            let head = format!("GET {path} HTTP/1.1\r\nHost: prueba\r\nX-Lento: ");
            stream
                .write_all(head.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        Slow::KeptAlive => {
            let head = format!("GET {path} HTTP/1.1\r\nHost: prueba\r\n\r\n");
            stream
                .write_all(head.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            read_one_answer(&mut stream).await?;
            since = Instant::now();
        }
    }
    let deadline = since + limit;
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Ok(since.elapsed()),
                // An error answer (408, 400) before the close is fine: keep reading to the end.
                Ok(_) => {}
            },
            _ = tokio::time::sleep(TRICKLE_EVERY), if kind == Slow::Trickle => {
                if stream.write_all(b"a").await.is_err() {
                    return Ok(since.elapsed());
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("{kind:?}: still open after {limit:?}"));
            }
        }
    }
}

/// Reads one answer with a `Content-Length` body (what our services send to a plain GET).
async fn read_one_answer(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the answer ended".into());
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("no content-length in {head}"))?;
            if got.len() >= end + 4 + length {
                return Ok(got);
            }
        }
    }
}

/// One ordinary request on a fresh connection (`Connection: close`): its status, its body and
/// how long it took from connecting to the last byte.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String, Duration), String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: prueba\r\nConnection: close\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body, started.elapsed()))
}

/// What a siege of slow clients showed.
#[derive(Debug, Default)]
pub struct Siege {
    /// For each slow client, its kind and how long the server kept it (or why not).
    pub slow: Vec<(Slow, Result<Duration, String>)>,
    /// Each ordinary request made meanwhile: its latency, or what went wrong.
    pub probes: Vec<Result<Duration, String>>,
}

impl Siege {
    /// The longest time the server kept a slow client of `kind`; `None` if none was closed.
    pub fn longest_kept(&self, kind: Slow) -> Option<Duration> {
        self.slow
            .iter()
            .filter(|(k, _)| *k == kind)
            .filter_map(|(_, r)| r.as_ref().ok().copied())
            .max()
    }

    /// Slow clients the server did not close in time, with why.
    pub fn not_closed(&self) -> Vec<&String> {
        self.slow
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .collect()
    }

    /// The ordinary requests' latencies, sorted.
    pub fn latencies(&self) -> Vec<Duration> {
        let mut l: Vec<_> = self
            .probes
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        l.sort();
        l
    }

    /// "n=…, p50=… ms, p99=… ms, max=… ms" of the ordinary requests.
    pub fn latency_summary(&self) -> String {
        let l = self.latencies();
        if l.is_empty() {
            return "no ordinary request answered".into();
        }
        let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        format!(
            "n={}, p50={:.1} ms, p99={:.1} ms, max={:.1} ms",
            l.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        )
    }
}

/// Starts `per_kind` slow clients of each kind (given as pairs) against `addr`, all at once,
/// and meanwhile sends ordinary GETs of `probe_path`, one after the other on fresh connections,
/// until every slow client is done (closed by the server, or still open after `limit`). A probe
/// that fails is recorded, not retried: the server should answer every one.
pub async fn siege(
    addr: SocketAddr,
    kinds: &[(Slow, usize)],
    slow_path: &str,
    probe_path: &str,
    limit: Duration,
) -> Siege {
    let mut clients = tokio::task::JoinSet::new();
    for &(kind, n) in kinds {
        for _ in 0..n {
            let path = slow_path.to_owned();
            clients.spawn(async move { (kind, slow_client(addr, kind, &path, limit).await) });
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probing = tokio::spawn({
        let (stop, probe_path) = (std::sync::Arc::clone(&stop), probe_path.to_owned());
        async move {
            let mut probes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let probe = get(addr, &probe_path).await;
                probes.push(probe.and_then(|(status, body, took)| {
                    if status == 200 {
                        Ok(took)
                    } else {
                        Err(format!("{status}: {body}"))
                    }
                }));
            }
            probes
        }
    });
    let mut report = Siege::default();
    while let Some(done) = clients.join_next().await {
        report.slow.push(done.expect("the client task ran"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    report.probes = probing.await.expect("the probe task ran");
    report
}
