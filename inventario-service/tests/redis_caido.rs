//! With Redis gone: the CRUD routes (SQLite only) keep working, `/ready` reports the outage,
//! and the queue routes answer 503 with the JSON error instead of hanging.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_crud_works_ready_and_queue_routes_say_503() {
    let mut app = TestApp::start().await;
    assert_eq!(app.get("/ready").await.status, StatusCode::OK);
    app.server.kill();

    assert_eq!(app.get("/inventario").await.status, StatusCode::OK);
    assert_eq!(app.get("/inventario/1").await.status, StatusCode::OK);
    let created = app
        .json(
            Method::POST,
            "/inventario",
            &json!({"nombre": "Vinagre de Jerez", "cantidad": 4, "precio": 3.1}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let put = app
        .json(
            Method::PUT,
            "/inventario/2",
            &json!({"nombre": "Aceite de oliva virgen extra 1 L", "cantidad": 96, "precio": 9.9}),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(
        app.delete("/inventario/3").await.status,
        StatusCode::NO_CONTENT
    );

    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json["error"], "no_listo");
    assert_eq!(ready.json["base_de_datos"], "ok");
    assert!(
        ready.json["redis"].as_str().unwrap().starts_with("error"),
        "{}",
        ready.text
    );

    let movimiento = app
        .json(
            Method::POST,
            "/inventario/1/movimientos",
            &json!({"tipo": "entrada", "cantidad": 1}),
        )
        .await;
    assert_eq!(
        movimiento.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        movimiento.text
    );
    assert_eq!(movimiento.json["error"], "cola_no_disponible");
    assert!(movimiento.json["detalle"]
        .as_str()
        .unwrap()
        .contains("Redis"));

    let tarea = app.get("/tareas/abc").await;
    assert_eq!(tarea.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(tarea.json["error"], "cola_no_disponible");

    // The refused movement changed nothing.
    assert_eq!(app.get("/inventario/1").await.json["cantidad"], 240);

    // Redis back: the service recovers by itself.
    app.server.restart();
    let back = testkit::eventually(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(50),
        || async { app.get("/ready").await.status == StatusCode::OK },
    )
    .await;
    assert!(back, "the service did not notice Redis came back");
}
