//! Redis Sentinel end to end: the master SIGKILLed under load, with the system running as in
//! production on a Sentinel deployment (`testkit::Sentinels`: a master, a replica, three
//! sentinels), plus a second replica that is never promoted. `inventario-service` (sending each
//! task with `REDIS_WAIT_REPLICAS=1`, so a movement answered 202 is on a replica too), two
//! `inventario-worker`s and `monitor-service`, real binaries, all reach Redis through the
//! sentinels' URL.
//!
//! Several clients send authenticated movements, each under an `Idempotency-Key` of its own,
//! and retry the same key on a 503 or a connection error until they get a 202, as a careful
//! client does. Mid-load the master is SIGKILLed. What must hold, without restarting anything:
//! the sentinels promote the replica and every program carries on by itself; every movement
//! that got a 202 is applied exactly once (the database records each key once, and the stock
//! is the initial one plus their sum); the monitor reports the outage and the recovery. Then
//! the old master comes back, as a replica: nothing writes to it, and the system still works.
//!
//! It prints what it measured: from the SIGKILL to the promotion, to the first 202 of a
//! request sent after it, and to the monitor's recovery; the 503s and connection errors the
//! clients saw, and the requests in all.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::sentinel::sentinel_cli;
use testkit::{
    eventually, free_port, workspace_binary, Process, RedisServer, Sentinels, ServerOptions,
};

/// The secret the service checks the writes' bearer tokens with.
const JWT_SECRET: &str = "secreto-de-la-prueba-de-sentinel";
/// The service's `REDIS_TIMEOUT_MS`: the longest a request may wait on Redis.
const REDIS_TIMEOUT_MS: u64 = 2000;
/// How long a send waits for the replica's acknowledgement (`REDIS_WAIT_TIMEOUT_MS`).
const WAIT_TIMEOUT_MS: u64 = 500;
/// The monitor's ping interval and timeout (its defaults, said here for the figures).
const PING_INTERVAL_MS: u64 = 250;
const PING_TIMEOUT_MS: u64 = 750;
/// Concurrent clients sending movements.
const CLIENTES: usize = 6;
/// A client's pause between movements: a steady load a loaded 2-core machine keeps up with.
const PAUSA: Duration = Duration::from_millis(20);
/// Load before the kill, and after the recovery.
const CARGA_ANTES: Duration = Duration::from_secs(3);
const CARGA_DESPUES: Duration = Duration::from_secs(2);
/// How long the system may take to take a write again after the kill: the sentinels' failover
/// (down-after 1 s, then an election) and the programs finding the new master.
const REANUDACION: Duration = Duration::from_secs(20);
/// Start-up of the programs, built already.
const ARRANQUE: Duration = Duration::from_secs(30);
/// The longest the accepted movements may take to be applied at the end.
const APLICADOS: Duration = Duration::from_secs(30);
const WORKERS: [&str; 2] = ["sentinel-a@test", "sentinel-b@test"];
/// The producto's stock at the start: every salida fits, in any order.
const STOCK_INICIAL: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_master_killed_under_load_fails_over_and_no_accepted_movement_is_lost() {
    for binary in ["inventario-service", "inventario-worker", "monitor-service"] {
        workspace_binary(binary);
    }
    tokio::time::timeout(Duration::from_secs(120), escenario())
        .await
        .expect("the scenario takes under 120 s");
}

