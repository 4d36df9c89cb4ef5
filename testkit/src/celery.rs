//! Real Python Celery beside our code: the Python with Celery 5.5 that the test command
//! prepares, the repository's Python test scripts, and a Python Celery worker process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use shared::protocol::WorkerEvent;

use crate::process::Process;
use crate::queue::{wait_for_event, worker_events, Stack, QUEUE};

/// The repository's root, where the Python test scripts (`tests/python/`) and the default
/// virtualenv (`.venv/`) live.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the repository's root")
        .to_path_buf()
}

/// A Python with `celery` and `redis`: `$CELERY_PYTHON`, or `.venv/bin/python` at the
/// repository's root.
pub fn python() -> PathBuf {
    let p = std::env::var_os("CELERY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "no Python with Celery at {} (run scripts/test.sh, or set CELERY_PYTHON)",
        p.display()
    );
    p
}

/// Runs the repository's Python script `tests/python/<script>` with `args` (off the async
/// runtime), fails the test with its stderr if it fails, and returns what it printed: one JSON
/// value a line.
pub async fn run_script(script: &str, args: Vec<String>) -> Vec<serde_json::Value> {
    let path = repository().join("tests/python").join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(&path)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", path.display()))
    })
    .await
    .expect("the script's thread");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("the script prints UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{script} printed {l:?}: {e}")))
        .collect()
}

/// A Python Celery worker on `QUEUE`, up (its `worker-online` seen); killed when dropped.
pub struct PyWorker {
    _process: Process,
    /// Its `worker-online` event.
    pub online: WorkerEvent,
}

impl PyWorker {
    /// Runs `celery -A <app> worker -Q QUEUE <args>` in `dir` against the stack's Redis (given
    /// as `$CELERY_URL`, with `env` besides), and waits up to 30 s for it to come online.
    pub async fn start(
        stack: &Stack,
        dir: &Path,
        app: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        // Listen first, so that its worker-online is seen.
        let mut events = worker_events(&stack.redis).await;
        let process = Process::spawn(
            "celery worker",
            Command::new(python())
                .args(["-m", "celery", "-A", app, "worker", "-Q", QUEUE])
                .args(args)
                .arg("--loglevel=WARNING")
                .current_dir(dir)
                .env("CELERY_URL", stack.server.url())
                .envs(env.iter().copied())
                .stdout(Stdio::null()),
        );
        let online = wait_for_event(&mut events, "worker-online", Duration::from_secs(30)).await;
        PyWorker {
            _process: process,
            online,
        }
    }
}

/// Waits (up to 10 s) until the worker `hostname` listens for remote control: its member of
/// kombu's pidbox binding set is written once it has subscribed.
pub async fn wait_for_control(stack: &Stack, hostname: &str) {
    let member = shared::keys::pidbox_member(hostname);
    let listening = crate::eventually(Duration::from_secs(10), Duration::from_millis(10), || {
        let member = member.clone();
        async move {
            stack
                .server
                .cli(&["SISMEMBER", shared::keys::PIDBOX_BINDING, &member])
                == "1"
        }
    })
    .await;
    assert!(listening, "{hostname} never listened for remote control");
}
