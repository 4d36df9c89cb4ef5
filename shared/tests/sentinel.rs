//! Redis behind Sentinel, with real processes (`testkit::Sentinels`: a master, a replica and
//! three sentinels): the handle finds the master through the sentinels and follows a failover
//! by itself, the old master back as a replica catches no write, `WAIT` makes a send fail when
//! no replica has it, and a wrong configuration is a clear error rather than a hang.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::json;
use shared::connection::{RedisConfig, SentinelUrl};
use shared::{Client, QueueError, Redis};
use testkit::queue::{self, RunningWorker, QUEUE};
use testkit::sentinel::wait_until;
use testkit::{eventually, Sentinels};

/// A handle on the deployment's master, through its sentinels.
fn through(set: &Sentinels) -> RedisConfig {
    RedisConfig {
        sentinel_master: Some(set.master_name().to_owned()),
        ..RedisConfig::new(set.url())
    }
}

/// The harness's calls block (they poll the sentinels): off the runtime's threads.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Tasks sent before the master is SIGKILLed (running, or still queued) and tasks sent after a
/// replica is promoted all run, and their results arrive through pub/sub: the client, the
/// worker's fetches and its blocking waits, and the result listener all follow the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_survive_a_failover_and_everyone_follows_the_new_master() {
    let mut set = blocking(Sentinels::start);
    let redis = Redis::open(through(&set)).expect("sentinel config");
    redis
        .ping()
        .await
        .expect("master found through the sentinels");
    let first = set.master_port();
    assert_eq!(redis.endpoint(), ("127.0.0.1".to_owned(), first));

    let client = Client::new(redis.clone(), QUEUE);
    // A long idle wait: a task picked up quickly when the worker is idle was woken by its
    // blocking wait (BLMOVE), not found by the fetch that follows a wait's timeout.
    let config = shared::WorkerConfig {
        idle_block: Duration::from_secs(10),
        ..queue::config()
    };
    let worker = RunningWorker::start(redis.clone(), demo_worker::registry(), config.clone());

    // Eight tasks that are still running when the master dies, and eight queued behind them.
    let mut before = Vec::new();
    for _ in 0..config.concurrency {
        before.push(send(&client, "sleep", vec![json!(1500)]).await);
    }
    assert!(
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async { queue::held_by(&redis, &worker.consumer).await == config.concurrency }
        )
        .await,
        "the worker never took its first tasks"
    );
    for i in 0..8 {
        before.push(send(&client, "add", vec![json!(i), json!(100)]).await);
    }
    // Everything this handle wrote is on the replica before the kill (WAIT on the connection
    // that wrote it); what the worker wrote there, its fetches, is checked on the replica.
    let acked: i64 = redis
        .run(|mut c| async move {
            redis::cmd("WAIT")
                .arg(1)
                .arg(2000)
                .query_async(&mut c)
                .await
        })
        .await
        .expect("WAIT");
    assert_eq!(acked, 1, "the replica did not acknowledge the sends");
    let replicated = blocking(|| {
        wait_until(|| set.replica().cli(&["HLEN", "unacked"]) == config.concurrency.to_string())
    });
    assert!(replicated, "the replica never held the worker's deliveries");

    let (old, killed) = set.kill_master();
    let new = blocking(|| set.wait_for_promotion(old));
    eprintln!("promoted after {:?}", killed.elapsed());

    let mut after = Vec::new();
    for i in 0..8 {
        // Sends fail while no master answers: the sender retries, as a caller of an outage.
        let mut tries = 0;
        let task = loop {
            match client
                .apply(
                    "add",
                    vec![json!(i), json!(200)],
                    Default::default(),
                    queue::business(),
                )
                .await
            {
                Ok(task) => break task,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("send after promotion failed ({e}); again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no send succeeded after the promotion: {e}"),
            }
        };
        if i == 0 {
            eprintln!("first send after the kill took {:?}", killed.elapsed());
        }
        after.push(task);
    }
    assert_eq!(redis.endpoint(), ("127.0.0.1".to_owned(), new));

    for (i, task) in before.into_iter().enumerate() {
        let value = task.get(Duration::from_secs(20)).await;
        let value = value.unwrap_or_else(|e| panic!("task {i} sent before the kill: {e}"));
        if i >= config.concurrency {
            assert_eq!(value, json!(i - config.concurrency + 100));
        }
    }
    for (i, task) in after.into_iter().enumerate() {
        let value = task
            .get(Duration::from_secs(20))
            .await
            .expect("task sent after");
        assert_eq!(value, json!(i + 200));
    }

    // Idle now, the worker waits on the new master: a task sent is taken at once.
    for _ in 0..3 {
        let started = Instant::now();
        let task = send(&client, "noop", vec![]).await;
        task.get(Duration::from_secs(20)).await.expect("noop");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "an idle worker took {:?} to see a task on the new master",
            started.elapsed()
        );
    }
    worker.stop().await.expect("worker stopped cleanly");
}

