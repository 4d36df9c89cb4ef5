//! The inventory worker's handlers run by the real worker runtime, against a private Redis
//! and a real SQLite file: the health task (and its injected faults) and stock movements.
//!
//! With `TEST_DATABASE=postgres` the same tests run on PostgreSQL instead: each starts a
//! private server (`testkit::PostgresServer`, never the machine's own) with its own database.

use std::time::Duration;

use inventario::{Movimiento, Store, APLICAR_MOVIMIENTO, OBTENER_ESTADO};
use inventario_worker::{registry, Faults};
use serde_json::{json, Map, Value};
use shared::protocol::{ResultMeta, TaskState};
use shared::shutdown::CancellationToken;
use shared::worker::BUSINESS_PRIORITY;
use shared::{Client, Redis, SendOptions, Worker, WorkerConfig};
use testkit::{eventually, RedisServer};

const QUEUE: &str = "inventario";
const WAIT: Duration = Duration::from_secs(10);

/// A seeded database of its own: a SQLite file, or a database in a private PostgreSQL under
/// `TEST_DATABASE=postgres`; it lives as long as the value.
struct Base {
    _dir: tempfile::TempDir,
    _postgres: Option<testkit::PostgresServer>,
    store: Store,
}

impl Base {
    async fn nueva() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let en_postgres =
            std::env::var("TEST_DATABASE").is_ok_and(|v| v.eq_ignore_ascii_case("postgres"));
        let (postgres, url) = if en_postgres {
            let server = testkit::PostgresServer::start();
            let url = server.create_database();
            (Some(server), url)
        } else {
            let url = format!("sqlite://{}", dir.path().join("inventario.db").display());
            (None, url)
        };
        let store = Store::open(&url).await.unwrap();
        store.seed_default().await.unwrap();
        Base {
            _dir: dir,
            _postgres: postgres,
            store,
        }
    }
}

/// A private Redis, a seeded database, a client, and a worker with `faults`.
struct Harness {
    _base: Base,
    _server: RedisServer,
    store: Store,
    client: Client,
    token: CancellationToken,
    worker: tokio::task::JoinHandle<shared::Result<()>>,
}

impl Harness {
    async fn start(faults: Faults) -> Self {
        let base = Base::nueva().await;
        let store = base.store.clone();
        let server = RedisServer::start();
        let redis = Redis::from_url(&server.url()).unwrap();
        let config = WorkerConfig {
            hostname: "inventario@prueba".into(),
            queues: vec![QUEUE.into()],
            track_started: true,
            ..WorkerConfig::default()
        };
        let token = CancellationToken::new();
        let worker = tokio::spawn(
            Worker::new(redis.clone(), registry(store.clone(), faults), config).run(token.clone()),
        );
        Harness {
            _base: base,
            _server: server,
            store,
            client: Client::new(redis, QUEUE),
            token,
            worker,
        }
    }

    async fn run(&self, name: &str, args: Vec<Value>, kwargs: Map<String, Value>) -> ResultMeta {
        let options = SendOptions {
            priority: (name != OBTENER_ESTADO).then_some(BUSINESS_PRIORITY),
            ..SendOptions::default()
        };
        self.client
            .apply(name, args, kwargs, options)
            .await
            .unwrap()
            .wait(WAIT)
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.token.cancel();
        self.worker.await.unwrap().unwrap();
    }
}

