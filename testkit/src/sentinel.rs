//! A private Redis Sentinel deployment: a master, one replica and three `redis-sentinel`
//! processes on free loopback ports, as an operator runs it in production, for tests of what
//! the system does when the master dies and a replica is promoted.
//!
//! [`Sentinels::start`] returns only once every sentinel knows the replica and the two other
//! sentinels: before that a failover could not be authorised (a majority of sentinels must
//! elect a leader) and a test of one would wait for nothing.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::net::free_port;
use crate::redis_server::{RedisServer, ServerOptions};

/// The name the sentinels monitor the master under (`REDIS_SENTINEL_MASTER`).
pub const MASTER_NAME: &str = "inventario";

/// How long a start-up, a failover or an old master's return may take before the harness gives
/// up. Sentinels discover each other every 2 s and need a few rounds. The slowest is the
/// return: a sentinel turns a restarted old master into a replica only once it has answered for
/// 8 s and reported its role in an INFO, which it is asked for every 10 s, so it takes 8 to 18 s
/// and more on a loaded machine; 30 s was once not enough in a run of the whole suite.
const PATIENCE: Duration = Duration::from_secs(60);

/// What a [`Sentinels`] deployment runs with.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// `down-after-milliseconds`: how long the master must be silent before a sentinel calls it
    /// down. Production runs 5–30 s; tests want a failover in about a second.
    pub down_after_ms: u64,
    /// `requirepass` of the master and the replica (sentinels reach them with it too).
    pub password: Option<String>,
    /// The sentinels' own `requirepass` (they use it with each other too).
    pub sentinel_password: Option<String>,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        SentinelOptions {
            down_after_ms: 1_000,
            password: None,
            sentinel_password: None,
        }
    }
}

struct SentinelProcess {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    /// The last lines the sentinel logged, for a failing test to show what it decided.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// Lines of each sentinel's log kept for [`Sentinels::logs`].
const LOG_LINES: usize = 200;

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A master, a replica and three sentinels, killed when dropped.
pub struct Sentinels {
    /// The two data servers; which one is master changes with failovers.
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
    options: SentinelOptions,
}

impl Sentinels {
    pub fn start() -> Self {
        Self::start_with(SentinelOptions::default())
    }

    pub fn start_with(options: SentinelOptions) -> Self {
        let data = |args: Vec<String>| {
            let mut args = args;
            if let Some(pw) = &options.password {
                // A replica (and a demoted master) authenticates to its master with it.
                args.extend(["--masterauth".to_owned(), pw.clone()]);
            }
            RedisServer::start_with(ServerOptions {
                tcp: true,
                password: options.password.clone(),
                args,
                ..Default::default()
            })
        };
        let master = data(vec![]);
        let master_port = master.port().expect("tcp");
        let replica = data(vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            master_port.to_string(),
        ]);
        let mut set = Sentinels {
            servers: vec![master, replica],
            sentinels: Vec::new(),
            options,
        };
        set.wait(|s| {
            s.servers[1]
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        })
        .then_some(())
        .expect("the replica never synced with the master");
        for _ in 0..3 {
            let sentinel = set.spawn_sentinel(master_port);
            set.sentinels.push(sentinel);
        }
        let ready = set.wait(|s| {
            s.sentinel_ports().iter().all(|&port| {
                let info = s.cli(port, &["SENTINEL", "MASTER", MASTER_NAME]);
                field(&info, "num-slaves") == Some("1")
                    && field(&info, "num-other-sentinels") == Some("2")
            })
        });
        assert!(
            ready,
            "the sentinels never all saw the replica and each other"
        );
        set
    }

