//! The programs the bench runs: ours (built here), the seed's Python programs (Celery worker and
//! client, the Flask app under gunicorn, the seed-style monitor, with a Python found or installed
//! here), each killed with its whole process group when dropped; and what is read off them
//! (resident memory, timestamped output lines).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use tokio::sync::mpsc;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ lives in the workspace")
        .to_path_buf()
}

/// The Python Celery app's directory.
pub fn python_dir() -> PathBuf {
    workspace().join("bench/python")
}

/// A child process in its own process group, killed (group and all: Celery's prefork children,
/// gunicorn's workers) and reaped when dropped, so that an error or Ctrl-C leaves nothing behind.
pub struct KillOnDrop {
    child: Child,
    pub log: PathBuf,
}

/// A line a watched process printed, with the instant this process read it.
pub type Line = (Instant, String);

impl KillOnDrop {
    /// Starts `cmd` with its output going to a log file in the temporary directory.
    pub fn spawn(mut cmd: Command, name: &str) -> anyhow::Result<Self> {
        let log = log_path(name);
        let file = std::fs::File::create(&log).with_context(|| format!("{}", log.display()))?;
        cmd.stdout(file.try_clone()?).stderr(file);
        Self::start(cmd, name, log)
    }

    /// Starts `cmd` with its standard output and error read line by line as they come, each
    /// line stamped on arrival and sent on the channel (and copied to the log file).
    pub fn spawn_watched(
        mut cmd: Command,
        name: &str,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<Line>)> {
        let log = log_path(name);
        let file = std::fs::File::create(&log).with_context(|| format!("{}", log.display()))?;
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut proc = Self::start(cmd, name, log)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stdout = proc.child.stdout.take().context("piped stdout")?;
        let stderr = proc.child.stderr.take().context("piped stderr")?;
        watch(stdout, file.try_clone()?, tx.clone());
        watch(stderr, file, tx);
        Ok((proc, rx))
    }

    fn start(mut cmd: Command, name: &str, log: PathBuf) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("start {name}"))?;
        Ok(KillOnDrop { child, log })
    }

    /// Resident memory of the whole process group, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.usage().rss_bytes as f64 / (1024.0 * 1024.0)
    }

    /// Memory and CPU time of the whole process group.
    pub fn usage(&self) -> Usage {
        group_usage(self.child.id())
    }

    /// SIGKILL to the whole group, then reaps the leader; returns the instant of the signal.
    pub fn sigkill(&mut self) -> Instant {
        let at = Instant::now();
        self.kill_group();
        let _ = self.child.wait();
        at
    }

    fn kill_group(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this child leads (process_group(0)).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill_group();
        let _ = self.child.wait();
    }
}

/// Reads `from` line by line on a thread: each line is copied to `copy` and sent, stamped.
fn watch(
    from: impl std::io::Read + Send + 'static,
    mut copy: std::fs::File,
    tx: mpsc::UnboundedSender<Line>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let now = Instant::now();
            let _ = writeln!(copy, "{line}");
            if tx.send((now, line)).is_err() {
                break;
            }
        }
    });
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bench-{name}.log"))
}

/// Resident memory and CPU time used so far by a set of processes.
#[derive(Clone, Copy, Default)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu_secs: f64,
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces): index 0 is
/// the state, 2 the process group, 11 and 12 user and system time in clock ticks, 21 the
/// resident pages.
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

fn usage_of(fields: &[u64]) -> Usage {
    // SAFETY: sysconf has no preconditions.
    let (tick, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    Usage {
        rss_bytes: get(21) * page.max(1) as u64,
        cpu_secs: (get(11) + get(12)) as f64 / tick.max(1) as f64,
    }
}

/// The usage of one process.
pub fn process_usage(pid: u32) -> Usage {
    stat_fields(&pid.to_string()).map_or_else(Usage::default, |f| usage_of(&f))
}

/// The summed usage of every live process in process group `pgid`.
pub fn group_usage(pgid: u32) -> Usage {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Usage::default();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| stat_fields(&pid))
        .filter(|f| f.get(2) == Some(&u64::from(pgid)))
        .map(|f| usage_of(&f))
        .fold(Usage::default(), |a, u| Usage {
            rss_bytes: a.rss_bytes + u.rss_bytes,
            cpu_secs: a.cpu_secs + u.cpu_secs,
        })
}

/// Builds one of the workspace's binaries in the profile of this binary and returns its path
/// (with the features of a workspace build, so that after `cargo test --workspace` nothing is
/// rebuilt).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the bench's directory")?.to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--workspace", "--bin", name])
        .current_dir(workspace());
    // `cargo run` gives this process its package's variables; build scripts (ring's) watch
    // some of them, so passing them on would rebuild half the tree on every run.
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if var.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&var.as_ref())
            || ["CARGO_CRATE_NAME", "CARGO_BIN_NAME"].contains(&var.as_ref())
        {
            build.env_remove(var.as_ref());
        }
    }
    if dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    if !build.status().context("run cargo build")?.success() {
        bail!("cargo build --bin {name} failed");
    }
    let path = dir.join(name);
    anyhow::ensure!(path.exists(), "{} was not built", path.display());
    Ok(path)
}