async fn send(client: &Client, name: &str, args: Vec<serde_json::Value>) -> shared::AsyncResult {
    client
        .apply(name, args, Default::default(), queue::business())
        .await
        .expect("send")
}

/// The old master, restarted, comes back as a replica of the promoted one: a handle that knew
/// it as master writes to the new master, never to it; a write that reaches a replica is
/// refused (READONLY), which the handle takes as "ask the sentinels again".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_master_back_as_a_replica_catches_no_write() {
    let mut set = blocking(Sentinels::start);
    let redis = Redis::open(through(&set)).expect("sentinel config");
    redis.ping().await.expect("master");
    let (old, _) = set.kill_master();
    let new = blocking(|| set.wait_for_promotion(old));
    blocking(|| set.restart(old));
    let demoted = blocking(|| {
        wait_until(|| {
            set.replica().port() == Some(old) && set.replica().cli(&["ROLE"]).starts_with("slave")
        })
    });
    assert!(demoted, "the old master never came back as a replica");

    // The handle's connection went to the old master: the write goes to the new one.
    redis
        .run(|mut c| async move { c.set::<_, _, ()>("after-restart", "nuevo").await })
        .await
        .expect("write after the failover");
    assert_eq!(redis.endpoint().1, new);
    assert_eq!(set.master().cli(&["GET", "after-restart"]), "nuevo");

    // A replica refuses writes, alone, in a pipeline or in a script, with errors the handle
    // recognises as "not a master".
    let replica = Redis::from_url(&format!("redis://127.0.0.1:{old}/0")).expect("url");
    let refusals = [
        replica
            .run(|mut c| async move { c.set::<_, _, ()>("k", "v").await })
            .await,
        replica
            .run(|mut c| async move {
                redis::pipe()
                    .lpush("q", "m")
                    .ignore()
                    .sadd("s", "m")
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await,
        replica
            .run(|mut c| async move {
                redis::Script::new("return redis.call('SET', KEYS[1], ARGV[1])")
                    .key("k")
                    .arg("v")
                    .invoke_async::<()>(&mut c)
                    .await
            })
            .await,
    ];
    for refusal in refusals {
        let error = refusal.expect_err("a replica took a write");
        assert!(error.is_not_master(), "not recognised as READONLY: {error}");
    }
    assert_eq!(set.replica().cli(&["EXISTS", "k"]), "0");
}

/// With `wait_replicas` 1 a send returns once the replica has the message; with the replica
/// frozen it fails with [`QueueError::NotReplicated`] after about the timeout, the message
/// being on the master all the same; with WAIT off the same send succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_makes_a_send_fail_when_no_replica_has_it() {
    let set = blocking(Sentinels::start);
    let timeout = Duration::from_millis(300);
    let acked = Redis::open(RedisConfig {
        wait_replicas: 1,
        wait_timeout: timeout,
        ..through(&set)
    })
    .expect("config");
    let acked_client = Client::new(acked.clone(), QUEUE);
    let plain_client = Client::new(Redis::open(through(&set)).expect("config"), QUEUE);

    let id = acked_client
        .send_task("noop", vec![], Default::default(), queue::business())
        .await
        .expect("send with the replica up");
    assert!(set
        .replica()
        .cli(&["LRANGE", &list(), "0", "-1"])
        .contains(&id));

    let pid = set.replica().pid().expect("replica runs") as i32;
    // SAFETY: a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let started = Instant::now();
    let sent = acked_client
        .send_task("noop", vec![], Default::default(), queue::business())
        .await;
    let took = started.elapsed();
    let plain = plain_client
        .send_task("noop", vec![], Default::default(), queue::business())
        .await;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };

    match sent {
        Err(QueueError::NotReplicated { wanted: 1, got: 0 }) => {}
        other => panic!("a send no replica acknowledged gave {other:?}"),
    }
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(1),
        "the failed send took {took:?} for a {timeout:?} WAIT"
    );
    let queued = set.master().cli(&["LLEN", &list()]);
    assert_eq!(
        queued, "3",
        "the master holds every message, the unacknowledged one too"
    );
    plain.expect("WAIT off: the same send succeeds");
}

