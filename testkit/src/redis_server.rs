//! A private `redis-server` per test (or per suite), on a unix socket or a free loopback port
//! in a temporary directory, with no persistence unless asked for, killed when dropped. Tests
//! run in parallel and never touch the machine's own Redis.
//!
//! Readiness is awaited by reading the server's own "Ready to accept connections" line, not by
//! sleeping. [`RedisServer::fill_memory`] fills one to its `maxmemory`, for tests of what the
//! system does when Redis refuses writes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::net::free_port;

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Listen on a free 127.0.0.1 port (for programs that need TCP, like Python Celery).
    pub tcp: bool,
    /// `requirepass`.
    pub password: Option<String>,
    /// Append-only persistence in the temporary directory (survives [`RedisServer::restart`]).
    pub appendonly: bool,
    /// Serve TLS only, on the port, with a certificate signed by a fresh private CA
    /// (implies `tcp`); the CA's PEM file is at [`RedisServer::ca_cert`].
    pub tls: bool,
    /// More `redis-server` arguments.
    pub args: Vec<String>,
}

pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: Option<u16>,
    options: ServerOptions,
}

impl RedisServer {
    /// A server on a unix socket, no persistence.
    pub fn start() -> Self {
        Self::start_with(ServerOptions::default())
    }

    /// A server on a free loopback TCP port.
    pub fn start_tcp() -> Self {
        Self::start_with(ServerOptions {
            tcp: true,
            ..Default::default()
        })
    }

