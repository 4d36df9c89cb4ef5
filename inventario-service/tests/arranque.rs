//! Start-up on a database: WAL mode (SQLite's), the seed loaded exactly once, restarts that
//! keep what clients changed, several processes starting at once on a new database, and a
//! database written by the previous version of the schema. With `TEST_DATABASE=postgres` all
//! but the WAL check run on a private PostgreSQL (see `common`).

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use inventario::Store;
use serde_json::json;
use std::str::FromStr;

#[tokio::test]
async fn database_runs_in_wal_mode() {
    if common::solo_sqlite("WAL is a SQLite file's journal mode") {
        return;
    }
    let app = TestApp::start().await;
    assert_eq!(app.state.store.journal_mode().await.unwrap(), "wal");
    assert!(app.dir.path().join("inventario.db-wal").exists());
}

#[tokio::test]
async fn restart_keeps_data_and_never_seeds_twice() {
    let app = TestApp::start().await;
    app.delete("/inventario/1").await;
    let created = app
        .json(
            Method::POST,
            "/inventario",
            &json!({"nombre": "Pimentón de la Vera 75 g", "cantidad": 9, "precio": 2.4}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let edited = app
        .json(
            Method::PUT,
            "/inventario/2",
            &json!({"nombre": "Aceite de girasol 1 L", "cantidad": 96, "precio": 5.0}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    let before = app.get("/inventario").await.json;
    assert_eq!(before.as_array().unwrap().len(), 20);

    let app = app.restart().await;
    // Same rows: nothing duplicated, the deleted one not back, the edit not overwritten.
    assert_eq!(app.get("/inventario").await.json, before);

    // Even an emptied inventory stays empty across a restart.
    for p in before.as_array().unwrap() {
        app.delete(&format!("/inventario/{}", p["id"])).await;
    }
    let app = app.restart().await;
    assert_eq!(app.get("/inventario").await.json, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_starting_together_on_a_new_database_seed_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_postgres, url) = common::base_nueva(dir.path(), "nuevo.db");
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let store = Store::open(&url).await.unwrap();
            store.seed_default().await.unwrap()
        })
    });
    let inserted: u64 = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(inserted, 20);
    assert_eq!(Store::open(&url).await.unwrap().count().await.unwrap(), 20);
}

/// The schema as the first release shipped it: a database that release wrote must open, keep
/// its rows, and take part in versions and idempotency records like a new one.
const PRIMERA_MIGRACION: &str = "20261125000001_productos.sql";

#[tokio::test(flavor = "multi_thread")]
async fn a_database_of_the_previous_schema_opens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (postgres, url) = common::base_nueva(dir.path(), "anterior.db");
    // The previous release's migrations (only the first, in this database's dialect), applied
    // as it applied them.
    let migraciones = dir.path().join("migraciones");
    std::fs::create_dir(&migraciones).unwrap();
    let dialecto = if postgres.is_some() { "postgres" } else { "" };
    let origen = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../inventario/migrations")
        .join(dialecto)
        .join(PRIMERA_MIGRACION);
    std::fs::copy(origen, migraciones.join(PRIMERA_MIGRACION)).unwrap();
    let migrator = sqlx::migrate::Migrator::new(migraciones.as_path())
        .await
        .unwrap();
    // What that release left: its seed mark, a producto, and a movement it applied.
    let filas = [
        "INSERT INTO semillas (nombre) VALUES ('productos')",
        "INSERT INTO productos (nombre, cantidad, precio) VALUES ('Lentejas 1 kg', 7, 1.9)",
        "INSERT INTO movimientos (tarea_id, producto_id, delta, cantidad_resultante) \
         VALUES ('pedido-viejo', 1, -3, 7)",
    ];
    if postgres.is_some() {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        migrator.run(&pool).await.unwrap();
        for sql in filas {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    } else {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        let pool = SqlitePoolOptions::new()
            .connect_with(
                SqliteConnectOptions::from_str(&url)
                    .unwrap()
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        migrator.run(&pool).await.unwrap();
        for sql in filas {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    let mut app = TestApp::on(
        dir,
        url,
        testkit::RedisServer::start(),
        inventario_service::auth::Autenticacion::jwt(&inventario_service::auth::Secreto::new(
            common::SECRETO,
        )),
    )
    .await;
    app.postgres = postgres;
    let leido = app.get("/inventario/1").await;
    assert_eq!(leido.status, StatusCode::OK, "{}", leido.text);
    assert_eq!(
        (
            &leido.json["nombre"],
            &leido.json["cantidad"],
            &leido.json["version"]
        ),
        (&json!("Lentejas 1 kg"), &json!(7), &json!(1))
    );
    assert_eq!(leido.headers["etag"], "\"1\"");
    assert_eq!(
        app.get("/inventario").await.json.as_array().unwrap().len(),
        1,
        "not seeded again"
    );
    let r = app
        .con_if_match(
            Method::PUT,
            "/inventario/1",
            "\"1\"",
            &json!({"nombre": "Lentejas pardinas 1 kg", "cantidad": 8, "precio": 1.9}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["version"], 2);

    // The movement applied before the upgrade is a known task, and its key keeps its meaning.
    let r = app.get("/tareas/pedido-viejo").await;
    assert_eq!(
        (r.status, &r.json["estado"]),
        (StatusCode::OK, &json!("PENDING")),
        "{}",
        r.text
    );
    let con_clave = |cantidad: i64| {
        let token = app.token.clone().unwrap();
        axum::http::Request::post("/inventario/1/movimientos")
            .header("content-type", "application/json")
            .header("idempotency-key", "pedido-viejo")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::from(
                json!({"tipo": "salida", "cantidad": cantidad}).to_string(),
            ))
            .unwrap()
    };
    let r = app.send(con_clave(4)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json["error"], "idempotency_key_reusada");
    let r = app.send(con_clave(3)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}
