//! The worker as a process: SIGTERM and SIGINT stop it gracefully (running tasks finish, the
//! rest stays queued, `worker-offline` is sent, exit status 0), and `--help` documents every
//! setting with its environment variable.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Stack, QUEUE};
use futures_util::StreamExt;
use serde_json::json;
use shared::protocol::{TaskState, WorkerEvent};
use shared::testing::eventually;
use shared::{keys, SendOptions};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(url: &str) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_demo-worker"))
            .env("REDIS_URL", url)
            .env("QUEUE", QUEUE)
            .env("CONCURRENCY", "3")
            .env("WORKER_HOSTNAME", "proc@test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start demo-worker"),
    )
}

async fn stops_gracefully_on(signal: &str) {
    let stack = Stack::new();
    let mut pubsub = stack.redis.pubsub().await.unwrap();
    pubsub
        .psubscribe(keys::worker_events_pattern(0))
        .await
        .unwrap();
    let mut events = pubsub.into_on_message();
    let mut worker = spawn_worker(&stack.server.url());

    let business = SendOptions {
        priority: Some(6),
        ..SendOptions::default()
    };
    let mut running = Vec::new();
    for _ in 0..3 {
        running.push(
            stack
                .client
                .apply(
                    "sleep",
                    vec![json!(700)],
                    Default::default(),
                    business.clone(),
                )
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
            .send_task(
                "sleep",
                vec![json!(700)],
                Default::default(),
                business.clone(),
            )
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

    for r in running {
        assert_eq!(
            r.state().await.unwrap().status,
            TaskState::Success,
            "running tasks finished"
        );
    }
    assert_eq!(
        stack.client.broker().queue_len(QUEUE).await.unwrap(),
        4,
        "queued tasks stay for the next worker"
    );
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    assert_eq!(
        stack.server.cli(&["ZCARD", keys::CONSUMERS]),
        "0",
        "lease given up"
    );
    let offline = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = events.next().await {
            let e = WorkerEvent::decode(msg.get_payload_bytes()).unwrap();
            if e.kind == "worker-offline" {
                return e;
            }
        }
        panic!("no events");
    })
    .await
    .expect("worker-offline sent");
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