    pub fn start_with(options: ServerOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("redis-test-")
            .tempdir()
            .expect("temporary directory");
        let port = (options.tcp || options.tls).then(free_port);
        let mut server = RedisServer {
            child: None,
            dir,
            port,
            options,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut cmd = Command::new(&binary);
        if self.options.tls {
            self.make_certificates();
            let dir = self.dir.path();
            cmd.arg("--port").arg("0");
            cmd.arg("--tls-port")
                .arg(self.port.unwrap_or(0).to_string());
            cmd.arg("--tls-cert-file").arg(dir.join("server.crt"));
            cmd.arg("--tls-key-file").arg(dir.join("server.key"));
            cmd.arg("--tls-ca-cert-file").arg(dir.join("ca.crt"));
            cmd.arg("--tls-auth-clients").arg("no");
        } else {
            cmd.arg("--port").arg(self.port.unwrap_or(0).to_string());
        }
        cmd.arg("--bind")
            .arg("127.0.0.1")
            .arg("--unixsocket")
            .arg(self.socket())
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(if self.options.appendonly { "yes" } else { "no" })
            .arg("--logfile")
            .arg("")
            .arg("--daemonize")
            .arg("no");
        if let Some(pw) = &self.options.password {
            cmd.arg("--requirepass").arg(pw);
        }
        cmd.args(&self.options.args);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (install redis-server): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let ready = line
                        .to_ascii_lowercase()
                        .contains("ready to accept connections");
                    seen.push(line);
                    if ready {
                        break;
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!(
                        "redis-server exited before it was ready:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
        // Keep draining its output so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// A private CA and a server certificate for 127.0.0.1/localhost, made with `openssl`.
    fn make_certificates(&self) {
        let dir = self.dir.path();
        if dir.join("server.crt").exists() {
            return;
        }
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("write san.ext");
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl (install it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The CA certificate of a TLS server.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// A URL for our Rust code (`redis://` on TCP, `redis+unix://` on the socket), database 0.
    pub fn url(&self) -> String {
        self.url_db(0)
    }

    pub fn url_db(&self, db: u32) -> String {
        let auth = self
            .options
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        match self.port {
            Some(port) if self.options.tls => format!("rediss://{auth}127.0.0.1:{port}/{db}"),
            Some(port) => format!("redis://{auth}127.0.0.1:{port}/{db}"),
            None => {
                let pass = self
                    .options
                    .password
                    .as_ref()
                    .map(|p| format!("&pass={p}"))
                    .unwrap_or_default();
                format!("redis+unix://{}?db={db}{pass}", self.socket().display())
            }
        }
    }

    /// Runs `redis-cli` against this server with `args`, returning its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.arg("-s").arg(self.socket());
        if let Some(pw) = &self.options.password {
            cmd.arg("--no-auth-warning").arg("-a").arg(pw);
        }
        let out = cmd.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port/socket and directory (data survives only with
    /// `appendonly`).
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.socket());
        self.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The redis-server process's id while it runs (to freeze it with SIGSTOP, read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// What [`RedisServer::fill_memory`] left: Redis full, by how much.
#[derive(Debug, Clone, Copy)]
pub struct Full {
    /// Bytes written to the filler key.
    pub filler_bytes: u64,
    /// `used_memory` once full, bytes.
    pub used_memory: u64,
    /// The `maxmemory` in force now, bytes: `margin` under `used_memory`.
    pub maxmemory: u64,
}

impl RedisServer {
    /// Fills the server's memory to its `maxmemory` (start it with `--maxmemory` and
    /// `--maxmemory-policy noeviction`): writes 64 KiB fields into the hash `key` until Redis
    /// refuses one with OOM, then lowers `maxmemory` to `margin` bytes under what is used.
    /// Without the margin Redis would stand right at its limit, where memory moves a little all
    /// the time (client buffers grow and shrink; the refused write's own argument counted while
    /// it was read) and a small write slips in now and then; with it, every write that may grow
    /// memory is refused until something frees more than `margin`. `DEL key` frees it again.
    pub async fn fill_memory(&self, key: &str, margin: u64) -> Full {
        const CHUNK: usize = 64 * 1024;
        let pass = self
            .options
            .password
            .as_ref()
            .map(|p| format!("?pass={p}"))
            .unwrap_or_default();
        let url = format!("redis+unix://{}{pass}", self.socket().display());
        let mut con = redis::Client::open(url)
            .expect("the socket's URL")
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to fill Redis with");
        let maxmemory: u64 = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query_async::<Vec<String>>(&mut con)
            .await
            .expect("CONFIG GET maxmemory")
            .get(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(maxmemory > 0, "fill_memory needs a server with --maxmemory");
        // Many fields of one hash rather than one growing string: each piece is an allocation
        // of its own, so memory stops close to the limit (a string grows by doubling).
        let chunk = "x".repeat(CHUNK);
        let mut filler_bytes = 0u64;
        for field in 0u64.. {
            let written: redis::RedisResult<u64> = redis::cmd("HSET")
                .arg(key)
                .arg(field)
                .arg(&chunk)
                .query_async(&mut con)
                .await;
            match written {
                Ok(_) => filler_bytes += CHUNK as u64,
                Err(e) if e.code() == Some("OOM") => break,
                Err(e) => panic!("HSET {key}: {e}"),
            }
            // Far more than the limit yet no OOM: the policy evicts instead of refusing.
            assert!(
                filler_bytes <= 2 * maxmemory,
                "{filler_bytes} bytes written under a {maxmemory}-byte limit: \
                 is --maxmemory-policy noeviction?"
            );
        }
        let used_memory = used_memory(&mut con).await;
        let lowered = used_memory.saturating_sub(margin);
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(lowered)
            .query_async(&mut con)
            .await
            .expect("CONFIG SET maxmemory");
        Full {
            filler_bytes,
            used_memory,
            maxmemory: lowered,
        }
    }
}

/// `used_memory` from `INFO memory`, bytes.
async fn used_memory(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(con)
        .await
        .expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a private redis-server from async code, bounded in time. [`RedisServer::start`]
/// blocks its thread until the server prints its readiness line; run on a thread of its own,
/// a server that never prints it fails the test instead of hanging it (a tokio timeout cannot
/// interrupt a blocked thread).
pub async fn start_redis(tcp: bool) -> RedisServer {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let server = if tcp {
            RedisServer::start_tcp()
        } else {
            RedisServer::start()
        };
        // If the test gave up meanwhile, the server is dropped here, which kills it.
        let _ = tx.send(server);
    });
    tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("redis-server announces readiness within 20 s")
        .expect("redis-server could not start")
}
