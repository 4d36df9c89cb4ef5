//! Start-up on a database file: WAL mode, the seed loaded exactly once, restarts that keep
//! what clients changed, and several processes starting at once on a new file.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use inventario::Store;
use serde_json::json;

#[tokio::test]
async fn database_runs_in_wal_mode() {
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
    app.json(
        Method::PUT,
        "/inventario/2",
        &json!({"nombre": "Aceite de girasol 1 L", "cantidad": 1, "precio": 5.0}),
    )
    .await;
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
async fn processes_starting_together_on_a_new_file_seed_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nuevo.db").display());
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