/// Our worker: one `demo-worker` process with its default concurrency.
pub fn rust_worker(
    binary: &Path,
    url: &str,
    settings: &[(String, String)],
) -> anyhow::Result<KillOnDrop> {
    let mut cmd = Command::new(binary);
    for var in [
        "CONCURRENCY",
        "URGENT_CONCURRENCY",
        "PREFETCH_MULTIPLIER",
        "LEASE_TTL_SECS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("REDIS_URL", url)
        .env("QUEUE", crate::QUEUE)
        .env("WORKER_HOSTNAME", "bench-rust@localhost")
        .env("RUST_LOG", "warn")
        .envs(settings.iter().map(|(k, v)| (k, v)));
    KillOnDrop::spawn(cmd, "rust-worker")
}

/// A Python command run in `bench/python` against the Redis at `url`.
fn python_cmd(python: &Path, url: &str) -> Command {
    let mut cmd = Command::new(python);
    cmd.current_dir(python_dir())
        .env("CELERY_URL", url)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// The seed's design: `celery -A app worker -Q inventario -c 2 -P prefork`.
pub fn celery_worker(python: &Path, url: &str) -> anyhow::Result<KillOnDrop> {
    let mut cmd = python_cmd(python, url);
    cmd.args(["-m", "celery", "-A", "app", "worker", "-Q", crate::QUEUE])
        .args(["-c", "2", "-P", "prefork", "-n", "bench-celery@localhost"])
        .arg("--loglevel=WARNING");
    KillOnDrop::spawn(cmd, "celery-worker")
}

/// Celery's own client sending `n` tasks onto `queue`; returns the seconds it took.
pub fn celery_enqueue(python: &Path, url: &str, n: usize, queue: &str) -> anyhow::Result<f64> {
    let out = python_cmd(python, url)
        .arg("enqueue.py")
        .arg(n.to_string())
        .arg(queue)
        .stderr(Stdio::inherit())
        .output()
        .context("run enqueue.py")?;
    anyhow::ensure!(out.status.success(), "enqueue.py failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("enqueue.py output")?;
    v["seconds"].as_f64().context("enqueue.py: no seconds")
}

/// The seed's inventory service: the Flask app under gunicorn, one sync worker per core, on a
/// database seeded first (by importing the app once) so that the workers do not race to seed it.
pub fn flask(python: &Path, db: &Path, port: u16) -> anyhow::Result<KillOnDrop> {
    let seeded = Command::new(python)
        .args(["-c", "import flask_app"])
        .current_dir(python_dir())
        .env("INVENTARIO_DB", db)
        .status()
        .context("seed the Flask database")?;
    anyhow::ensure!(seeded.success(), "seeding the Flask database failed");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "gunicorn", "-w", "2", "--log-level", "warning", "-b"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("flask_app:app")
        .current_dir(python_dir())
        .env("INVENTARIO_DB", db)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    KillOnDrop::spawn(cmd, "flask")
}

/// The seed's monitor loop (`monitor.py`), its state changes read as they are printed.
pub fn python_monitor(
    python: &Path,
    url: &str,
) -> anyhow::Result<(KillOnDrop, mpsc::UnboundedReceiver<Line>)> {
    let mut cmd = python_cmd(python, url);
    cmd.arg("monitor.py").env("PYTHONUNBUFFERED", "1");
    KillOnDrop::spawn_watched(cmd, "python-monitor")
}

/// Whether `python` has what `bench/python/requirements.txt` lists.
fn has_requirements(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import celery, redis, flask, flask_sqlalchemy, gunicorn; \
             assert celery.__version__.startswith('5.5')",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The setup step: a Python with Celery 5.5, redis, Flask, Flask-SQLAlchemy and gunicorn:
/// `$CELERY_PYTHON`, or the project venv `.venv` (created and filled from
/// `bench/python/requirements.txt` when it lacks them).
pub fn python() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CELERY_PYTHON").map(PathBuf::from) {
        if has_requirements(&p) {
            return Ok(p);
        }
        eprintln!(
            "bench: $CELERY_PYTHON={} lacks bench/python/requirements.txt",
            p.display()
        );
    }
    let venv = workspace().join(".venv");
    let python = venv.join("bin/python");
    if has_requirements(&python) {
        return Ok(python);
    }
    eprintln!(
        "bench: installing bench/python/requirements.txt into {}",
        venv.display()
    );
    if !python.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("python3 -m venv")?
            .success();
        anyhow::ensure!(ok, "python3 -m venv failed (install python3-venv)");
    }
    let ok = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", "-r"])
        .arg(python_dir().join("requirements.txt"))
        .status()
        .context("pip install")?
        .success();
    anyhow::ensure!(
        ok && has_requirements(&python),
        "pip install -r bench/python/requirements.txt failed"
    );
    Ok(python)
}
