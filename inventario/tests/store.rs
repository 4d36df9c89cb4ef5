//! The store's guarantees, each checked on both databases: a SQLite file in a temporary
//! directory and a database of a private PostgreSQL server (`testkit::PostgresServer`; the
//! PostgreSQL half skips with a message where PostgreSQL is not installed and `CI` is unset).
//!
//! Several `Store`s on one database stand for several processes (service instances, workers):
//! each has its own pool, so their writes race as separate processes' would.

use std::sync::Arc;

use futures_util::future::join_all;
use inventario::store::{Backend, PoolConfig};
use inventario::{
    Movimiento, NuevoProducto, Pedido, PedidoMovimiento, Precondicion, Store, StoreError,
};

/// Where a test's database lives; held only to be dropped (server stopped, files removed)
/// with the test.
#[allow(dead_code)]
enum Lugar {
    Archivo(tempfile::TempDir),
    Servidor(testkit::PostgresServer),
}

/// A fresh, empty database of the given kind and its URL; `None` when PostgreSQL is missing.
fn base(postgres: bool) -> Option<(Lugar, String)> {
    if postgres {
        let server = testkit::PostgresServer::start_or_skip()?;
        let url = server.create_database();
        Some((Lugar::Servidor(server), url))
    } else {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("inventario.db").display());
        Some((Lugar::Archivo(dir), url))
    }
}

/// Each check below runs as `<name>::sqlite` and `<name>::postgres`.
macro_rules! en_ambas {
    ($($nombre:ident),* $(,)?) => {$(
        mod $nombre {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let (_lugar, url) = super::base(false).expect("a SQLite file");
                super::$nombre(&url, false).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some((_lugar, url)) = super::base(true) else { return };
                super::$nombre(&url, true).await;
            }
        }
    )*};
}

en_ambas!(
    opens_on_the_right_database_and_migrates_once,
    several_processes_starting_together_seed_once,
    concurrent_movements_from_several_processes_stay_exact,
    a_task_id_delivered_many_times_applies_once,
    movement_requests_are_recorded_once_per_key,
    versions_refuse_writes_from_an_older_read,
    the_cached_list_follows_other_processes_writes,
    the_schema_refuses_what_validation_refuses,
    the_pool_gives_up_after_its_timeouts,
);

fn producto(nombre: &str, cantidad: i64) -> NuevoProducto {
    NuevoProducto::parse(nombre, cantidad, 1.5).unwrap()
}

fn mov(tipo: &str, cantidad: i64) -> Movimiento {
    Movimiento::parse(tipo, cantidad).unwrap()
}

async fn opens_on_the_right_database_and_migrates_once(url: &str, postgres: bool) {
    let store = Store::open(url).await.unwrap();
    assert_eq!(store.is_postgres(), postgres);
    assert_eq!(
        matches!(store.backend(), Backend::Postgres(_)),
        postgres,
        "{url}"
    );
    store.ping().await.unwrap();
    // Opening again finds the schema current; the data stays.
    store.seed_default().await.unwrap();
    let again = Store::open(url).await.unwrap();
    assert_eq!(again.count().await.unwrap(), 20);
    let p = again.get(1).await.unwrap();
    assert_eq!((p.id, p.version), (1, 1));
    assert!(
        p.creado_en.ends_with('Z') && p.creado_en.len() == "2026-01-05T10:00:00.000Z".len(),
        "RFC 3339 in UTC with milliseconds: {}",
        p.creado_en
    );
    assert!(matches!(
        Store::open("mysql://localhost/x").await,
        Err(StoreError::UrlDesconocida)
    ));
}

async fn several_processes_starting_together_seed_once(url: &str, _: bool) {
    let aperturas = (0..6).map(|_| async {
        let store = Store::open(url).await.unwrap();
        store.seed_default().await.unwrap()
    });
    let sembrados: u64 = join_all(aperturas).await.into_iter().sum();
    assert_eq!(
        sembrados, 20,
        "one process seeded, the others found it done"
    );
    let store = Store::open(url).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 20);
    // Once seeded, emptied stays empty.
    for p in store.list(Default::default()).await.unwrap() {
        store.delete(p.id, Precondicion::Ninguna).await.unwrap();
    }
    assert_eq!(store.seed_default().await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), 0);
}