fn kwargs(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn obtener_estado_checks_the_database_and_reports() {
    let h = Harness::start(Faults::none()).await;
    let meta = h.run(OBTENER_ESTADO, vec![], Map::new()).await;
    assert_eq!(meta.status, TaskState::Success);
    assert_eq!(
        meta.result,
        json!({
            "estado": "OK",
            "mensaje": "InventarioService responde correctamente - OK",
            "productos": 20,
            "hostname": "inventario@prueba",
        })
    );

    // The database stops answering: a task failure, and the worker lives on.
    h.store.close().await;
    let meta = h.run(OBTENER_ESTADO, vec![], Map::new()).await;
    assert_eq!(meta.status, TaskState::Failure);
    assert_eq!(
        meta.exception().unwrap().exc_type,
        "BaseDeDatosNoDisponible"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_rate_one_makes_every_health_check_fail() {
    let h = Harness::start(Faults {
        failure_rate: 1.0,
        ..Faults::none()
    })
    .await;
    for _ in 0..5 {
        let meta = h.run(OBTENER_ESTADO, vec![], Map::new()).await;
        assert_eq!(meta.status, TaskState::Failure);
        let e = meta.exception().unwrap();
        assert_eq!(
            (e.exc_type.as_str(), e.exc_module.as_deref()),
            ("FallaInyectada", Some("inventario"))
        );
    }
    // Only the health task is affected.
    let moved = h
        .run(
            APLICAR_MOVIMIENTO,
            vec![],
            kwargs(json!({"producto_id": 1, "tipo": "entrada", "cantidad": 1})),
        )
        .await;
    assert_eq!(moved.status, TaskState::Success);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_injected_delay_holds_the_answer_back() {
    let delay = Duration::from_millis(400);
    let h = Harness::start(Faults {
        delay_ms: delay.as_millis() as u64,
        ..Faults::none()
    })
    .await;
    let sent = chrono::Utc::now();
    let pending = h
        .client
        .apply(OBTENER_ESTADO, vec![], Map::new(), SendOptions::default())
        .await
        .unwrap();
    let id = pending.id().to_owned();
    // While the delay lasts the task is visibly running, not done.
    let started = eventually(WAIT, Duration::from_millis(10), || async {
        h.client.result(&id).state().await.unwrap().status == TaskState::Started
    })
    .await;
    assert!(started);
    let meta = pending.wait(WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Success);
    let done = shared::protocol::parse_datetime(meta.date_done.as_deref().unwrap()).unwrap();
    assert!(
        done - sent >= chrono::Duration::from_std(delay).unwrap(),
        "answered before the delay"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_injected_movement_delay_holds_the_movement_back() {
    let delay = Duration::from_millis(1500);
    let h = Harness::start(Faults {
        movement_delay_ms: delay.as_millis() as u64,
        ..Faults::none()
    })
    .await;
    let start = h.store.get(6).await.unwrap().cantidad;
    let sent = chrono::Utc::now();
    let pending = h
        .client
        .apply(
            APLICAR_MOVIMIENTO,
            vec![],
            kwargs(json!({"producto_id": 6, "tipo": "entrada", "cantidad": 5})),
            SendOptions {
                priority: Some(BUSINESS_PRIORITY),
                ..SendOptions::default()
            },
        )
        .await
        .unwrap();
    let id = pending.id().to_owned();
    // While the delay lasts the movement is running (held by the worker) and not applied.
    let started = eventually(WAIT, Duration::from_millis(10), || async {
        h.client.result(&id).state().await.unwrap().status == TaskState::Started
    })
    .await;
    assert!(started, "the movement starts");
    assert_eq!(h.store.get(6).await.unwrap().cantidad, start);
    // Only movements are slowed: the health task answers meanwhile.
    let estado = h.run(OBTENER_ESTADO, vec![], Map::new()).await;
    assert_eq!(estado.status, TaskState::Success);
    assert_eq!(h.store.get(6).await.unwrap().cantidad, start);
    let meta = pending.wait(WAIT).await.unwrap();
    assert_eq!(meta.status, TaskState::Success, "{meta:?}");
    assert_eq!(meta.result["cantidad_resultante"], start + 5);
    let done = shared::protocol::parse_datetime(meta.date_done.as_deref().unwrap()).unwrap();
    assert!(
        done - sent >= chrono::Duration::from_std(delay).unwrap(),
        "applied before the delay"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn movements_apply_or_fail_with_a_clear_reason() {
    let h = Harness::start(Faults::none()).await;
    let stock = |id| {
        let store = h.store.clone();
        async move { store.get(id).await.unwrap().cantidad }
    };
    let start = stock(6).await; // "Huevos de gallina (docena)", 60

    let ok = h
        .run(
            APLICAR_MOVIMIENTO,
            vec![],
            kwargs(json!({"producto_id": 6, "tipo": "salida", "cantidad": 10})),
        )
        .await;
    assert_eq!(ok.status, TaskState::Success);
    assert_eq!(ok.result["cantidad_resultante"], start - 10);

    // Positional arguments, as a Python caller may send them.
    let positional = h
        .run(
            APLICAR_MOVIMIENTO,
            vec![json!(6), json!("entrada"), json!(4)],
            Map::new(),
        )
        .await;
    assert_eq!(positional.result["cantidad_resultante"], start - 6);

    let cases = [
        (
            json!({"producto_id": 6, "tipo": "salida", "cantidad": 1000}),
            "StockInsuficiente",
        ),
        (
            json!({"producto_id": 9999, "tipo": "entrada", "cantidad": 1}),
            "ProductoNoEncontrado",
        ),
        (
            json!({"producto_id": 6, "tipo": "entrada", "cantidad": 2_000_000_000_i64}),
            "ValueError",
        ),
        (
            json!({"producto_id": 6, "tipo": "robo", "cantidad": 1}),
            "ValueError",
        ),
        (json!({"producto_id": 6, "tipo": "salida"}), "ValueError"),
        (
            json!({"producto_id": "seis", "tipo": "salida", "cantidad": 1}),
            "ValueError",
        ),
    ];
    for (args, exc_type) in cases {
        let meta = h
            .run(APLICAR_MOVIMIENTO, vec![], kwargs(args.clone()))
            .await;
        assert_eq!(meta.status, TaskState::Failure, "{args}");
        assert_eq!(meta.exception().unwrap().exc_type, exc_type, "{args}");
    }
    assert_eq!(
        stock(6).await,
        start - 6,
        "a failed movement changed the stock"
    );
    h.stop().await;
}

/// The queue delivers at least once: a movement delivered twice under the same task id
/// moves the stock once.
#[tokio::test]
async fn a_repeated_task_id_moves_the_stock_once() {
    let base = Base::nueva().await;
    let store = &base.store;
    let entrada = Movimiento::parse("entrada", 5).unwrap();
    let first = store.apply_movement("tarea-1", 1, &entrada).await.unwrap();
    let again = store.apply_movement("tarea-1", 1, &entrada).await.unwrap();
    assert!(!first.repetido && again.repetido);
    assert_eq!(again.cantidad_resultante, first.cantidad_resultante);
    assert_eq!(store.get(1).await.unwrap().cantidad, 240 + 5);
}
