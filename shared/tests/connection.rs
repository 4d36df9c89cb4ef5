//! Reaching Redis: passwords and ACL users in REDIS_URL, clear errors, and every component
//! carrying on and reconnecting by itself when Redis goes away and comes back.

use std::time::Duration;

use serde_json::json;
use shared::protocol::TaskState;
use shared::{Redis, SendOptions};
use testkit::queue::{business, config, RunningWorker, Stack, QUEUE};
use testkit::{RedisServer, ServerOptions};

#[tokio::test(flavor = "multi_thread")]
async fn password_and_acl_user_from_the_url() {
    let server = RedisServer::start_with(ServerOptions {
        tcp: true,
        password: Some("s3cret pass".replace(' ', "-")),
        ..Default::default()
    });
    let stack = Stack::on(server);
    assert!(
        stack.redis.display_url().contains(":***@"),
        "{}",
        stack.redis.display_url()
    );
    assert!(!stack.redis.display_url().contains("s3cret"));
    stack.redis.ping().await.unwrap();
    let worker = stack.worker(config());
    let r = stack
        .client
        .apply(
            "add",
            vec![json!(2), json!(3)],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.get(Duration::from_secs(10)).await.unwrap(), json!(5));
    worker.stop().await.unwrap();

    // An ACL user with its own password.
    stack.server.cli(&[
        "ACL",
        "SETUSER",
        "inventario",
        "on",
        ">clave-app",
        "~*",
        "&*",
        "+@all",
    ]);
    let port = stack.server.port().unwrap();
    let user =
        Redis::from_url(&format!("redis://inventario:clave-app@127.0.0.1:{port}/0")).unwrap();
    user.ping().await.unwrap();
    assert_eq!(
        user.display_url(),
        format!("redis://inventario:***@127.0.0.1:{port}/0")
    );

    let wrong = Redis::from_url(&format!("redis://:nope@127.0.0.1:{port}/0")).unwrap();
    let err = wrong.ping().await.unwrap_err().to_string();
    assert!(
        err.to_ascii_lowercase().contains("pass") || err.contains("WRONGPASS"),
        "{err}"
    );
    assert!(
        !err.contains("nope"),
        "the password is not in the error: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_at_start_and_restarted_under_load() {
    let mut server = RedisServer::start_with(ServerOptions {
        appendonly: true,
        ..Default::default()
    });
    server.kill();
    // Everything starts while Redis is down, and waits for it.
    let redis = Redis::from_url(&server.url()).unwrap();
    let worker = RunningWorker::start(redis.clone(), demo_worker::registry(), config());
    assert!(redis.ping().await.is_err());
    server.restart();
    let client = shared::Client::new(redis.clone(), QUEUE);
    let first = client
        .apply(
            "add",
            vec![json!(1), json!(1)],
            Default::default(),
            SendOptions::default(),
        )
        .await;
    let first = match first {
        Ok(r) => r,
        // The waiter's own connection may still be coming up: one retry.
        Err(_) => client
            .apply(
                "add",
                vec![json!(1), json!(1)],
                Default::default(),
                SendOptions::default(),
            )
            .await
            .unwrap(),
    };
    assert_eq!(first.get(Duration::from_secs(20)).await.unwrap(), json!(2));

    // Queue work, restart Redis (append-only: the queue survives), then the worker carries on.
    let mut ids = Vec::new();
    for i in 0..20 {
        let opts = SendOptions {
            countdown: Some(Duration::from_millis(300)),
            ..business()
        };
        ids.push(
            client
                .send_task("add", vec![json!(i), json!(1)], Default::default(), opts)
                .await
                .unwrap(),
        );
    }
    server.restart();
    for (i, id) in ids.iter().enumerate() {
        let meta = client
            .result(id)
            .wait(Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(
            (meta.status, meta.result),
            (TaskState::Success, json!(i + 1))
        );
    }
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_private_ca() {
    let server = RedisServer::start_with(ServerOptions {
        tls: true,
        ..Default::default()
    });
    let url = server.url();
    assert!(url.starts_with("rediss://"));
    let redis_config = shared::RedisConfig {
        ca_cert: Some(server.ca_cert()),
        ..shared::RedisConfig::new(&url)
    };
    let redis = Redis::open(redis_config).unwrap();
    redis.ping().await.unwrap();
    let worker = RunningWorker::start(redis.clone(), demo_worker::registry(), config());
    let client = shared::Client::new(redis.clone(), QUEUE);
    let r = client
        .apply(
            "add",
            vec![json!(20), json!(22)],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.get(Duration::from_secs(10)).await.unwrap(), json!(42));
    worker.stop().await.unwrap();

    // Without the CA the server's certificate is not trusted, and the error says so.
    let untrusted = Redis::from_url(&url).unwrap();
    assert!(untrusted.ping().await.is_err());
}

/// A Redis that may evict any key when full would lose queued and held messages: the worker
/// says so when it starts; with `noeviction` (Redis's default) or a `volatile-*` policy it
/// does not.
#[tokio::test]
async fn an_evicting_redis_is_reported() {
    let server = testkit::RedisServer::start();
    let redis = shared::Redis::from_url(&server.url()).unwrap();
    assert_eq!(redis.eviction_policy().await.as_deref(), Some("noeviction"));
    assert!(!redis.warn_if_evicting().await);
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]);
    assert!(!redis.warn_if_evicting().await);
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    assert!(redis.warn_if_evicting().await);
}
