//! `demo-worker` processes: workers with the demonstration tasks as real programs, to kill
//! with SIGKILL or stop with SIGTERM, and what their JSON logs say they did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{json_log, workspace_binary, Process};
use crate::queue::QUEUE;

/// Settings of the worker binary that a test gives explicitly or not at all: they are removed
/// from the inherited environment, so whatever this shell exports cannot change a test.
const WORKER_SETTINGS: [&str; 8] = [
    "LEASE_TTL_SECS",
    "CONCURRENCY",
    "URGENT_CONCURRENCY",
    "PREFETCH_MULTIPLIER",
    "SHUTDOWN_TIMEOUT_SECS",
    "RESULT_EXPIRES_SECS",
    "MAX_MESSAGE_BYTES",
    "REDIS_POOL_SIZE",
];

/// Starts a `demo-worker` named `hostname` on `QUEUE` against `url`, with `env` on top of the
/// binary's defaults, logging JSON lines (`info`) to `<dir>/<hostname>.log`. The process's
/// name is its node name.
pub fn spawn_demo_worker(url: &str, hostname: &str, env: &[(&str, &str)], dir: &Path) -> Process {
    let mut cmd = Command::new(workspace_binary("demo-worker"));
    for var in WORKER_SETTINGS {
        cmd.env_remove(var);
    }
    cmd.env("REDIS_URL", url)
        .env("QUEUE", QUEUE)
        .env("WORKER_HOSTNAME", hostname)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    Process::start(hostname, &mut cmd, &dir.join(format!("{hostname}.log")))
}

/// Messages the worker processes logged as requeued from dead consumers (their JSON logs).
pub fn requeued_in_logs(logs: &[PathBuf]) -> u64 {
    logs.iter()
        .flat_map(|log| json_log(log))
        .filter(|v| v["message"] == "recovered the messages of dead consumers")
        .filter_map(|v| v["requeued"].as_u64())
        .sum()
}

/// How many times each task ran to a successful end, by task id, from the workers' JSON logs.
/// The workers must run with `RUST_LOG=info,shared::worker::executor=debug` (see
/// [`COUNT_RUNS`]), which logs `task succeeded` with the id once per run, before the result is
/// handed on: a run whose result never reached Redis (its worker was killed) is counted too,
/// and that is exactly what at-least-once delivery may repeat.
pub fn runs_in_logs(logs: &[PathBuf]) -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for v in logs.iter().flat_map(|log| json_log(log)) {
        if v["message"] == "task succeeded" {
            if let Some(id) = v["id"].as_str() {
                *runs.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    runs
}

/// The log filter under which [`runs_in_logs`] can count the runs of each task.
pub const COUNT_RUNS: (&str, &str) = ("RUST_LOG", "info,shared::worker::executor=debug");
