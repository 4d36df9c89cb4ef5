//! The programs the bench runs: our `demo-worker` (built here), the Python Celery worker and
//! Celery's own client (with a Python found or installed here), each killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

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

/// A child process killed (with its whole process group) and reaped when dropped, so that an
/// error or Ctrl-C leaves no worker behind (Celery's prefork children included).
pub struct KillOnDrop {
    child: Child,
    pub log: PathBuf,
}

impl KillOnDrop {
    fn spawn(mut cmd: Command, name: &str) -> anyhow::Result<Self> {
        let log = std::env::temp_dir().join(format!("bench-{name}.log"));
        let file = std::fs::File::create(&log).with_context(|| format!("{}", log.display()))?;
        use std::os::unix::process::CommandExt;
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = cmd.spawn().with_context(|| format!("start {name}"))?;
        Ok(KillOnDrop { child, log })
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this child leads (process_group(0)).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds `demo-worker` in the profile of this binary and returns its path (with the features of
/// a workspace build, so that after `cargo test --workspace` nothing is rebuilt).
pub fn demo_worker() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the bench's directory")?.to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--workspace", "--bin", "demo-worker"])
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
        bail!("cargo build --bin demo-worker failed");
    }
    let path = dir.join("demo-worker");
    anyhow::ensure!(path.exists(), "{} was not built", path.display());
    Ok(path)
}

/// Our worker: one `demo-worker` process with its default concurrency.
pub fn rust_worker(binary: &Path, url: &str) -> anyhow::Result<KillOnDrop> {
    let mut cmd = Command::new(binary);
    for var in ["CONCURRENCY", "URGENT_CONCURRENCY", "LEASE_TTL_SECS"] {
        cmd.env_remove(var);
    }
    cmd.env("REDIS_URL", url)
        .env("QUEUE", crate::QUEUE)
        .env("WORKER_HOSTNAME", "bench-rust@localhost")
        .env("RUST_LOG", "warn");
    KillOnDrop::spawn(cmd, "rust-worker")
}

/// The seed's design: `celery -A app worker -Q inventario -c 2 -P prefork`.
pub fn celery_worker(python: &Path, url: &str) -> anyhow::Result<KillOnDrop> {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "celery", "-A", "app", "worker", "-Q", crate::QUEUE])
        .args(["-c", "2", "-P", "prefork", "-n", "bench-celery@localhost"])
        .arg("--loglevel=WARNING")
        .current_dir(python_dir())
        .env("CELERY_URL", url)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    KillOnDrop::spawn(cmd, "celery-worker")
}

/// Celery's own client sending `n` tasks onto `queue`; returns the seconds it took.
pub fn celery_enqueue(python: &Path, url: &str, n: usize, queue: &str) -> anyhow::Result<f64> {
    let out = Command::new(python)
        .arg("enqueue.py")
        .arg(n.to_string())
        .arg(queue)
        .current_dir(python_dir())
        .env("CELERY_URL", url)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stderr(Stdio::inherit())
        .output()
        .context("run enqueue.py")?;
    anyhow::ensure!(out.status.success(), "enqueue.py failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("enqueue.py output")?;
    v["seconds"].as_f64().context("enqueue.py: no seconds")
}

fn has_celery(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import celery, redis; assert celery.__version__.startswith('5.5')",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The setup step: a Python with Celery 5.5 and redis: `$CELERY_PYTHON`, or the project venv
/// `.venv` (created and filled from `bench/python/requirements.txt` when it lacks them).
pub fn python() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CELERY_PYTHON").map(PathBuf::from) {
        if has_celery(&p) {
            return Ok(p);
        }
        eprintln!("bench: $CELERY_PYTHON={} has no Celery 5.5", p.display());
    }
    let venv = workspace().join(".venv");
    let python = venv.join("bin/python");
    if has_celery(&python) {
        return Ok(python);
    }
    eprintln!("bench: installing Celery 5.5 into {}", venv.display());
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
        ok && has_celery(&python),
        "pip install of Celery 5.5 failed"
    );
    Ok(python)
}
