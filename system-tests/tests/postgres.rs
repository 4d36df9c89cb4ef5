//! Several machines' worth of processes on one PostgreSQL database: two inventario-service
//! processes and two inventario-worker processes (real binaries), a private PostgreSQL
//! (`testkit::PostgresServer`) and a private Redis. Movements on one producto are sent through
//! both services at once, some of them retried through the other service under the same
//! `Idempotency-Key`; the final stock is exact, the stock never goes below zero, every movement
//! is applied once, and both services' cached listings show the last write.
//!
//! Skips with a message where PostgreSQL is not installed (and `CI` is unset).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use testkit::{eventually, free_port, workspace_binary, PostgresServer, Process, RedisServer};

/// Start-up of the programs (the first may wait for cargo).
const ARRANQUE: Duration = Duration::from_secs(120);
/// The longest the movements may take to be applied, on a loaded 2-core machine.
const APLICADOS: Duration = Duration::from_secs(60);
/// In the database URL the programs get: it must never reach a log.
const CLAVE: &str = "clave-que-no-debe-verse";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_services_and_two_workers_on_one_postgres_keep_the_stock_exact() {
    let Some(postgres) = PostgresServer::start_or_skip() else {
        return;
    };
    for binary in ["inventario-service", "inventario-worker"] {
        workspace_binary(binary);
    }
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = postgres.create_database();
    // The server trusts local connections, so a password is accepted and ignored: here only
    // to check that no program logs it.
    let con_clave = url.replacen("postgres@", &format!("postgres:{CLAVE}@"), 1);
    let comun = |extra: Vec<(&'static str, String)>| {
        let mut env = vec![
            ("REDIS_URL", redis.url()),
            ("DATABASE_URL", con_clave.clone()),
            ("QUEUE", "inventario".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        env.extend(extra);
        env
    };
    // All four start together: they race on the migrations and the seed.
    let mut procesos = Vec::new();
    let mut bases = Vec::new();
    for n in 1..=2 {
        let port = free_port();
        procesos.push(Process::program(
            "inventario-service",
            &comun(vec![
                ("HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("AUTH_DISABLED", "true".to_owned()),
            ]),
            &dir.path().join(format!("inventario-service-{n}.log")),
        ));
        bases.push(format!("http://127.0.0.1:{port}"));
        procesos.push(Process::program(
            "inventario-worker",
            &comun(vec![("WORKER_HOSTNAME", format!("worker{n}@pg"))]),
            &dir.path().join(format!("inventario-worker-{n}.log")),
        ));
    }
    let http = reqwest::Client::new();
    for base in &bases {
        let up = testkit::wait_for_status(&http, &format!("{base}/health"), 200, ARRANQUE).await;
        assert!(up, "{base} never answered:\n{}", logs(&procesos));
    }

    // Seeded exactly once, whichever process got there first.
    for base in &bases {
        let lista = get(&http, &format!("{base}/inventario")).await;
        assert_eq!(lista.as_array().unwrap().len(), 20, "{base}");
    }
    let creado = http
        .post(format!("{}/inventario", bases[0]))
        .json(&json!({"nombre": "Sal marina 1 kg", "cantidad": 100, "precio": 0.8}))
        .send()
        .await
        .unwrap();
    assert_eq!(creado.status(), 201);
    let id = creado.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();

    // 100 entradas of 3 and 100 salidas of 1, alternately through each service; every salida
    // fits in any order, so all succeed and the sum is exact.
    let inicio = Instant::now();
    let envios = (0..200).map(|i| {
        let cuerpo = if i % 2 == 0 {
            json!({"tipo": "entrada", "cantidad": 3})
        } else {
            json!({"tipo": "salida", "cantidad": 1})
        };
        mover(&http, &bases[i % 2], id, format!("mov-{i}"), cuerpo)
    });
    // Retries of the first twenty through the other service: the same task, applied once.
    let reintentos = (0..20).map(|i| {
        let cuerpo = if i % 2 == 0 {
            json!({"tipo": "entrada", "cantidad": 3})
        } else {
            json!({"tipo": "salida", "cantidad": 1})
        };
        mover(&http, &bases[(i + 1) % 2], id, format!("mov-{i}"), cuerpo)
    });
    let (enviadas, reintentadas) = tokio::join!(join_all(envios), join_all(reintentos));
    for (status, cuerpo) in enviadas.iter().chain(&reintentadas) {
        assert_eq!(*status, 202, "{cuerpo}");
    }
    for (i, (_, cuerpo)) in reintentadas.iter().enumerate() {
        assert_eq!(cuerpo["tarea_id"], format!("mov-{i}"));
    }
    // The same key for another movement, through either service: refused.
    let reuso = mover(
        &http,
        &bases[1],
        id,
        "mov-0".to_owned(),
        json!({"tipo": "entrada", "cantidad": 4}),
    )
    .await;
    assert_eq!(reuso.0, 422, "{}", reuso.1);

    let aplicados = eventually(APLICADOS, Duration::from_millis(50), || async {
        cantidad(&http, &bases[1], id).await == 300
    })
    .await;
    let duracion = inicio.elapsed();
    assert!(
        aplicados,
        "stock {} instead of 300\n{}",
        cantidad(&http, &bases[1], id).await,
        logs(&procesos)
    );
    // Every task succeeded, and both workers took part.
    let mut workers = BTreeSet::new();
    for i in 0..200 {
        let tarea = get(&http, &format!("{}/tareas/mov-{i}", bases[i % 2])).await;
        assert_eq!(tarea["estado"], "SUCCESS", "mov-{i}: {tarea}");
        workers.insert(tarea["resultado"]["worker"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        workers.len(),
        2,
        "both workers applied movements: {workers:?}"
    );

    // Every movement applied exactly once, as the database records them.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (filas, suma): (i64, i64) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum(delta), 0)::BIGINT FROM movimientos WHERE producto_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((filas, suma), (200, 200));
    println!(
        "200 movements (and 20 retries) through 2 services, applied by 2 workers on PostgreSQL: {:.2} s",
        duracion.as_secs_f64()
    );

    // 50 salidas of 7 on 300, through both: exactly 42 fit, the stock ends at 6.
    let salidas = (0..50).map(|i| {
        mover(
            &http,
            &bases[i % 2],
            id,
            format!("salida-{i}"),
            json!({"tipo": "salida", "cantidad": 7}),
        )
    });
    for (status, cuerpo) in join_all(salidas).await {
        assert_eq!(status, 202, "{cuerpo}");
    }
    let terminadas = eventually(APLICADOS, Duration::from_millis(50), || async {
        let estados = join_all((0..50).map(|i| {
            let http = &http;
            let base = &bases[(i + 1) % 2];
            async move { get(http, &format!("{base}/tareas/salida-{i}")).await }
        }))
        .await;
        estados
            .iter()
            .all(|t| t["estado"] == "SUCCESS" || t["estado"] == "FAILURE")
    })
    .await;
    assert!(terminadas, "{}", logs(&procesos));
    let mut ok = 0;
    for i in 0..50 {
        let tarea = get(&http, &format!("{}/tareas/salida-{i}", bases[0])).await;
        if tarea["estado"] == "SUCCESS" {
            ok += 1;
        } else {
            assert_eq!(tarea["error"]["tipo"], "StockInsuficiente", "{tarea}");
        }
    }
    assert_eq!(ok, 42);
    // Both services' listings (each from its own cache) show the last write at once.
    for base in &bases {
        assert_eq!(cantidad(&http, base, id).await, 6, "{base}");
        let lista = get(&http, &format!("{base}/inventario")).await;
        let fila = lista
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap();
        assert_eq!(fila["cantidad"], 6, "{base}: the cached list");
    }

    for p in &mut procesos {
        p.assert_alive();
        assert!(!p.log().contains(CLAVE), "{} logged the password", p.name());
    }
    let log = procesos[0].log();
    assert!(
        log.contains("postgres://postgres:") && log.contains("database ready"),
        "the service names its database, masked:\n{log}"
    );
}

/// POSTs a movement under `clave`; the status and the JSON answer.
async fn mover(
    http: &reqwest::Client,
    base: &str,
    id: i64,
    clave: String,
    cuerpo: Value,
) -> (u16, Value) {
    let r = http
        .post(format!("{base}/inventario/{id}/movimientos"))
        .header("Idempotency-Key", clave)
        .json(&cuerpo)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn cantidad(http: &reqwest::Client, base: &str, id: i64) -> i64 {
    get(http, &format!("{base}/inventario/{id}")).await["cantidad"]
        .as_i64()
        .unwrap()
}

/// The last lines of every program's log, for a failure's message.
fn logs(procesos: &[Process]) -> String {
    procesos
        .iter()
        .map(|p| format!("--- {}\n{}", p.log_path().display(), p.log_tail(30)))
        .collect()
}