async fn concurrent_movements_from_several_processes_stay_exact(url: &str, _: bool) {
    let config = PoolConfig {
        max_connections: 4,
        ..PoolConfig::default()
    };
    let mut procesos = Vec::new();
    for _ in 0..4 {
        procesos.push(Store::open_with(url, config).await.unwrap());
    }
    let id = procesos[0].create(&producto("Sal", 100)).await.unwrap().id;
    // 100 entradas of 3 and 100 salidas of 1 spread over the four: every salida fits in any
    // order, so all apply and the sum is exact.
    let envios = (0..200).map(|i| {
        let store = procesos[i % 4].clone();
        async move {
            let m = if i % 2 == 0 {
                mov("entrada", 3)
            } else {
                mov("salida", 1)
            };
            store.apply_movement(&format!("t{i}"), id, &m).await
        }
    });
    for r in join_all(envios).await {
        assert!(!r.unwrap().repetido);
    }
    assert_eq!(procesos[1].get(id).await.unwrap().cantidad, 300);
    assert_eq!(procesos[2].get(id).await.unwrap().version, 201);

    // 50 salidas of 7 on 300: exactly 42 fit; the stock never goes below zero.
    let salidas = (0..50).map(|i| {
        let store = procesos[i % 4].clone();
        async move {
            store
                .apply_movement(&format!("s{i}"), id, &mov("salida", 7))
                .await
        }
    });
    let resultados = join_all(salidas).await;
    let ok = resultados.iter().filter(|r| r.is_ok()).count();
    let insuficiente = resultados
        .iter()
        .filter(|r| matches!(r, Err(StoreError::StockInsuficiente { .. })))
        .count();
    assert_eq!((ok, insuficiente), (42, 8), "{resultados:?}");
    assert_eq!(procesos[3].get(id).await.unwrap().cantidad, 6);
    // A refused movement leaves no record: its task id can still be applied later.
    let fallida = resultados.iter().position(|r| r.is_err()).unwrap();
    let otra = procesos[0]
        .apply_movement(&format!("s{fallida}"), id, &mov("entrada", 1))
        .await
        .unwrap();
    assert_eq!((otra.cantidad_resultante, otra.repetido), (7, false));
    // Past the maximum: refused, unchanged.
    let tope = procesos[0]
        .apply_movement("tope", id, &mov("entrada", inventario::MAX_CANTIDAD))
        .await;
    assert!(
        matches!(tope, Err(StoreError::LimiteExcedido { .. })),
        "{tope:?}"
    );
    assert!(matches!(
        procesos[0]
            .apply_movement("nadie", 999_999, &mov("entrada", 1))
            .await,
        Err(StoreError::NoEncontrado(999_999))
    ));
}

async fn a_task_id_delivered_many_times_applies_once(url: &str, _: bool) {
    let a = Store::open(url).await.unwrap();
    let b = Store::open(url).await.unwrap();
    let id = a.create(&producto("Arroz", 10)).await.unwrap().id;
    let entregas = (0..10).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            store
                .apply_movement("pedido-1", id, &mov("salida", 4))
                .await
                .unwrap()
        }
    });
    let resultados = join_all(entregas).await;
    assert_eq!(resultados.iter().filter(|r| !r.repetido).count(), 1);
    for r in &resultados {
        assert_eq!(
            r.cantidad_resultante, 6,
            "every copy reports the first outcome"
        );
    }
    assert_eq!(a.get(id).await.unwrap().cantidad, 6);
}

async fn movement_requests_are_recorded_once_per_key(url: &str, _: bool) {
    let a = Store::open(url).await.unwrap();
    let b = Store::open(url).await.unwrap();
    let id = a.create(&producto("Azúcar", 10)).await.unwrap().id;
    let salida_4 = PedidoMovimiento::new(id, &mov("salida", 4));
    assert!(!a.issued_task("clave").await.unwrap());
    assert_eq!(
        a.record_movement_request("clave", &salida_4).await.unwrap(),
        Pedido::Nuevo
    );
    assert!(b.issued_task("clave").await.unwrap());
    assert_eq!(
        b.record_movement_request("clave", &salida_4).await.unwrap(),
        Pedido::Repetido
    );
    let otra = PedidoMovimiento::new(id, &mov("salida", 5));
    assert!(matches!(
        b.record_movement_request("clave", &otra).await,
        Err(StoreError::ClaveReusada { .. })
    ));

    // Twenty requests at once under one key, each another amount: exactly one is taken.
    let carrera = (1..=20).map(|n| {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            let pedido = PedidoMovimiento::new(id, &mov("entrada", n));
            store.record_movement_request("carrera", &pedido).await
        }
    });
    let resultados = join_all(carrera).await;
    let nuevos = resultados
        .iter()
        .filter(|r| matches!(r, Ok(Pedido::Nuevo)))
        .count();
    let reusadas = resultados
        .iter()
        .filter(|r| matches!(r, Err(StoreError::ClaveReusada { .. })))
        .count();
    assert_eq!((nuevos, reusadas), (1, 19), "{resultados:?}");

    // A task applied without a record (a Celery client's) is checked against what it applied.
    a.apply_movement("de-celery", id, &mov("entrada", 2))
        .await
        .unwrap();
    let mismo = PedidoMovimiento::new(id, &mov("entrada", 2));
    assert_eq!(
        a.record_movement_request("de-celery", &mismo)
            .await
            .unwrap(),
        Pedido::Repetido
    );
}

