//! The `inventario-worker` binary as a process: its settings come from the environment, two
//! replicas on one queue share the work, a bad fault setting is refused at start, and SIGTERM
//! ends it cleanly.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::future::join_all;
use inventario::OBTENER_ESTADO;
use serde_json::Map;
use shared::protocol::TaskState;
use shared::{Client, Redis, SendOptions};
use testkit::{workspace_binary, Process, RedisServer};

fn spawn_worker(server: &RedisServer, database_url: &str, hostname: &str, logs: &Path) -> Process {
    let mut cmd = Command::new(workspace_binary("inventario-worker"));
    cmd.env("REDIS_URL", server.url())
        .env("DATABASE_URL", database_url)
        .env("QUEUE", "inventario")
        .env("WORKER_HOSTNAME", hostname)
        .env("CONCURRENCY", "1")
        .env("URGENT_CONCURRENCY", "0")
        .env("FAULT_DELAY_MS", "150")
        .env("RUST_LOG", "warn");
    Process::start(hostname, &mut cmd, &logs.join(format!("{hostname}.log")))
}

async fn terminate(worker: &mut Process) -> std::process::ExitStatus {
    worker.signal(libc::SIGTERM);
    worker
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("{} exits after SIGTERM:\n{}", worker.name(), worker.log()))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_the_health_pings_and_stop_on_sigterm() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("inventario.db").display());
    let mut a = spawn_worker(&server, &database_url, "inventario@a", dir.path());
    let mut b = spawn_worker(&server, &database_url, "inventario@b", dir.path());

    // Each replica runs one task at a time (one slot, none reserved for pings) and each ping
    // takes 150 ms (FAULT_DELAY_MS), so twelve pings at once cannot all go to one of them.
    let client = Client::new(Redis::from_url(&server.url()).unwrap(), "inventario");
    let pings = (0..12).map(|_| async {
        client
            .apply(OBTENER_ESTADO, vec![], Map::new(), SendOptions::default())
            .await
            .unwrap()
            .wait(Duration::from_secs(20))
            .await
            .unwrap()
    });
    let metas = join_all(pings).await;
    let mut hosts = HashSet::new();
    for m in &metas {
        assert_eq!(m.status, TaskState::Success, "{m:?}");
        // Both opened the same file; whichever seeded, the other found it done.
        assert_eq!(m.result["productos"], 20);
        hosts.insert(m.result["hostname"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        hosts,
        HashSet::from(["inventario@a".to_owned(), "inventario@b".to_owned()])
    );

    assert!(terminate(&mut a).await.success());
    assert!(terminate(&mut b).await.success());
}

#[test]
fn a_failure_rate_outside_zero_to_one_is_refused_at_start() {
    let out = Command::new(workspace_binary("inventario-worker"))
        .env("FAULT_FAILURE_RATE", "1.5")
        .output()
        .expect("run inventario-worker");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FAULT_FAILURE_RATE") || stderr.contains("failure-rate"),
        "{stderr}"
    );
    assert!(stderr.contains("probabilidad"), "{stderr}");
}
