//! Stock movements end to end: HTTP → Redis → a real inventario worker → SQLite (PostgreSQL
//! with `TEST_DATABASE=postgres`), and the task's state read back over HTTP.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::TestApp;
use futures_util::future::join_all;
use serde_json::{json, Value};
use shared::protocol::{ResultMeta, TaskState};
use testkit::eventually;

const WAIT: Duration = Duration::from_secs(30);

/// Creates a producto with `cantidad` units and returns its id.
async fn producto(app: &TestApp, cantidad: i64) -> i64 {
    let r = app
        .json(
            Method::POST,
            "/inventario",
            &json!({"nombre": "Sal marina 1 kg", "cantidad": cantidad, "precio": 0.8}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json["id"].as_i64().unwrap()
}

/// POSTs a movement and returns the task id from the 202.
async fn mover(app: &TestApp, id: i64, tipo: &str, cantidad: i64) -> String {
    let r = app
        .json(
            Method::POST,
            &format!("/inventario/{id}/movimientos"),
            &json!({"tipo": tipo, "cantidad": cantidad}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["estado"], "PENDING");
    r.json["tarea_id"].as_str().unwrap().to_owned()
}

/// Waits for the task's result over pub/sub (no polling).
async fn resultado(app: &TestApp, tarea: &str) -> ResultMeta {
    app.state.client.result(tarea).wait(WAIT).await.unwrap()
}

async fn cantidad(app: &TestApp, id: i64) -> i64 {
    app.get(&format!("/inventario/{id}")).await.json["cantidad"]
        .as_i64()
        .unwrap()
}

/// The producto's stock as the full listing shows it (served from the list cache while the
/// database is unchanged).
async fn cantidad_listada(app: &TestApp, id: i64) -> i64 {
    let list = app.get("/inventario").await.json;
    let producto = list.as_array().unwrap().iter().find(|p| p["id"] == id);
    producto.unwrap()["cantidad"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_movement_goes_through_the_worker_and_its_task_can_be_followed() {
    let app = TestApp::start().await;
    let id = producto(&app, 10).await;

    // Before any worker runs, the task is queued and reads PENDING.
    let entrada = mover(&app, id, "entrada", 5).await;
    let pending = app.get(&format!("/tareas/{entrada}")).await;
    assert_eq!(pending.status, StatusCode::OK);
    assert_eq!(pending.json["estado"], "PENDING");
    assert_eq!(cantidad(&app, id).await, 10);
    assert_eq!(cantidad_listada(&app, id).await, 10);

    let worker = app.worker().await;
    assert_eq!(resultado(&app, &entrada).await.status, TaskState::Success);
    let done = app.get(&format!("/tareas/{entrada}")).await.json;
    assert_eq!(done["estado"], "SUCCESS");
    assert_eq!(done["resultado"]["cantidad_resultante"], 15);
    assert_eq!(done["resultado"]["tipo"], "entrada");
    assert_eq!(cantidad(&app, id).await, 15);
    // The worker's commit (its own connection) is seen by the cached listing at once.
    assert_eq!(cantidad_listada(&app, id).await, 15);

    let salida = mover(&app, id, "salida", 15).await;
    assert_eq!(resultado(&app, &salida).await.status, TaskState::Success);
    assert_eq!(cantidad(&app, id).await, 0);
    assert_eq!(cantidad_listada(&app, id).await, 0);

    // More than the stock: the task fails with the reason, and nothing changes.
    let demasiado = mover(&app, id, "salida", 1).await;
    assert_eq!(resultado(&app, &demasiado).await.status, TaskState::Failure);
    let failed = app.get(&format!("/tareas/{demasiado}")).await.json;
    assert_eq!(failed["estado"], "FAILURE");
    assert_eq!(failed["error"]["tipo"], "StockInsuficiente");
    assert!(
        failed["error"]["mensaje"]
            .as_str()
            .unwrap()
            .contains("hay 0"),
        "{failed}"
    );
    assert_eq!(cantidad(&app, id).await, 0);

    // A producto deleted after the movement was accepted: the worker fails it clearly.
    let borrado = producto(&app, 3).await;
    worker.stop().await;
    let huerfana = mover(&app, borrado, "salida", 1).await;
    assert_eq!(
        app.delete(&format!("/inventario/{borrado}")).await.status,
        StatusCode::NO_CONTENT
    );
    let worker = app.worker().await;
    let meta = resultado(&app, &huerfana).await;
    assert_eq!(meta.exception().unwrap().exc_type, "ProductoNoEncontrado");

    // An id nobody sent is not a task waiting forever: 404.
    let unknown = app.get("/tareas/no-existe").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert_eq!(unknown.json["error"], "tarea_desconocida");
    // One that no task can have is refused, Redis not asked.
    let long = "a".repeat(129);
    for bad in ["a%20b", "%C3%B1", "a%2Fb", "%00", long.as_str()] {
        let refused = app.get(&format!("/tareas/{bad}")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(refused.json["error"], "tarea_id_invalido", "{bad}");
    }
    worker.stop().await;
}

/// 200 movements at once on one producto: none lost, none applied twice, and the stock never
/// goes below zero.
#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_movements_leave_the_exact_stock() {
    let app = TestApp::start().await;
    let worker = app.worker().await;
    let id = producto(&app, 100).await;

    // 100 entradas of 3 and 100 salidas of 1, interleaved: every salida can succeed in any
    // order (the stock starts at 100), so every task succeeds and the sum is exact.
    let sends = (0..200).map(|i| {
        let app = &app;
        async move {
            if i % 2 == 0 {
                mover(app, id, "entrada", 3).await
            } else {
                mover(app, id, "salida", 1).await
            }
        }
    });
    let tareas = join_all(sends).await;
    let metas = join_all(tareas.iter().map(|t| resultado(&app, t))).await;
    for m in &metas {
        assert_eq!(m.status, TaskState::Success, "{m:?}");
    }
    assert_eq!(cantidad(&app, id).await, 100 + 100 * 3 - 100);

    // Now 50 concurrent salidas of 7 on 300 units: exactly 42 fit. The rest must fail with
    // StockInsuficiente, and the stock ends at 6, never below zero.
    let tareas = join_all((0..50).map(|_| mover(&app, id, "salida", 7))).await;
    let metas = join_all(tareas.iter().map(|t| resultado(&app, t))).await;
    let ok = metas
        .iter()
        .filter(|m| m.status == TaskState::Success)
        .count();
    let insuficiente = metas
        .iter()
        .filter(|m| {
            m.exception()
                .is_some_and(|e| e.exc_type == "StockInsuficiente")
        })
        .count();
    assert_eq!((ok, insuficiente), (42, 8));
    assert_eq!(cantidad(&app, id).await, 6);

    // The HTTP view agrees with the backend for a task of the burst.
    let one: Value = app.get(&format!("/tareas/{}", tareas[0])).await.json;
    assert!(
        one["estado"] == "SUCCESS" || one["estado"] == "FAILURE",
        "{one}"
    );
    worker.stop().await;
}

/// The worker stores STARTED before it runs a movement, so `/tareas/{id}` can show it.
#[tokio::test(flavor = "multi_thread")]
async fn started_state_is_visible_while_a_task_runs() {
    let app = TestApp::start().await;
    let id = producto(&app, 1).await;
    // Queued first: accepting a movement writes its record to SQLite.
    let tarea = mover(&app, id, "entrada", 1).await;
    // Hold SQLite's write lock (PostgreSQL's row lock) so the worker's movement waits, in
    // the STARTED state, until we let go.
    let bloqueo = app.bloquear(id).await;
    let worker = app.worker().await;
    let started = eventually(WAIT, Duration::from_millis(20), || async {
        app.get(&format!("/tareas/{tarea}")).await.json["estado"] == "STARTED"
    })
    .await;
    assert!(started, "STARTED never shown");
    bloqueo.soltar().await;
    assert_eq!(resultado(&app, &tarea).await.status, TaskState::Success);
    assert_eq!(cantidad(&app, id).await, 2);
    worker.stop().await;
}

/// A movement POSTed with an `Idempotency-Key` runs under that task id: a client retrying
/// (after a 503 or a lost answer) gets the same task, and the stock moves once.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_movement_with_an_idempotency_key_applies_once() {
    use axum::body::Body;
    use axum::http::{header, Request};

    let app = TestApp::start().await;
    let id = producto(&app, 10).await;
    let token = app.token.clone().expect("the helpers' token");
    let con_clave = |clave: &str| {
        Request::post(format!("/inventario/{id}/movimientos"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", clave)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(r#"{"tipo": "salida", "cantidad": 4}"#))
            .unwrap()
    };
    // Sent three times before any worker runs: three messages for one task id.
    for _ in 0..3 {
        let r = app.send(con_clave("pedido-42:salida")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert_eq!(r.json["tarea_id"], "pedido-42:salida");
    }
    let worker = app.worker().await;
    let meta = resultado(&app, "pedido-42:salida").await;
    assert_eq!(meta.status, TaskState::Success);
    // Once the queue is empty every copy has been taken, and a stopping worker finishes what
    // it took: then all three have run, and the stock moved once.
    let broker = app.state.client.broker().clone();
    let vacia = eventually(WAIT, Duration::from_millis(20), || {
        let broker = broker.clone();
        async move { broker.queue_len("inventario").await.unwrap() == 0 }
    })
    .await;
    assert!(vacia, "the copies were not taken");
    worker.stop().await;
    assert_eq!(cantidad(&app, id).await, 6);

    for mala in ["", "tiene espacios", &"x".repeat(129), "ñandú"] {
        let r = app.send(con_clave(mala)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{mala:?}: {}", r.text);
        assert_eq!(r.json["error"], "idempotency_key_invalida");
    }
}

/// A movement POST with `Idempotency-Key: clave` and `cuerpo`, with the helpers' token.
fn con_clave(
    app: &TestApp,
    id: i64,
    clave: &str,
    cuerpo: &Value,
) -> axum::http::Request<axum::body::Body> {
    use axum::http::header;
    axum::http::Request::post(format!("/inventario/{id}/movimientos"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", clave)
        .header(
            header::AUTHORIZATION,
            format!(
                "Bearer {}",
                app.token.as_deref().expect("the helpers' token")
            ),
        )
        .body(axum::body::Body::from(cuerpo.to_string()))
        .unwrap()
}

/// The messages waiting in the business queue.
fn encolados(app: &TestApp) -> u64 {
    let list = shared::keys::queue_list(common::QUEUE, shared::worker::BUSINESS_PRIORITY);
    app.server.cli(&["LLEN", &list]).parse().unwrap()
}

/// An `Idempotency-Key` reused for another movement (another amount, type or producto) is a
/// 422 that sends nothing, and the first movement is applied as asked; the same request again
/// is still a retry of the first.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_reused_for_another_movement_is_refused_and_the_first_stands() {
    let app = TestApp::start().await;
    let a = producto(&app, 10).await;
    let b = producto(&app, 10).await;
    let salida_4 = json!({"tipo": "salida", "cantidad": 4});
    let r = app.send(con_clave(&app, a, "pedido-7", &salida_4)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["tarea_id"], "pedido-7");

    let reusos = [
        (a, json!({"tipo": "salida", "cantidad": 5})),
        (a, json!({"tipo": "entrada", "cantidad": 4})),
        (b, salida_4.clone()),
    ];
    for (id, cuerpo) in &reusos {
        let r = app.send(con_clave(&app, *id, "pedido-7", cuerpo)).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{id} {cuerpo}: {}",
            r.text
        );
        assert_eq!(r.json["error"], "idempotency_key_reusada");
        assert!(
            r.json["detalle"].as_str().unwrap().contains("pedido-7"),
            "{}",
            r.text
        );
    }
    // The same request, spelt differently, is a retry: 202 with the same task.
    let mismo = r#"{ "cantidad": 4,  "tipo": "salida" }"#;
    let mut retry = con_clave(&app, a, "pedido-7", &Value::Null);
    *retry.body_mut() = axum::body::Body::from(mismo);
    let r = app.send(retry).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["tarea_id"], "pedido-7");
    assert_eq!(encolados(&app), 2, "the refused reuses queued nothing");

    let worker = app.worker().await;
    let meta = resultado(&app, "pedido-7").await;
    assert_eq!(meta.status, TaskState::Success);
    let vacia = eventually(WAIT, Duration::from_millis(20), || async {
        encolados(&app) == 0
    })
    .await;
    assert!(vacia, "the copies were not taken");
    worker.stop().await;
    assert_eq!((cantidad(&app, a).await, cantidad(&app, b).await), (6, 10));
    // Once applied, a reuse is refused all the same.
    let (id, cuerpo) = &reusos[0];
    let r = app.send(con_clave(&app, *id, "pedido-7", cuerpo)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(encolados(&app), 0);
}

/// Twenty requests at once under one key, each for a different amount: one is taken, the
/// other nineteen get 422, and exactly that one movement is applied.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_under_one_key_apply_exactly_one_movement() {
    let app = TestApp::start().await;
    let id = producto(&app, 100).await;
    let envios = (1..=20).map(|n| {
        let request = con_clave(
            &app,
            id,
            "carrera",
            &json!({"tipo": "entrada", "cantidad": n}),
        );
        let app = &app;
        async move { (n, app.send(request).await) }
    });
    let respuestas = join_all(envios).await;
    let ganadoras: Vec<i64> = respuestas
        .iter()
        .filter(|(_, r)| r.status == StatusCode::ACCEPTED)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(ganadoras.len(), 1, "exactly one request takes the key");
    for (n, r) in &respuestas {
        if r.status != StatusCode::ACCEPTED {
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{n}: {}",
                r.text
            );
            assert_eq!(r.json["error"], "idempotency_key_reusada");
        }
    }
    assert_eq!(encolados(&app), 1);
    let worker = app.worker().await;
    assert_eq!(resultado(&app, "carrera").await.status, TaskState::Success);
    worker.stop().await;
    assert_eq!(cantidad(&app, id).await, 100 + ganadoras[0]);
}

/// The lost update this guards against: a client reads a producto, a movement lands, and the
/// client writes back the stock it read with a new name. The movement must survive: without
/// If-Match the PUT is a 428, with the old ETag a 412; from a fresh read it goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_from_a_read_older_than_a_movement_does_not_undo_it() {
    let app = TestApp::start().await;
    let id = producto(&app, 10).await;
    let uri = format!("/inventario/{id}");
    let leido = app.get(&uri).await;
    let worker = app.worker().await;
    let tarea = mover(&app, id, "entrada", 5).await;
    assert_eq!(resultado(&app, &tarea).await.status, TaskState::Success);
    worker.stop().await;

    // The old stock and a new name, without If-Match: refused, and the movement stays.
    let renombrado =
        json!({"nombre": "Sal gruesa 1 kg", "cantidad": leido.json["cantidad"], "precio": 0.8});
    let r = app.json(Method::PUT, &uri, &renombrado).await;
    assert_eq!(
        cantidad(&app, id).await,
        15,
        "the movement was undone: {}",
        r.text
    );
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED, "{}", r.text);
    assert_eq!(r.json["error"], "if_match_requerido");

    // The same with the ETag of the old read: the movement moved the version, so 412.
    let etag = leido.headers["etag"].to_str().unwrap();
    let despues = app.get(&uri).await;
    assert_ne!(
        despues.headers["etag"], etag,
        "the movement moved the version"
    );
    let r = app.con_if_match(Method::PUT, &uri, etag, &renombrado).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert_eq!(r.json["error"], "version_obsoleta");
    assert_eq!(r.headers["etag"], despues.headers["etag"]);
    assert_eq!(cantidad(&app, id).await, 15, "the movement was undone");
    assert_eq!(app.get(&uri).await.json["nombre"], "Sal marina 1 kg");

    // From a fresh read (the current stock, or the current ETag) the rename goes through.
    let fresco = json!({"nombre": "Sal gruesa 1 kg", "cantidad": 15, "precio": 0.8});
    let r = app.json(Method::PUT, &uri, &fresco).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (&r.json["nombre"], &r.json["cantidad"]),
        (&json!("Sal gruesa 1 kg"), &json!(15))
    );
}

/// `/tareas/{id}`: a movement this service accepted reads PENDING until the worker stores
/// its result; an id it never issued is a 404; a result someone else's task stored is shown.
#[tokio::test(flavor = "multi_thread")]
async fn tasks_are_told_pending_unknown_or_stored() {
    let app = TestApp::start().await;
    let id = producto(&app, 10).await;
    let emitida = mover(&app, id, "entrada", 1).await;
    let r = app.get(&format!("/tareas/{emitida}")).await;
    assert_eq!(
        (r.status, &r.json["estado"]),
        (StatusCode::OK, &json!("PENDING")),
        "{}",
        r.text
    );

    let nunca = uuid::Uuid::new_v4().to_string();
    let r = app.get(&format!("/tareas/{nunca}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.json["error"], "tarea_desconocida");
    assert!(r.json["detalle"].as_str().unwrap().contains(&nunca));

    // A task sent straight to the queue, not through this service: once its result is
    // stored, it is shown.
    let worker = app.worker().await;
    let ajena = app
        .state
        .client
        .send_task(
            inventario::OBTENER_ESTADO,
            vec![],
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(resultado(&app, &ajena).await.status, TaskState::Success);
    let r = app.get(&format!("/tareas/{ajena}")).await;
    assert_eq!(
        (r.status, &r.json["estado"]),
        (StatusCode::OK, &json!("SUCCESS")),
        "{}",
        r.text
    );
    assert_eq!(resultado(&app, &emitida).await.status, TaskState::Success);
    worker.stop().await;
}

/// The record of issued movements is bounded: one older than `RETENCION_PEDIDOS` is dropped
/// when the next movement is recorded, and its id (never applied, no result) is then unknown.
#[tokio::test(flavor = "multi_thread")]
async fn records_of_issued_movements_older_than_a_day_are_dropped() {
    let app = TestApp::start().await;
    let id = producto(&app, 10).await;
    let hace_dos_dias = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 2 * inventario::store::RETENCION_PEDIDOS.as_secs() as i64;
    app.sql(
        "INSERT INTO pedidos_movimiento (tarea_id, producto_id, huella, pedido_en) \
         VALUES ('antigua', $1, 'x', $2)",
        &[id, hace_dos_dias],
    )
    .await;
    let r = app.get("/tareas/antigua").await;
    assert_eq!(r.json["estado"], "PENDING", "{}", r.text);

    let reciente = mover(&app, id, "entrada", 1).await;
    let r = app.get("/tareas/antigua").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(
        app.get(&format!("/tareas/{reciente}")).await.json["estado"],
        "PENDING"
    );
    let guardados = app.contar("SELECT count(*) FROM pedidos_movimiento").await;
    assert_eq!(guardados, 1);
}