async fn escenario() {
    let inicio = Instant::now();
    let mut sentinels = Sentinels::start();
    // A second replica, which the sentinels never promote (`replica-priority 0`): after the
    // failover they point it at the new master, and the service's WAIT for one replica is met.
    // With the harness's one replica only, the promoted server has no replica left and every
    // send is refused (503, "only 0 of 1 replicas acknowledged") until the old master is back:
    // writes survive a failover only while REDIS_WAIT_REPLICAS is under the replicas' number.
    let segunda = RedisServer::start_with(ServerOptions {
        tcp: true,
        args: [
            "--replicaof",
            "127.0.0.1",
            &sentinels.master_port().to_string(),
            "--replica-priority",
            "0",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut s = Sistema::start(&sentinels, dir.path()).await;
    // The sentinels learn of it from the master's INFO, which they read every 10 s.
    let conocida = eventually(ARRANQUE, Duration::from_millis(100), || async {
        sentinels.sentinel_ports().iter().all(|&port| {
            let info = sentinel_cli(port, &["SENTINEL", "MASTER", sentinels.master_name()]);
            campo(&info, "num-slaves") == Some("2")
        })
    })
    .await;
    assert!(conocida, "the sentinels never saw the second replica");
    let creado = s
        .http
        .post(format!("{}/inventario", s.base))
        .json(&json!({"nombre": "Harina de trigo 1 kg", "cantidad": STOCK_INICIAL, "precio": 1.1}))
        .send()
        .await
        .expect("POST /inventario");
    assert_eq!(creado.status(), 201);
    let producto = creado.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();

    // 1. A steady load, and the master SIGKILLed in the middle of it.
    let parar = Arc::new(AtomicBool::new(false));
    let clientes: Vec<_> = (0..CLIENTES)
        .map(|n| {
            tokio::spawn(cliente(
                s.http.clone(),
                s.base.clone(),
                producto,
                format!("c{n}"),
                parar.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(CARGA_ANTES).await;
    let viejo_master = sentinels.master_port();
    let lineas_monitor = s.monitor.log().lines().count();
    let (viejo, matado) = sentinels.kill_master();
    assert_eq!(viejo, viejo_master);
    let (sentinels, nuevo) = tokio::task::spawn_blocking(move || {
        let nuevo = sentinels.wait_for_promotion(viejo);
        (sentinels, nuevo)
    })
    .await
    .expect("waiting for the promotion");
    let promovido = matado.elapsed();

    // 2. The monitor sees the outage and the recovery, by itself.
    let recuperado = eventually(REANUDACION, Duration::from_millis(20), || async {
        s.monitor_desde(lineas_monitor)
            .iter()
            .any(|l| l.contains("[RECUPERADO] InventarioService"))
    })
    .await;
    let monitor_recuperado = matado.elapsed();
    // The load goes on a while on the new master, then stops.
    tokio::time::sleep(CARGA_DESPUES).await;
    parar.store(true, Ordering::Relaxed);
    let mut envios = Vec::new();
    for c in clientes {
        envios.extend(c.await.expect("a client"));
    }

    // 3. The old master comes back: the sentinels make it a replica of the new one.
    let mut sentinels = sentinels;
    let (sentinels, reintegrado) = tokio::task::spawn_blocking(move || {
        sentinels.restart(viejo);
        let ok = testkit::sentinel::wait_until(|| {
            let info = sentinels.replica().cli(&["INFO", "replication"]);
            sentinels.replica().port() == Some(viejo)
                && info.contains("role:slave")
                && info.contains(&format!("master_port:{nuevo}"))
                && info.contains("master_link_status:up")
        });
        (sentinels, ok)
    })
    .await
    .expect("waiting for the old master to rejoin");
    // The system still takes and applies movements, and none of it reaches the old master.
    let despues = Arc::new(AtomicBool::new(false));
    let tras_volver = tokio::spawn(cliente(
        s.http.clone(),
        s.base.clone(),
        producto,
        "vuelta".into(),
        despues.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    despues.store(true, Ordering::Relaxed);
    let vuelta = tras_volver.await.expect("the last client");
    envios.extend(vuelta.iter().cloned());

    // Every accepted movement applied, each key once.
    let claves: BTreeSet<String> = envios
        .iter()
        .filter(|e| e.aceptado)
        .map(|e| e.clave.clone())
        .collect();
    let suma: i64 = envios.iter().filter(|e| e.aceptado).map(|e| e.delta).sum();
    let db = dir.path().join("inventario.db");
    let aplicados = eventually(APLICADOS, Duration::from_millis(100), || async {
        movimientos(&db, producto).await.len() >= claves.len()
    })
    .await;
    let registrados = movimientos(&db, producto).await;
    let stock = s.cantidad(producto).await;

    let rendidas: Vec<&Envio> = envios.iter().filter(|e| !e.aceptado).collect();
    // The figures, before any assertion, so that a failure shows them.
    let intentos: Vec<&Intento> = envios.iter().flat_map(|e| &e.intentos).collect();
    let primer_202 = intentos
        .iter()
        .filter(|i| i.enviado >= matado && i.status == Some(202))
        .map(|i| i.respondido.duration_since(matado))
        .min();
    let n503 = intentos.iter().filter(|i| i.status == Some(503)).count();
    let sin_respuesta = intentos.iter().filter(|i| i.status.is_none()).count();
    let reintentadas = envios.iter().filter(|e| e.intentos.len() > 1).count();
    let cambios = s.monitor_desde(lineas_monitor);
    let cambios: Vec<&str> = cambios
        .iter()
        .filter(|l| l.contains("[ALERTA]") || l.contains("[RECUPERADO]"))
        .map(String::as_str)
        .collect();
    println!(
        "sentinel: master :{viejo} SIGKILLed under load; replica :{nuevo} promoted after {:.2} s; \
         first 202 of a request sent after the kill {} s after it; monitor recovered after \
         {:.2} s; {} requests for {} movements ({} retried), {n503} answered 503, {sin_respuesta} \
         unanswered; the old master back as a replica: {reintegrado}; {} movements after it; \
         {:.1} s in all",
        promovido.as_secs_f64(),
        primer_202.map_or("never".into(), |d| format!("{:.2}", d.as_secs_f64())),
        monitor_recuperado.as_secs_f64(),
        intentos.len(),
        envios.len(),
        reintentadas,
        vuelta.len(),
        inicio.elapsed().as_secs_f64(),
    );
    for l in &cambios {
        println!("  monitor: {l}");
    }
    let mut estados: Vec<String> = intentos
        .iter()
        .filter(|i| i.status.is_some_and(|s| s != 202))
        .map(|i| i.detalle.clone())
        .collect();
    estados.sort();
    estados.dedup();
    for e in estados.iter().take(5) {
        println!("  a refusal: {e}");
    }

    // Every program carried on by itself.
    s.vivos();
    assert!(
        rendidas.is_empty(),
        "movements never accepted within {REANUDACION:?}: {rendidas:#?}\n{}",
        s.logs()
    );
    assert!(
        primer_202.is_some(),
        "no write accepted after the kill\n{}",
        s.logs()
    );
    assert!(
        recuperado,
        "the monitor never logged a recovery: {cambios:?}\n{}",
        s.logs()
    );
    let alerta = cambios
        .iter()
        .position(|l| l.contains("[ALERTA] InventarioService CAIDO"));
    let vuelta_ok = cambios
        .iter()
        .rposition(|l| l.contains("[RECUPERADO] InventarioService OK tras"));
    assert!(
        matches!((alerta, vuelta_ok), (Some(a), Some(r)) if a < r),
        "the monitor logs the outage, then the recovery: {cambios:?}"
    );
    assert!(
        cambios.last().is_some_and(|l| l.contains("[RECUPERADO]")),
        "the monitor ends with the service recovered: {cambios:?}"
    );
    assert!(
        aplicados,
        "{} of {} movements applied\n{}",
        registrados.len(),
        claves.len(),
        s.logs()
    );
    let aplicadas: BTreeSet<String> = registrados.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(registrados.len(), aplicadas.len(), "a key applied twice");
    assert_eq!(aplicadas, claves, "exactly the accepted movements applied");
    assert_eq!(
        registrados.iter().map(|(_, d)| d).sum::<i64>(),
        suma,
        "the database's deltas"
    );
    assert_eq!(
        stock,
        STOCK_INICIAL + suma,
        "each accepted movement moved the stock once"
    );
    assert!(
        !vuelta.is_empty(),
        "movements accepted after the old master came back"
    );

    // The old master is a replica, and stays one: nobody writes to it (a write would be
    // refused READONLY and counted), nothing but its master and the sentinels talks to it.
    assert!(reintegrado, "the old master never rejoined as a replica");
    let viejo_srv = sentinels.replica();
    assert_eq!(viejo_srv.port(), Some(viejo));
    assert!(viejo_srv.cli(&["ROLE"]).starts_with("slave"));
    let errores = viejo_srv.cli(&["INFO", "errorstats"]);
    assert!(
        !errores.contains("READONLY"),
        "something tried to write to the old master: {errores}"
    );
    let clientes = viejo_srv.cli(&["CLIENT", "LIST"]);
    let extranos: Vec<&str> = clientes
        .lines()
        .filter(|l| {
            !l.contains("name=sentinel-")
                && !l.contains("flags=M")
                && !l.contains("cmd=client|list")
        })
        .collect();
    assert!(
        extranos.is_empty(),
        "only its master and the sentinels talk to the old master: {extranos:#?}"
    );
    let espejo = eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { viejo_srv.cli(&["DBSIZE"]) == sentinels.master().cli(&["DBSIZE"]) },
    )
    .await;
    assert!(espejo, "it mirrors the master");
    drop(segunda);
}

/// A field of a `SENTINEL MASTER` reply, which redis-cli prints as alternate name and value lines.
fn campo<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = reply.lines().map(str::trim);
    lines.by_ref().find(|l| *l == name)?;
    lines.next()
}

/// The trade REDIS_WAIT_REPLICAS makes, with the harness's one replica: once it is promoted it
/// has no replica left, so every movement is refused with a 503 that says the task reached the
/// master but no replica, and none is answered 202 unreplicated; when the old master is back,
/// as a replica, the same key is accepted without restarting anything, and applied once
/// however many refused sends queued it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_no_replica_left_writes_are_refused_until_one_is_back() {
    for binary in ["inventario-service", "inventario-worker", "monitor-service"] {
        workspace_binary(binary);
    }
    tokio::time::timeout(Duration::from_secs(120), sin_replica())
        .await
        .expect("the scenario takes under 120 s");
}

async fn sin_replica() {
    let mut sentinels = Sentinels::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut s = Sistema::start(&sentinels, dir.path()).await;
    let url = format!("{}/inventario/1/movimientos", s.base);
    let inicial = s.cantidad(1).await;
    let mover = |clave: &'static str| {
        let r = s
            .http
            .post(&url)
            .header("Idempotency-Key", clave)
            .json(&json!({"tipo": "entrada", "cantidad": 7}))
            .send();
        async move {
            match r.await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (Some(status), r.json::<Value>().await.unwrap_or(Value::Null))
                }
                Err(e) => (None, json!(format!("no answer: {e}"))),
            }
        }
    };
    let (status, cuerpo) = mover("antes").await;
    assert_eq!(status, Some(202), "{cuerpo}");

    let (viejo, matado) = sentinels.kill_master();
    let (mut sentinels, nuevo) = tokio::task::spawn_blocking(move || {
        let nuevo = sentinels.wait_for_promotion(viejo);
        (sentinels, nuevo)
    })
    .await
    .expect("waiting for the promotion");
    // The service finds the new master, whose WAIT finds no replica: refused, and said why.
    let mut intentos = 0;
    let sin_replica = "only 0 of 1 replicas acknowledged";
    let explicado = eventually(REANUDACION, Duration::from_millis(50), || {
        intentos += 1;
        let envio = mover("sin-replica");
        async move {
            let (status, cuerpo) = envio.await;
            assert_ne!(status, Some(202), "accepted with no replica: {cuerpo}");
            status == Some(503)
                && cuerpo["detalle"]
                    .as_str()
                    .is_some_and(|d| d.contains(sin_replica))
        }
    })
    .await;
    let refusal = matado.elapsed();
    assert!(explicado, "no 503 naming the missing replica\n{}", s.logs());
    // And it stays so while no replica is back.
    for _ in 0..10 {
        let (status, cuerpo) = mover("sin-replica").await;
        intentos += 1;
        assert_eq!(status, Some(503), "{cuerpo}");
        assert_eq!(cuerpo["tarea_id"], "sin-replica", "{cuerpo}");
    }

    // The old master comes back as a replica of the new one: the same key is accepted.
    let vuelve = Instant::now();
    let (sentinels, reintegrado) = tokio::task::spawn_blocking(move || {
        sentinels.restart(viejo);
        let ok = testkit::sentinel::wait_until(|| {
            let info = sentinels.replica().cli(&["INFO", "replication"]);
            info.contains(&format!("master_port:{nuevo}")) && info.contains("master_link_status:up")
        });
        (sentinels, ok)
    })
    .await
    .expect("waiting for the old master to rejoin");
    assert!(reintegrado, "the old master never rejoined as a replica");
    let aceptado = eventually(REANUDACION, Duration::from_millis(50), || async {
        mover("sin-replica").await.0 == Some(202)
    })
    .await;
    let aceptado_tras = vuelve.elapsed();
    println!(
        "sentinel, one replica: promoted after the kill; the first 503 naming the missing \
         replica {:.2} s after the kill ({intentos} refused sends of one key); accepted {:.2} s \
         after the old master was restarted",
        refusal.as_secs_f64(),
        aceptado_tras.as_secs_f64()
    );
    assert!(
        aceptado,
        "not accepted once a replica is back\n{}",
        s.logs()
    );
    let db = dir.path().join("inventario.db");
    let aplicados = eventually(APLICADOS, Duration::from_millis(100), || async {
        movimientos(&db, 1).await.len() == 2
    })
    .await;
    assert!(aplicados, "{:?}\n{}", movimientos(&db, 1).await, s.logs());
    let mut claves: Vec<String> = movimientos(&db, 1)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    claves.sort();
    assert_eq!(claves, ["antes", "sin-replica"], "each key applied once");
    assert_eq!(s.cantidad(1).await, inicial + 14);
    s.vivos();
    drop(sentinels);
}

// ---------------------------------------------------------------------------------------------
// The clients

/// One attempt at sending a movement.
#[derive(Debug, Clone)]
struct Intento {
    enviado: Instant,
    respondido: Instant,
    /// `None`: no answer (connection refused or reset, timeout).
    status: Option<u16>,
    /// The error code of a refusal, or why there was no answer.
    detalle: String,
}

/// A movement accepted (202) under `clave`, and every attempt it took.
#[derive(Debug, Clone)]
struct Envio {
    clave: String,
    delta: i64,
    intentos: Vec<Intento>,
    /// Whether it got its 202 (the client gives up on a key after [`REANUDACION`]).
    aceptado: bool,
}

/// Sends movements of `producto`, one after another, until `parar`; each under a key of its
/// own, retried on a 503 or no answer until it is accepted. Returns what it sent; a movement
/// still refused after [`REANUDACION`] is given up, and ends the client.
async fn cliente(
    http: reqwest::Client,
    base: String,
    producto: i64,
    nombre: String,
    parar: Arc<AtomicBool>,
) -> Vec<Envio> {
    let url = format!("{base}/inventario/{producto}/movimientos");
    let mut envios = Vec::new();
    let mut n = 0i64;
    while !parar.load(Ordering::Relaxed) {
        n += 1;
        // Entradas of 1 to 5 and salidas of 1 to 3, from the key's number: different deltas,
        // so that a movement applied twice or lost shows in the sum.
        let (tipo, cantidad, delta) = if n % 3 == 0 {
            let c = n / 3 % 3 + 1;
            ("salida", c, -c)
        } else {
            ("entrada", n % 5 + 1, n % 5 + 1)
        };
        let clave = format!("{nombre}-{n}");
        let cuerpo = json!({"tipo": tipo, "cantidad": cantidad});
        let mut intentos = Vec::new();
        let primero = Instant::now();
        let aceptado = loop {
            let enviado = Instant::now();
            let r = http
                .post(&url)
                .header("Idempotency-Key", &clave)
                .json(&cuerpo)
                .send()
                .await;
            let (status, detalle) = match r {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    (Some(status), format!("{status} {}", v["error"]))
                }
                Err(e) => (None, format!("no answer: {e}")),
            };
            intentos.push(Intento {
                enviado,
                respondido: Instant::now(),
                status,
                detalle: detalle.clone(),
            });
            match status {
                Some(202) => break true,
                Some(503) | None if primero.elapsed() > REANUDACION => break false,
                Some(503) | None => {
                    // A careful client backs off a little before the same key again.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(_) => panic!("movement {clave}: {detalle}"),
            }
        };
        envios.push(Envio {
            clave,
            delta,
            intentos,
            aceptado,
        });
        if !aceptado {
            break;
        }
        tokio::time::sleep(PAUSA).await;
    }
    envios
}

/// The movements the database recorded for `producto`: task id and delta.
async fn movimientos(db: &Path, producto: i64) -> Vec<(String, i64)> {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("open the database");
    let filas = sqlx::query_as("SELECT tarea_id, delta FROM movimientos WHERE producto_id = ?")
        .bind(producto)
        .fetch_all(&mut conn)
        .await
        .expect("read movimientos");
    let _ = conn.close().await;
    filas
}

// ---------------------------------------------------------------------------------------------
// The programs

/// inventario-service, two inventario-workers and monitor-service, on the sentinels' URL.
struct Sistema {
    procesos: Vec<Process>,
    monitor: Process,
    base: String,
    http: reqwest::Client,
}

impl Sistema {
    async fn start(sentinels: &Sentinels, dir: &Path) -> Self {
        let db = format!("sqlite://{}", dir.join("inventario.db").display());
        let comun = |extra: Vec<(&'static str, String)>| {
            let mut env = vec![
                ("REDIS_URL", sentinels.url()),
                ("REDIS_SENTINEL_MASTER", sentinels.master_name().to_owned()),
                ("QUEUE", "inventario".to_owned()),
                ("RUST_LOG", "info".to_owned()),
            ];
            env.extend(extra);
            env
        };
        let port = free_port();
        let mut procesos = vec![Process::program(
            "inventario-service",
            &comun(vec![
                ("HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("DATABASE_URL", db.clone()),
                ("REDIS_TIMEOUT_MS", REDIS_TIMEOUT_MS.to_string()),
                ("REDIS_WAIT_REPLICAS", "1".to_owned()),
                ("REDIS_WAIT_TIMEOUT_MS", WAIT_TIMEOUT_MS.to_string()),
                ("JWT_SECRET", JWT_SECRET.to_owned()),
            ]),
            &dir.join("inventario-service.log"),
        )];
        for hostname in WORKERS {
            procesos.push(Process::program(
                "inventario-worker",
                &comun(vec![
                    ("DATABASE_URL", db.clone()),
                    ("WORKER_HOSTNAME", hostname.to_owned()),
                    ("LEASE_TTL_SECS", "2".to_owned()),
                ]),
                &dir.join(format!("{hostname}.log")),
            ));
        }
        let monitor = Process::program(
            "monitor-service",
            &comun(vec![
                ("HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
                ("PING_INTERVAL_MS", PING_INTERVAL_MS.to_string()),
                ("PING_TIMEOUT_MS", PING_TIMEOUT_MS.to_string()),
            ]),
            &dir.join("monitor-service.log"),
        );
        let s = Sistema {
            procesos,
            monitor,
            base: format!("http://127.0.0.1:{port}"),
            http: cliente_http(),
        };
        let listo = eventually(ARRANQUE, Duration::from_millis(100), || async {
            let r = s.http.get(format!("{}/ready", s.base)).send().await;
            r.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(listo, "inventario-service never ready\n{}", s.logs());
        // The monitor has seen the service answer (through a worker) before the load starts.
        let visto = eventually(ARRANQUE, Duration::from_millis(100), || async {
            s.monitor
                .log()
                .contains("[INICIO] InventarioService responde: OK")
        })
        .await;
        assert!(visto, "the monitor never saw the service\n{}", s.logs());
        s
    }

    async fn cantidad(&self, producto: i64) -> i64 {
        let r: Value = self
            .http
            .get(format!("{}/inventario/{producto}", self.base))
            .send()
            .await
            .expect("GET a producto")
            .json()
            .await
            .expect("JSON");
        r["cantidad"]
            .as_i64()
            .unwrap_or_else(|| panic!("producto {producto}: {r}"))
    }

    /// The monitor's log lines after the first `desde`.
    fn monitor_desde(&self, desde: usize) -> Vec<String> {
        self.monitor
            .log()
            .lines()
            .skip(desde)
            .map(str::to_owned)
            .collect()
    }

    /// Asserts that no program has exited.
    fn vivos(&mut self) {
        for p in self
            .procesos
            .iter_mut()
            .chain(std::iter::once(&mut self.monitor))
        {
            p.assert_alive();
        }
    }

    /// The tail of every log, for failure messages.
    fn logs(&self) -> String {
        self.procesos
            .iter()
            .chain(std::iter::once(&self.monitor))
            .map(|p| format!("--- {} (last 30 lines)\n{}", p.name(), p.log_tail(30)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An HTTP client whose requests carry a bearer token for the writes.
fn cliente_http() -> reqwest::Client {
    let token = testkit::auth::service_token(JWT_SECRET, "sentinel", "1h");
    testkit::auth::bearer_client(&token)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}