    fn spawn_sentinel(&self, master_port: u16) -> SentinelProcess {
        let dir = tempfile::Builder::new()
            .prefix("sentinel-test-")
            .tempdir()
            .expect("temporary directory");
        let port = free_port();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
             sentinel failover-timeout {MASTER_NAME} 10000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.path().display(),
            down = self.options.down_after_ms,
        );
        if let Some(pw) = &self.options.password {
            conf.push_str(&format!("sentinel auth-pass {MASTER_NAME} {pw}\n"));
        }
        if let Some(pw) = &self.options.sentinel_password {
            conf.push_str(&format!("requirepass {pw}\nsentinel sentinel-pass {pw}\n"));
        }
        // Sentinel rewrites its configuration file as it learns, so each has its own.
        let path = dir.path().join("sentinel.conf");
        std::fs::write(&path, conf).expect("write sentinel.conf");
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut child = Command::new(&binary)
            .arg(&path)
            .arg("--sentinel")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} --sentinel: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let monitoring = line.contains("+monitor master");
                    seen.push(line);
                    if monitoring {
                        break;
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!("redis-sentinel exited at start:\n{}", seen.join("\n"));
                }
            }
        }
        let log = Arc::new(Mutex::new(VecDeque::from(seen)));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = kept.lock().expect("sentinel log");
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        SentinelProcess {
            child,
            port,
            _dir: dir,
            log,
        }
    }

    /// `REDIS_URL` in kombu's form: `sentinel://127.0.0.1:p1;sentinel://127.0.0.1:p2;…`.
    pub fn url(&self) -> String {
        self.sentinel_ports()
            .iter()
            .map(|p| format!("sentinel://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// `REDIS_SENTINEL_MASTER`.
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// The last lines of every sentinel's log, each under its port: what a failing test shows
    /// to say why a failover or a return did not happen.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for s in &self.sentinels {
            text.push_str(&format!("--- sentinel {}\n", s.port));
            for line in s.log.lock().expect("sentinel log").iter() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The master's port as the first sentinel that answers reports it.
    pub fn master_port(&self) -> u16 {
        for port in self.sentinel_ports() {
            let reply = self.cli(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
            if let Some(p) = reply.lines().nth(1).and_then(|l| l.trim().parse().ok()) {
                return p;
            }
        }
        panic!("no sentinel reports a master");
    }

    /// The data server that is master now.
    pub fn master(&self) -> &RedisServer {
        self.on_port(self.master_port())
    }

    /// The data server that is a replica now.
    pub fn replica(&self) -> &RedisServer {
        let port = self.master_port();
        self.servers
            .iter()
            .find(|s| s.port() != Some(port))
            .expect("two data servers")
    }

    /// SIGKILLs the master; returns when it is gone, and the old master's port.
    pub fn kill_master(&mut self) -> (u16, Instant) {
        let port = self.master_port();
        self.on_port_mut(port).kill();
        (port, Instant::now())
    }

    /// Waits until the sentinels name a master other than `old_port`, and that server says it
    /// is one; returns the new master's port.
    pub fn wait_for_promotion(&self, old_port: u16) -> u16 {
        let promoted = self.wait(|s| {
            let port = s.master_port();
            port != old_port
                && s.servers.iter().any(|srv| {
                    srv.port() == Some(port)
                        && srv.is_running()
                        && srv.cli(&["ROLE"]).starts_with("master")
                })
        });
        assert!(promoted, "no replica was promoted after the master died");
        self.master_port()
    }

    /// Starts the server on `port` again (after [`Sentinels::kill_master`]): the sentinels turn
    /// it into a replica of the new master.
    pub fn restart(&mut self, port: u16) {
        self.on_port_mut(port).restart();
    }

    /// The data server on `port`, which must be one of this deployment's.
    fn on_port(&self, port: u16) -> &RedisServer {
        self.servers
            .iter()
            .find(|s| s.port() == Some(port))
            .expect("a data server of this deployment")
    }

    fn on_port_mut(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|s| s.port() == Some(port))
            .expect("a data server of this deployment")
    }

    /// `redis-cli` against one of this deployment's sentinels.
    fn cli(&self, port: u16, args: &[&str]) -> String {
        sentinel_cli_as(port, self.options.sentinel_password.as_deref(), args)
    }

    fn wait(&self, cond: impl Fn(&Self) -> bool) -> bool {
        wait_until(|| cond(self))
    }
}

/// Polls `cond` every 50 ms for up to 30 s (a sentinel announces nothing a test can await).
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Runs `redis-cli` against the sentinel on `port`.
pub fn sentinel_cli(port: u16, args: &[&str]) -> String {
    sentinel_cli_as(port, None, args)
}

/// [`sentinel_cli`] with the sentinels' password, when they have one.
pub fn sentinel_cli_as(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    if let Some(pw) = password {
        cmd.args(["--no-auth-warning", "-a", pw]);
    }
    let out = cmd
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// A field of a `SENTINEL MASTER` reply, which redis-cli prints as alternate name and value lines.
fn field<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let lines: Vec<&str> = reply.lines().map(str::trim).collect();
    lines
        .iter()
        .position(|l| *l == name)
        .and_then(|i| lines.get(i + 1).copied())
}
