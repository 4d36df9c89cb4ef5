//! Redis full: `maxmemory` reached under `maxmemory-policy noeviction`, with the system running
//! as in production (`inventario-service` and two `inventario-worker` processes on a private
//! `redis-server` limited to 20 MB).
//!
//! What it proves: while Redis refuses writes, a movement is answered at once with a 503 that
//! says why, reads and both workers carry on, and no movement accepted before is lost. When
//! memory is freed, without restarting anything, new writes are accepted and applied, and every
//! movement accepted before is applied exactly once; no movement a live worker held runs
//! twice: no worker takes another, or itself, for dead because its lease could not be renewed.
//!
//! The movements are slowed down (`FAULT_MOVEMENT_DELAY_MS`), so that memory runs out while the
//! workers hold some and others wait on the queue. Each test prints what it measured: how long
//! a write took to be refused, how long after freeing a write was accepted, what the workers
//! logged meanwhile, and the memory used.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::protocol::TaskState;
use shared::Redis;
use testkit::demo::{requeued_in_logs, runs_in_logs, COUNT_RUNS};
use testkit::queue::{consumers_of, held_anywhere, held_by_host, queued_ids, stored, QUEUE};
use testkit::{eventually, free_port, workspace_binary, Process, RedisServer, ServerOptions};

/// The secret the service checks the writes' bearer tokens with.
const JWT_SECRET: &str = "secreto-de-la-prueba-de-redis-lleno";
/// The service's `REDIS_TIMEOUT_MS`: the longest a request may wait on Redis.
const REDIS_TIMEOUT_MS: u64 = 2000;
/// The workers' lease: short, so that the spell outlasts several leases in a few seconds.
const LEASE_TTL_SECS: u64 = 2;
/// Slots per worker: with [`ANTES`] movements, both hold some and some wait on the queue.
const CONCURRENCY: usize = 4;
/// Movements accepted before memory runs out.
const ANTES: usize = 10;
/// How long each movement takes: longer than the fill, so that memory runs out while the
/// workers hold movements not applied yet.
const MOVEMENT_DELAY_MS: u64 = 2000;
/// How long Redis stays full: three leases and more, long enough for any lease to run out.
const SPELL: Duration = Duration::from_secs(3 * LEASE_TTL_SECS + 2);
/// The key the test fills Redis with.
const FILLER: &str = "prueba:relleno";
/// Start-up of the programs, built already.
const ARRANQUE: Duration = Duration::from_secs(30);
/// What a loaded 2-core machine may add to a bound that should be immediate.
const MARGEN: Duration = Duration::from_millis(1500);

/// Redis full for three leases and more: writes refused at once with a clear 503, reads
/// served, both workers alive, nothing accepted lost; when memory is freed, writes are accepted
/// again and every accepted movement is applied exactly once. And no movement that a live
/// worker held while Redis was full runs a second time: no worker takes another, or itself,
/// for dead because its lease could not be renewed. (Before the recoverer waited for its own
/// renewals to succeed for a lease, it judged leases as soon as Redis answered a PING, which a
/// full Redis does: every lease ran out, and each held movement ran two to four times, the
/// stock right only because a movement is applied once per task id.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_full_refuses_writes_clearly_loses_nothing_and_resumes_alone() {
    construir();
    let informe = tokio::time::timeout(Duration::from_secs(120), redis_full())
        .await
        .expect("the scenario takes under 120 s");
    for id in &informe.ids {
        assert_eq!(
            informe.runs.get(id),
            Some(&1),
            "movement {id} ran once: runs {:?}\n{}",
            informe.runs,
            informe.logs
        );
    }
    // The held movements stayed with the workers that held them: no lease was taken for dead.
    assert_eq!(
        informe.requeued, 0,
        "no live worker's movements are put back on the queue\n{}",
        informe.logs
    );
    assert_eq!(informe.repetidos, 0, "no movement delivered twice");
    assert_eq!(
        informe.cuarentena, 0,
        "no copy of a movement ends in quarantine"
    );
}