async fn versions_refuse_writes_from_an_older_read(url: &str, _: bool) {
    let store = Store::open(url).await.unwrap();
    let leido = store.create(&producto("Café", 10)).await.unwrap();
    assert_eq!(leido.version, 1);
    store
        .apply_movement("m1", leido.id, &mov("entrada", 5))
        .await
        .unwrap();
    let renombrado = NuevoProducto::parse("Café molido", 10, 2.0).unwrap();
    // From the old read: the movement moved the version.
    match store
        .update(leido.id, &renombrado, Precondicion::Version(leido.version))
        .await
    {
        Err(StoreError::VersionObsoleta { actual, .. }) => assert_eq!(actual, 2),
        other => panic!("{other:?}"),
    }
    // Without a version, the stock must be the stored one.
    match store
        .update(leido.id, &renombrado, Precondicion::Ninguna)
        .await
    {
        Err(StoreError::CantidadSinVersion {
            guardada, version, ..
        }) => assert_eq!((guardada, version), (15, 2)),
        other => panic!("{other:?}"),
    }
    let actual = store
        .update(
            leido.id,
            &NuevoProducto::parse("Café molido", 15, 2.0).unwrap(),
            Precondicion::Ninguna,
        )
        .await
        .unwrap();
    assert_eq!((actual.version, actual.cantidad), (3, 15));
    assert_ne!(actual.actualizado_en, "");
    let con_version = store
        .update(leido.id, &renombrado, Precondicion::Version(3))
        .await
        .unwrap();
    assert_eq!((con_version.version, con_version.cantidad), (4, 10));
    assert!(matches!(
        store.delete(leido.id, Precondicion::Version(3)).await,
        Err(StoreError::VersionObsoleta { actual: 4, .. })
    ));
    store
        .delete(leido.id, Precondicion::Version(4))
        .await
        .unwrap();
    assert!(matches!(
        store.delete(leido.id, Precondicion::Ninguna).await,
        Err(StoreError::NoEncontrado(_))
    ));
    assert!(matches!(
        store.get(leido.id).await,
        Err(StoreError::NoEncontrado(_))
    ));
}

async fn the_cached_list_follows_other_processes_writes(url: &str, _: bool) {
    let servicio = Store::open(url).await.unwrap();
    servicio.seed_default().await.unwrap();
    let worker = Store::open(url).await.unwrap();
    let cantidades = |body: &[u8]| -> Vec<i64> {
        let list: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
        list.iter()
            .map(|p| p["cantidad"].as_i64().unwrap())
            .collect()
    };
    let primero = servicio.list_json().await.unwrap();
    let otra_vez = servicio.list_json().await.unwrap();
    assert_eq!(primero.as_ptr(), otra_vez.as_ptr(), "served from memory");
    let inicial = cantidades(&primero)[0];
    for ronda in 1..=10 {
        worker
            .apply_movement(&format!("r{ronda}"), 1, &mov("entrada", 1))
            .await
            .unwrap();
        let ahora = cantidades(&servicio.list_json().await.unwrap());
        assert_eq!(
            ahora[0],
            inicial + ronda,
            "round {ronda}: the other write shows"
        );
    }
    // A write through the service's own pool, and a deletion, show as well.
    servicio.create(&producto("Nuevo", 1)).await.unwrap();
    assert_eq!(cantidades(&servicio.list_json().await.unwrap()).len(), 21);
    worker.delete(2, Precondicion::Ninguna).await.unwrap();
    assert_eq!(cantidades(&servicio.list_json().await.unwrap()).len(), 20);
    // Concurrent listings while a writer moves the stock: every answer is a true list.
    let servicio = Arc::new(servicio);
    let lecturas = (0..20).map(|_| {
        let s = servicio.clone();
        async move { s.list_json().await.unwrap() }
    });
    let entrada = mov("entrada", 1);
    let escritura = worker.apply_movement("final", 1, &entrada);
    let (listas, aplicado) = tokio::join!(join_all(lecturas), escritura);
    aplicado.unwrap();
    for l in listas {
        let c = cantidades(&l)[0];
        assert!(c == inicial + 10 || c == inicial + 11, "{c}");
    }
    assert_eq!(
        cantidades(&servicio.list_json().await.unwrap())[0],
        inicial + 11
    );
}