fn list() -> String {
    shared::keys::queue_list(QUEUE, shared::worker::BUSINESS_PRIORITY)
}

/// A sentinel URL without a master name, or a master name with a plain URL, is refused when
/// the handle is made; a name the sentinels do not know fails the first command quickly with
/// an error that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sentinel_configuration_is_a_clear_error() {
    let no_name = Redis::open(RedisConfig::new("sentinel://127.0.0.1:26379"));
    match no_name {
        Err(QueueError::Config(why)) => assert!(why.contains("REDIS_SENTINEL_MASTER"), "{why}"),
        other => panic!("{:?}", other.err()),
    }
    let plain = Redis::open(RedisConfig {
        sentinel_master: Some("inventario".into()),
        ..RedisConfig::new("redis://127.0.0.1:6379/0")
    });
    match plain {
        Err(QueueError::Config(why)) => assert!(why.contains("not a sentinel://"), "{why}"),
        other => panic!("{:?}", other.err()),
    }

    let set = blocking(Sentinels::start);
    let unknown = Redis::open(RedisConfig {
        sentinel_master: Some("no-such-master".into()),
        ..RedisConfig::new(set.url())
    })
    .expect("well-formed");
    let started = Instant::now();
    let error = unknown.ping().await.expect_err("no such master");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let shown = error.to_string();
    assert!(shown.contains("no-such-master"), "{shown}");
    assert!(
        error.is_connection_error(),
        "handled as Redis down: {shown}"
    );
}

/// The password of a `sentinel://` URL is the data servers' (kombu's meaning): with it the
/// master found through the sentinels takes commands; without it, the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_in_a_sentinel_url_is_the_data_servers() {
    let set = blocking(|| {
        Sentinels::start_with(testkit::sentinel::SentinelOptions {
            password: Some("s3cret".into()),
            ..Default::default()
        })
    });
    let with = Redis::open(RedisConfig {
        sentinel_master: Some(set.master_name().to_owned()),
        ..RedisConfig::new(set.url().replace("sentinel://", "sentinel://:s3cret@"))
    })
    .expect("config");
    with.run(|mut c| async move { c.set::<_, _, ()>("k", "v").await })
        .await
        .expect("a write with the data servers' password");
    assert_eq!(set.master().cli(&["GET", "k"]), "v");

    let without = Redis::open(through(&set)).expect("config");
    let error = without.ping().await.expect_err("no password");
    eprintln!("without the password: {error}");
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

