//! The worker as a process: SIGTERM and SIGINT stop it gracefully (running tasks finish, the
//! rest stays queued, `worker-offline` is sent, exit status 0), and `--help` documents every
//! setting with its environment variable.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    assert_stopped_gracefully, business, spawn_demo_worker, wait_for_event, worker_events, Stack,
};
use serde_json::json;
use shared::keys;
use shared::testing::eventually;

async fn stops_gracefully_on(signal: &str) {
    let stack = Stack::new();
    let mut events = worker_events(&stack.redis).await;
    // Three slots: three tasks run, the rest wait.
    let mut worker = spawn_demo_worker(
        &stack.server.url(),
        "proc@test",
        &[("CONCURRENCY", "3")],
        Stdio::null(),
    );

    let mut running = Vec::new();
    for _ in 0..3 {
        running.push(
            stack
                .client
                .apply("sleep", vec![json!(700)], Default::default(), business())
                .await
                .unwrap(),
        );
    }
    // All three taken (held by the worker), none finished yet.
    let held = eventually(
        Duration::from_secs(10),
        Duration::from_millis(5),
        || async { stack.server.cli(&["HLEN", keys::UNACKED]) == "3" },
    )
    .await;
    assert!(held);
    for _ in 0..4 {
        stack
            .client
            .send_task("sleep", vec![json!(700)], Default::default(), business())
            .await
            .unwrap();
    }
    let status = Command::new("kill")
        .args([signal, &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || {
        let status = worker.0.wait();
        (status, worker)
    });
    let (status, _worker) = tokio::time::timeout(Duration::from_secs(20), exit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.unwrap().code(), Some(0), "exit 0 after {signal}");

    assert_stopped_gracefully(&stack, running, 4, None).await;
    let offline = wait_for_event(&mut events, "worker-offline", Duration::from_secs(5)).await;
    assert_eq!(offline.hostname, "proc@test");
    assert_eq!(offline.processed, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_running_tasks_and_exits_0() {
    stops_gracefully_on("-TERM").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_finishes_running_tasks_and_exits_0() {
    stops_gracefully_on("-INT").await;
}

#[test]
fn help_documents_settings_and_their_variables() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo-worker"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--redis-url",
        "REDIS_URL",
        "--queues",
        "QUEUE",
        "--concurrency",
        "CONCURRENCY",
        "REDIS_CA_CERT",
        "LEASE_TTL_SECS",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}
