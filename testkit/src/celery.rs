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
