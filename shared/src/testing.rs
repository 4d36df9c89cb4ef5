//! Test harness: a private `redis-server` per test (or per suite), on a unix socket or a free
//! loopback port in a temporary directory, with no persistence unless asked for, killed when
//! dropped. Tests run in parallel and never touch the Redis on 6379.
//!
//! Readiness is awaited by reading the server's own "Ready to accept connections" line, not by
//! sleeping.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `cond` holds, checking after every `step`, for at most `limit`; for states that
/// live in another process (Redis, a child) and announce nothing. Returns whether it held.
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

/// The path of a binary of this workspace (`inventario-worker`, `demo-worker`, ...), for tests
/// of one crate that need another crate's program as a real process. `cargo test --workspace`
/// has built it already; otherwise it is built here with the same cargo and profile.
pub fn workspace_binary(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries in target/<profile>.
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf();
    let path = profile_dir.join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--workspace", "--bin", name]);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    // Always ask cargo: it rebuilds only when the sources changed, so a stale binary is never used.
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build --bin {name} failed");
    assert!(path.exists(), "{} was not built", path.display());
    path
}