/// Sentinels with a `requirepass` of their own are reached with `REDIS_SENTINEL_PASSWORD`
/// (kombu's `sentinel_kwargs`), the data servers with the URL's password; without the
/// sentinels' password no master is found, and the error does not show either password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_with_a_password_of_their_own() {
    let set = blocking(|| {
        Sentinels::start_with(testkit::sentinel::SentinelOptions {
            password: Some("datos".into()),
            sentinel_password: Some("vigia".into()),
            ..Default::default()
        })
    });
    let url = set.url().replace("sentinel://", "sentinel://:datos@");
    let with = Redis::open(RedisConfig {
        sentinel_master: Some(set.master_name().to_owned()),
        sentinel_password: Some("vigia".into()),
        ..RedisConfig::new(url.clone())
    })
    .expect("config");
    with.run(|mut c| async move { c.set::<_, _, ()>("k", "v").await })
        .await
        .expect("a write through password-protected sentinels");
    assert_eq!(set.master().cli(&["GET", "k"]), "v");

    let without = Redis::open(RedisConfig {
        sentinel_master: Some(set.master_name().to_owned()),
        ..RedisConfig::new(url)
    })
    .expect("config");
    let error = without
        .ping()
        .await
        .expect_err("the sentinels refuse a client without their password");
    eprintln!("without the sentinels' password: {error}");
    let shown = error.to_string();
    assert!(
        !shown.contains("datos") && !shown.contains("vigia"),
        "{shown}"
    );
}

#[test]
fn sentinel_urls_are_read_as_kombu_writes_them() {
    let url = SentinelUrl::parse("sentinel://:s3cret@h1:26380/2;sentinel://h2;sentinel://[::1]:1")
        .expect("valid");
    assert_eq!(
        url.sentinels,
        vec![
            ("h1".to_owned(), 26380),
            ("h2".to_owned(), 26379),
            ("::1".to_owned(), 1)
        ]
    );
    assert_eq!(url.password.as_deref(), Some("s3cret"));
    assert_eq!(url.username, None);
    assert_eq!(url.db, 2);

    let user = SentinelUrl::parse("sentinel://app:p%40ss@h1:1/0").expect("valid");
    assert_eq!(user.username.as_deref(), Some("app"));
    assert_eq!(user.password.as_deref(), Some("p@ss"));

    for bad in [
        "sentinel://h1:1;redis://h2:2",
        "sentinel://:a@h1:1;sentinel://:b@h2:2",
        "sentinel://h1:1/1;sentinel://h2:2/2",
        "sentinel://h1:notaport",
        ";",
    ] {
        match SentinelUrl::parse(bad) {
            Err(QueueError::Config(why)) => assert!(!why.contains("s3cret"), "{why}"),
            other => panic!("{bad} → {other:?}"),
        }
    }
    // The database is the one the handle reports, whichever server serves it.
    let redis = Redis::open(RedisConfig {
        sentinel_master: Some("inventario".into()),
        ..RedisConfig::new("sentinel://127.0.0.1:1/3")
    })
    .expect("valid");
    assert_eq!(redis.db(), 3);
    assert_eq!(redis.endpoint(), ("127.0.0.1".to_owned(), 1));
    assert!(!Redis::open(RedisConfig {
        sentinel_master: Some("inventario".into()),
        sentinel_password: Some("s3cret".into()),
        ..RedisConfig::new("sentinel://:s3cret@127.0.0.1:1")
    })
    .expect("valid")
    .display_url()
    .contains("s3cret"));
}

/// WAIT's cost: send latency percentiles with WAIT off and on, same deployment, same run.
/// `cargo test -p shared --test sentinel --release -- --ignored --nocapture wait_latency`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn wait_latency() {
    let set = blocking(Sentinels::start);
    let off = Client::new(Redis::open(through(&set)).expect("config"), QUEUE);
    let on = Client::new(
        Redis::open(RedisConfig {
            wait_replicas: 1,
            ..through(&set)
        })
        .expect("config"),
        QUEUE,
    );
    for (name, client) in [("off", &off), ("on", &on), ("off", &off), ("on", &on)] {
        let mut took = Vec::new();
        for _ in 0..2000 {
            let started = Instant::now();
            client
                .send_task("noop", vec![], Default::default(), queue::business())
                .await
                .expect("send");
            took.push(started.elapsed());
        }
        took.sort();
        let at = |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)];
        println!(
            "WAIT {name}: {} sends, p50 {:?}, p99 {:?}, max {:?}",
            took.len(),
            at(0.50),
            at(0.99),
            took[took.len() - 1]
        );
        set.master().cli(&["DEL", &list()]);
    }
}