async fn the_schema_refuses_what_validation_refuses(url: &str, _: bool) {
    let store = Store::open(url).await.unwrap();
    let malos = [
        "INSERT INTO productos (nombre, cantidad, precio) VALUES ('  ', 1, 1)",
        "INSERT INTO productos (nombre, cantidad, precio) VALUES ('x', -1, 1)",
        "INSERT INTO productos (nombre, cantidad, precio) VALUES ('x', 1000000001, 1)",
        "INSERT INTO productos (nombre, cantidad, precio) VALUES ('x', 1, -0.5)",
    ];
    for sql in malos {
        let r = match store.backend() {
            Backend::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Backend::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        };
        assert!(r.is_err(), "{sql} was stored");
    }
    assert_eq!(store.count().await.unwrap(), 0);
}

async fn the_pool_gives_up_after_its_timeouts(url: &str, postgres: bool) {
    use std::time::{Duration, Instant};
    let corto = Duration::from_millis(300);
    let store = Store::open_with(
        url,
        PoolConfig {
            max_connections: 1,
            acquire_timeout: corto,
            statement_timeout: corto,
        },
    )
    .await
    .unwrap();
    let id = store.create(&producto("Té", 5)).await.unwrap().id;
    // The one connection taken: the next operation waits the acquire timeout, then fails.
    let tomada: Box<dyn std::any::Any> = match store.backend() {
        Backend::Sqlite(pool) => Box::new(pool.acquire().await.unwrap()),
        Backend::Postgres(pool) => Box::new(pool.acquire().await.unwrap()),
    };
    let inicio = Instant::now();
    let r = store.count().await;
    assert!(
        matches!(r, Err(StoreError::Db(sqlx::Error::PoolTimedOut))),
        "{r:?}"
    );
    assert!(
        inicio.elapsed() < Duration::from_secs(5),
        "{:?}",
        inicio.elapsed()
    );
    drop(tomada);
    if !postgres {
        return;
    }
    // PostgreSQL cancels a statement that waits longer than the statement timeout: here a
    // movement behind another process's lock on the producto's row.
    let otro = Store::open(url).await.unwrap();
    let Backend::Postgres(pool) = otro.backend() else {
        unreachable!()
    };
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM productos WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let inicio = Instant::now();
    let r = store
        .apply_movement("bloqueada", id, &mov("salida", 1))
        .await;
    let esperado = inicio.elapsed();
    tx.rollback().await.unwrap();
    match r {
        Err(StoreError::Db(sqlx::Error::Database(e))) => {
            assert_eq!(e.code().as_deref(), Some("57014"), "query_canceled: {e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        esperado >= corto && esperado < Duration::from_secs(5),
        "{esperado:?}"
    );
    // Nothing of it stayed: the same task id applies once the lock is gone.
    let aplicado = store
        .apply_movement("bloqueada", id, &mov("salida", 1))
        .await
        .unwrap();
    assert_eq!(
        (aplicado.cantidad_resultante, aplicado.repetido),
        (4, false)
    );
}

/// A PostgreSQL that cannot be reached is reported with its cause once the acquire timeout
/// has passed, not as the pool's "timed out"; one that refuses the login, at once.
#[tokio::test]
async fn an_unreachable_or_refusing_postgres_is_reported_with_its_cause() {
    use std::time::{Duration, Instant};
    let config = PoolConfig {
        acquire_timeout: Duration::from_millis(400),
        ..PoolConfig::default()
    };
    // Nothing listens on a port just freed.
    let port = testkit::free_port();
    let inicio = Instant::now();
    let r = Store::open_with(&format!("postgres://x@127.0.0.1:{port}/x"), config).await;
    let error = r.expect_err("no server there").to_string();
    assert!(
        error.to_lowercase().contains("refused"),
        "the cause is lost: {error}"
    );
    assert!(
        inicio.elapsed() >= Duration::from_millis(300),
        "it waited for the server"
    );
    let Some((_lugar, url)) = base(true) else {
        return;
    };
    // A database that does not exist: no use waiting.
    let otra = url
        .rsplit_once('/')
        .map(|(a, _)| format!("{a}/no_existe"))
        .unwrap();
    let inicio = Instant::now();
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(20),
        ..PoolConfig::default()
    };
    let error = Store::open_with(&otra, config)
        .await
        .expect_err("no such database")
        .to_string();
    assert!(error.contains("no_existe"), "{error}");
    assert!(
        inicio.elapsed() < Duration::from_secs(10),
        "{:?}",
        inicio.elapsed()
    );
}
