//! A private `redis-server` per test (or per suite), on a unix socket or a free loopback port
//! in a temporary directory, with no persistence unless asked for, killed when dropped. Tests
//! run in parallel and never touch the machine's own Redis.
//!
//! Readiness is awaited by reading the server's own "Ready to accept connections" line, not by
//! sleeping.

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
