//! inventario-service as a process: on SIGTERM it stops accepting connections, lets the
//! requests in flight finish and exits 0.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::Process;
use testkit::{eventually, free_port, wait_for_status, RedisServer};

const REDIS_TIMEOUT_MS: u64 = 1500;
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_request_in_flight_finish_and_exits_0() {
    let redis = RedisServer::start_tcp();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut servicio = Process::program(
        "inventario-service",
        &[
            ("REDIS_URL", redis.url()),
            ("HTTP_ADDR", format!("127.0.0.1:{port}")),
            (
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("inventario.db").display()),
            ),
            ("REDIS_TIMEOUT_MS", REDIS_TIMEOUT_MS.to_string()),
            ("JWT_SECRET", common::SECRETO.into()),
            // tower-http logs each request as it starts at debug: the sign it is in flight.
            ("RUST_LOG", "info,tower_http=debug".into()),
        ],
        &dir.path().join("inventario-service.log"),
    );
    let http = reqwest::Client::new();
    assert!(
        wait_for_status(&http, &format!("{base}/ready"), 200, LIMIT).await,
        "not ready:\n{}",
        servicio.log()
    );

    // Redis frozen: a movement now waits in the handler for REDIS_TIMEOUT_MS.
    let redis_pid = i32::try_from(redis.pid().expect("redis-server runs")).expect("pid");
    // SAFETY: kill(2) on the redis-server this test started; resumed below.
    unsafe { libc::kill(redis_pid, libc::SIGSTOP) };
    let en_vuelo = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .post(format!("{base}/inventario/1/movimientos"))
                .bearer_auth(common::token(common::SUB))
                .json(&json!({"tipo": "entrada", "cantidad": 1}))
                .send()
                .await?;
            let status = r.status().as_u16();
            Ok::<_, reqwest::Error>((status, r.json::<Value>().await?, Instant::now()))
        }
    });
    let entro = eventually(LIMIT, Duration::from_millis(10), || async {
        servicio.log().contains("started processing request")
            && servicio.log().contains("movimientos")
    })
    .await;
    assert!(entro, "the request never arrived:\n{}", servicio.log());

    servicio.signal(libc::SIGTERM);
    let senal = Instant::now();
    // No new connection is accepted once it is stopping...
    let cerrado = eventually(LIMIT, Duration::from_millis(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await;
    assert!(cerrado, "still accepting connections after SIGTERM");
    // ...but the request in flight gets its whole answer: the documented 503 naming the task.
    let (status, cuerpo, respondida) = en_vuelo.await.unwrap().expect("the answer");
    assert_eq!(status, 503, "{cuerpo}");
    assert_eq!(cuerpo["error"], "cola_no_disponible");
    assert!(cuerpo["tarea_id"].is_string(), "{cuerpo}");
    let estado = servicio.wait_exit(LIMIT).await.expect("it exits");
    assert!(estado.success(), "{estado:?}\n{}", servicio.log());
    assert!(servicio.log().contains("stopped"), "{}", servicio.log());
    println!(
        "SIGTERM: the request in flight answered {:.0} ms later; exit 0",
        respondida.duration_since(senal).as_secs_f64() * 1e3
    );
    // SAFETY: as above.
    unsafe { libc::kill(redis_pid, libc::SIGCONT) };
}