/// Builds the programs first: cargo may wait for other builds on the machine, which is no
/// part of the scenario's time.
fn construir() {
    for binary in ["inventario-service", "inventario-worker"] {
        workspace_binary(binary);
    }
}

/// What a spell left for the second test to judge.
struct Informe {
    /// The accepted movements.
    ids: Vec<String>,
    /// How many times each task ran, from the workers' logs.
    runs: HashMap<String, usize>,
    /// Messages the recoverers put back on the queue.
    requeued: u64,
    /// Movements a worker found already applied.
    repetidos: usize,
    /// Messages in quarantine at the end.
    cuarentena: usize,
    /// The tail of every log.
    logs: String,
}

/// The scenario, asserting what holds today; returns what the second test judges.
async fn redis_full() -> Informe {
    let redis = RedisServer::start_with(ServerOptions {
        tcp: true,
        args: ["--maxmemory", "20mb", "--maxmemory-policy", "noeviction"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let cliente_redis = Redis::from_url(&redis.url()).expect("redis url");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut s = Sistema::start(&redis.url(), dir.path()).await;

    // 1. Movements accepted while Redis has room, held by both workers or waiting for them.
    let stock1 = s.cantidad(1).await;
    let stock2 = s.cantidad(2).await;
    let mut aceptadas: Vec<(String, i64, i64)> = Vec::new();
    for cantidad in 1..=ANTES as i64 {
        let m = s.mover(1, cantidad).await;
        assert_eq!(m.status, Some(202), "{m:?}");
        aceptadas.push((m.tarea(), 1, cantidad));
    }
    let repartidas = eventually(
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            let a = held_by_host(&cliente_redis, WORKERS[0]).await;
            let b = held_by_host(&cliente_redis, WORKERS[1]).await;
            a > 0 && b > 0 && a + b == 2 * CONCURRENCY
        },
    )
    .await;
    assert!(
        repartidas,
        "both workers hold movements: {} and {}\n{}",
        held_by_host(&cliente_redis, WORKERS[0]).await,
        held_by_host(&cliente_redis, WORKERS[1]).await,
        s.logs()
    );
    let en_cola = queued_ids(&cliente_redis).await.len();

    // 2. Redis full.
    let lineas_antes = s.lineas_worker();
    let lleno_en = Instant::now();
    let lleno = redis.fill_memory(FILLER, 1 << 20).await;
    let llenado = lleno_en.elapsed();
    let ids_antes: Vec<String> = aceptadas.iter().map(|(id, _, _)| id.clone()).collect();
    let terminadas = stored(&cliente_redis, &ids_antes)
        .await
        .iter()
        .filter(|m| m.status == TaskState::Success)
        .count();
    assert_eq!(
        terminadas, 0,
        "memory ran out before any movement was done (took {llenado:?} to fill)"
    );

    // 3. While full: writes refused at once and clearly, reads served, both workers alive.
    let primera = s.mover(2, 1).await;
    assert_eq!(primera.status, Some(503), "{primera:?}");
    let mut rechazos = vec![primera];
    let mut lecturas = 0;
    let fin = Instant::now() + SPELL;
    while Instant::now() < fin {
        let m = s.mover(2, 1).await;
        assert_eq!(m.status, Some(503), "a write while Redis is full: {m:?}");
        rechazos.push(m);
        let inventario = s.get("/inventario").await;
        assert_eq!(
            inventario.status,
            Some(200),
            "a read while full: {inventario:?}"
        );
        assert_eq!(inventario.json.as_array().map(Vec::len), Some(20));
        lecturas += 1;
        // PING needs no memory: /ready says ready while writes are refused. Asserted as it
        // stands, so that a change to it is seen.
        let r = s.get("/ready").await;
        assert_eq!(r.status, Some(200), "/ready while full: {r:?}");
        assert_eq!(r.json["redis"], "ok", "{r:?}");
        s.vivos();
        // Pacing: a few requests a second are enough to see every answer of the spell.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for m in &rechazos {
        // Told apart from an outage: a full Redis refused the send, so nothing was queued
        // (an outage's 503 says the task may have been).
        assert_eq!(m.json["error"], "cola_llena", "{m:?}");
        let detalle = m.json["detalle"].as_str().unwrap_or_default();
        assert!(
            detalle.contains("Redis")
                && detalle.contains("maxmemory")
                && detalle.contains("no se encoló"),
            "the answer says Redis is out of memory and nothing was queued: {detalle}"
        );
        assert!(
            m.latencia < MARGEN,
            "a write is refused at once, not after a timeout: {m:?}"
        );
    }
    let lineas_durante = s.lineas_worker();

    // 4. Memory freed: nothing restarted, writes accepted again.
    let liberado_en = Instant::now();
    let borradas = redis.cli(&["DEL", FILLER]);
    assert_eq!(borradas, "1", "the filler was there to delete");
    let mut rechazos_despues = 0;
    let aceptada = loop {
        let m = s.mover(2, 1).await;
        if m.status == Some(202) {
            break m;
        }
        assert_eq!(m.status, Some(503), "{m:?}");
        rechazos_despues += 1;
        assert!(
            liberado_en.elapsed() < Duration::from_secs(10),
            "no write accepted 10 s after memory was freed: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let reanudado = liberado_en.elapsed();
    aceptadas.push((aceptada.tarea(), 2, 1));
    for cantidad in [100, 200] {
        let m = s.mover(1, cantidad).await;
        assert_eq!(m.status, Some(202), "{m:?}");
        aceptadas.push((m.tarea(), 1, cantidad));
    }

    // Every accepted movement ends SUCCESS, and the stock moved by each once; the refused ones
    // never ran.
    let ids: Vec<String> = aceptadas.iter().map(|(id, _, _)| id.clone()).collect();
    let hechas = eventually(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            stored(&cliente_redis, &ids)
                .await
                .iter()
                .all(|m| m.status == TaskState::Success)
        },
    )
    .await;
    let resultados = stored(&cliente_redis, &ids).await;
    let lineas_fin = s.lineas_worker();
    let runs = runs_in_logs(&s.log_paths());
    let requeued = requeued_in_logs(&s.log_paths());
    let repetidos =
        s.worker_log_count("movement delivered again; already applied, stock unchanged");
    let memoria_final = redis.cli(&["INFO", "memory"]);
    let en_cuarentena = redis.cli(&["LRANGE", shared::keys::QUARANTINE, "0", "-1"]);

    println!(
        "redis_full: filled {:.1} MB in {} ms (used_memory {:.1} MB; maxmemory lowered to \
         {:.1} MB); {en_cola} movements queued and {} held at the fill; first write refused \
         in {} ms ({} refused over {:.1} s, slowest {} ms; {lecturas} reads and /ready checks, \
         all 200); after DEL a write was accepted in {} ms ({rechazos_despues} refused meanwhile); \
         requeued by recovery {requeued}, redeliveries logged {repetidos}",
        lleno.filler_bytes as f64 / 1e6,
        llenado.as_millis(),
        lleno.used_memory as f64 / 1e6,
        lleno.maxmemory as f64 / 1e6,
        2 * CONCURRENCY,
        rechazos[0].latencia.as_millis(),
        rechazos.len(),
        SPELL.as_secs_f64(),
        rechazos
            .iter()
            .map(|m| m.latencia)
            .max()
            .unwrap_or_default()
            .as_millis(),
        reanudado.as_millis(),
    );
    println!("  the 503's detalle: {}", rechazos[0].json["detalle"]);
    if !en_cuarentena.is_empty() {
        println!("  quarantined: {en_cuarentena}");
    }
    for (i, w) in s.workers.iter().enumerate() {
        println!(
            "  {} during the spell: {}",
            WORKERS[i],
            resumen(&w.json_log()[lineas_antes[i]..lineas_durante[i]])
        );
        println!(
            "  {} after memory was freed: {}",
            WORKERS[i],
            resumen(&w.json_log()[lineas_durante[i]..lineas_fin[i]])
        );
    }
    println!(
        "  after: {}",
        memoria_final
            .lines()
            .filter(|l| l.starts_with("used_memory_human") || l.starts_with("maxmemory_human"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    assert!(
        hechas,
        "every accepted movement ends SUCCESS: {:?}\n{}",
        resultados
            .iter()
            .map(|m| (&m.task_id, &m.status))
            .collect::<Vec<_>>(),
        s.logs()
    );
    let suma = |producto: i64| -> i64 {
        aceptadas
            .iter()
            .filter(|(_, p, _)| *p == producto)
            .map(|(_, _, c)| c)
            .sum()
    };
    assert_eq!(
        s.cantidad(1).await,
        stock1 + suma(1),
        "producto 1: each applied once"
    );
    // Producto 2 moved only by the write accepted after the spell: the refused ones queued
    // nothing.
    assert_eq!(
        s.cantidad(2).await,
        stock2 + suma(2),
        "producto 2: refused writes changed nothing"
    );
    // Nothing left held. (A copy of a movement that ran twice may end in quarantine: that is
    // the second test's to judge.)
    let suelto = eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let (unacked, index, inflight, _) = held_anywhere(&cliente_redis).await;
            (unacked, index, inflight.len()) == (0, 0, 0)
        },
    )
    .await;
    assert!(
        suelto,
        "nothing stays held: {:?}",
        held_anywhere(&cliente_redis).await
    );
    let cuarentena = held_anywhere(&cliente_redis).await.3;
    s.vivos();
    Informe {
        ids,
        runs,
        requeued,
        repetidos,
        cuarentena,
        logs: s.logs(),
    }
}

// ---------------------------------------------------------------------------------------------
// The programs

const WORKERS: [&str; 2] = ["lleno-a@test", "lleno-b@test"];

/// inventario-service and two inventario-worker processes on one Redis and database file.
struct Sistema {
    servicio: Process,
    workers: Vec<Process>,
    base: String,
    http: reqwest::Client,
}

impl Sistema {
    async fn start(redis_url: &str, dir: &Path) -> Self {
        let db = format!("sqlite://{}", dir.join("inventario.db").display());
        let port = free_port();
        let servicio = Process::program(
            "inventario-service",
            &[
                ("REDIS_URL", redis_url.to_owned()),
                ("QUEUE", QUEUE.to_owned()),
                ("HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("DATABASE_URL", db.clone()),
                ("REDIS_TIMEOUT_MS", REDIS_TIMEOUT_MS.to_string()),
                ("JWT_SECRET", JWT_SECRET.to_owned()),
                ("RUST_LOG", "info".to_owned()),
            ],
            &dir.join("inventario-service.log"),
        );
        let workers = WORKERS
            .iter()
            .map(|hostname| {
                let mut p = Process::program(
                    "inventario-worker",
                    &[
                        ("REDIS_URL", redis_url.to_owned()),
                        ("QUEUE", QUEUE.to_owned()),
                        ("DATABASE_URL", db.clone()),
                        ("WORKER_HOSTNAME", (*hostname).to_owned()),
                        ("LEASE_TTL_SECS", LEASE_TTL_SECS.to_string()),
                        ("CONCURRENCY", CONCURRENCY.to_string()),
                        ("FAULT_MOVEMENT_DELAY_MS", MOVEMENT_DELAY_MS.to_string()),
                        ("LOG_FORMAT", "json".to_owned()),
                        (COUNT_RUNS.0, COUNT_RUNS.1.to_owned()),
                    ],
                    &dir.join(format!("{hostname}.log")),
                );
                p.assert_alive();
                p
            })
            .collect();
        let s = Sistema {
            servicio,
            workers,
            base: format!("http://127.0.0.1:{port}"),
            http: cliente(),
        };
        let listo = eventually(ARRANQUE, Duration::from_millis(100), || async {
            s.get("/ready").await.status == Some(200)
        })
        .await;
        assert!(listo, "inventario-service never ready\n{}", s.logs());
        let cliente_redis = Redis::from_url(redis_url).expect("redis url");
        for hostname in WORKERS {
            let arriba = eventually(ARRANQUE, Duration::from_millis(50), || async {
                !consumers_of(&cliente_redis, hostname).await.is_empty()
            })
            .await;
            assert!(arriba, "{hostname} never took its lease\n{}", s.logs());
        }
        s
    }

    async fn get(&self, path: &str) -> Medida {
        medir(self.http.get(format!("{}{path}", self.base))).await
    }

    /// POST a movement of `cantidad` units into `producto`.
    async fn mover(&self, producto: i64, cantidad: i64) -> Medida {
        medir(
            self.http
                .post(format!("{}/inventario/{producto}/movimientos", self.base))
                .json(&json!({"tipo": "entrada", "cantidad": cantidad})),
        )
        .await
    }

    async fn cantidad(&self, producto: i64) -> i64 {
        let m = self.get(&format!("/inventario/{producto}")).await;
        m.json["cantidad"]
            .as_i64()
            .unwrap_or_else(|| panic!("producto {producto}: {m:?}"))
    }

    /// Asserts that none of the three programs has exited.
    fn vivos(&mut self) {
        self.servicio.assert_alive();
        for w in &mut self.workers {
            w.assert_alive();
        }
    }

    /// How many JSON lines each worker has logged so far.
    fn lineas_worker(&self) -> Vec<usize> {
        self.workers.iter().map(|w| w.json_log().len()).collect()
    }

    fn log_paths(&self) -> Vec<std::path::PathBuf> {
        self.workers
            .iter()
            .map(|w| w.log_path().to_owned())
            .collect()
    }

    /// Lines whose message is `message`, over both workers' logs.
    fn worker_log_count(&self, message: &str) -> usize {
        self.workers
            .iter()
            .flat_map(|w| w.json_log())
            .filter(|v| v["message"] == message)
            .count()
    }

    /// The tail of every log, for failure messages.
    fn logs(&self) -> String {
        std::iter::once(&self.servicio)
            .chain(&self.workers)
            .map(|p| format!("--- {} (last 30 lines)\n{}", p.name(), p.log_tail(30)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The worker log lines of a stretch, counted by level, message and component, leaving out the
/// executor's per-task debug lines.
fn resumen(lineas: &[Value]) -> String {
    let mut n: BTreeMap<String, usize> = BTreeMap::new();
    for v in lineas {
        if v["level"] == "DEBUG" {
            continue;
        }
        let component = v["component"]
            .as_str()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        let error = v["error"]
            .as_str()
            .or(v["reason"].as_str())
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        *n.entry(format!(
            "{} {}{component}{error}",
            v["level"].as_str().unwrap_or("?"),
            v["message"].as_str().unwrap_or("?")
        ))
        .or_default() += 1;
    }
    if n.is_empty() {
        return "nothing".into();
    }
    n.iter()
        .map(|(line, count)| format!("{count} x {line}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An HTTP client whose requests carry a bearer token for the writes.
fn cliente() -> reqwest::Client {
    let token = testkit::auth::service_token(JWT_SECRET, "redis-full", "1h");
    testkit::auth::bearer_client(&token)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// One answer: status (`None`: no answer), latency and body.
#[derive(Debug)]
struct Medida {
    status: Option<u16>,
    latencia: Duration,
    /// The body as JSON (`Value::Null` if it is not JSON); without an answer, why not.
    json: Value,
}

impl Medida {
    /// The task id of an accepted movement.
    fn tarea(&self) -> String {
        self.json["tarea_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no tarea_id: {self:?}"))
            .to_owned()
    }
}

async fn medir(request: reqwest::RequestBuilder) -> Medida {
    let started = Instant::now();
    let result = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok::<_, reqwest::Error>((status, response.text().await?))
    }
    .await;
    let latencia = started.elapsed();
    match result {
        Ok((status, text)) => Medida {
            status: Some(status),
            latencia,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
        },
        Err(e) => Medida {
            status: None,
            latencia,
            json: Value::String(format!("no answer: {e}")),
        },
    }
}
