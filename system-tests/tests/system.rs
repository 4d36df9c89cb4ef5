//! The whole system as it runs in production: `inventario-service`, `inventario-worker` and
//! `monitor-service` as real processes (built by `workspace_binary`), a private `redis-server`
//! on a loopback port, the SQLite file in a temporary directory, HTTP over real sockets.
//!
//! - Redis killed (SIGKILL) and restarted under load: nobody exits, `/ready` and `/monitor`
//!   report the outage within their timeouts, both recover by themselves, and the tasks queued
//!   before the kill (append-only file, `appendfsync always`) survive and run.
//! - A slow worker and 1000 concurrent clients: the monitor answers within its timeout, every
//!   request is answered or cleanly refused, resident memory stays bounded.
//! - The Redis password never reaches a log, whether Redis answers, is down or refuses it.
//! - The body limit over a real socket, and the compose file publishing Redis and Redis
//!   Insight on loopback only (the service and the monitor too, unless `PUBLISH_ADDR` says).
//!
//! The clients carry a bearer token for the service's writes, from its `token` subcommand.
//!
//! Every scenario prints its figures; every wait polls a condition with a deadline.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::shutdown::CancellationToken;
use testkit::{eventually, free_port, workspace_binary, Process, RedisServer, ServerOptions};

/// inventario-service's `REDIS_TIMEOUT_MS`, given explicitly (it is also the default): the
/// longest a request may wait on Redis before answering 503.
const REDIS_TIMEOUT_MS: u64 = 2000;
/// The monitor's defaults, given explicitly.
const PING_INTERVAL_MS: u64 = 250;
const PING_TIMEOUT_MS: u64 = 750;
/// What a loaded 2-core machine may add to any bound (scheduling, a debug build).
const MARGEN: Duration = Duration::from_millis(1500);
/// A request without an answer after this long has hung.
const COLGADA: Duration = Duration::from_secs(30);
/// Start-up of the three programs (the first may wait for cargo).
const ARRANQUE: Duration = Duration::from_secs(120);
/// The secret inventario-service checks the writes' bearer tokens with.
const JWT_SECRET: &str = "secreto-de-las-pruebas-del-sistema";

// ---------------------------------------------------------------------------------------------
// The programs

/// How to start the system.
#[derive(Default)]
struct Opciones {
    /// More variables for the worker (`FAULT_DELAY_MS`, ...).
    worker: Vec<(&'static str, String)>,
    /// `RUST_LOG` of the three programs (default `info`, as in production).
    rust_log: Option<&'static str>,
}

/// The three programs on one Redis URL and one database file.
struct Sistema {
    servicio: Process,
    worker: Process,
    monitor: Process,
    url_servicio: String,
    url_monitor: String,
    http: reqwest::Client,
    /// The SQLite file the service and the worker share.
    db: std::path::PathBuf,
}

impl Sistema {
    fn start(redis_url: &str, dir: &Path, opciones: Opciones) -> Self {
        // Cargo may wait for other builds on the machine: not part of any scenario's time.
        let built = Instant::now();
        for binary in ["inventario-service", "inventario-worker", "monitor-service"] {
            workspace_binary(binary);
        }
        if built.elapsed() > Duration::from_secs(1) {
            println!(
                "(the programs were built or checked by cargo in {:.1} s)",
                built.elapsed().as_secs_f64()
            );
        }
        let db = format!("sqlite://{}", dir.join("inventario.db").display());
        let (port_servicio, port_monitor) = (free_port(), free_port());
        let comun = |extra: Vec<(&'static str, String)>| {
            let mut env = vec![
                ("REDIS_URL", redis_url.to_owned()),
                ("QUEUE", "inventario".to_owned()),
                ("RUST_LOG", opciones.rust_log.unwrap_or("info").to_owned()),
            ];
            env.extend(extra);
            env
        };
        let servicio = Process::program(
            "inventario-service",
            &comun(vec![
                ("HTTP_ADDR", format!("127.0.0.1:{port_servicio}")),
                ("DATABASE_URL", db.clone()),
                ("REDIS_TIMEOUT_MS", REDIS_TIMEOUT_MS.to_string()),
                ("JWT_SECRET", JWT_SECRET.to_owned()),
            ]),
            &dir.join("inventario-service.log"),
        );
        let mut worker_env = vec![
            ("DATABASE_URL", db.clone()),
            ("WORKER_HOSTNAME", "sistema@test".to_owned()),
        ];
        worker_env.extend(opciones.worker);
        let worker = Process::program(
            "inventario-worker",
            &comun(worker_env),
            &dir.join("inventario-worker.log"),
        );
        let monitor = Process::program(
            "monitor-service",
            &comun(vec![
                ("HTTP_ADDR", format!("127.0.0.1:{port_monitor}")),
                ("PING_INTERVAL_MS", PING_INTERVAL_MS.to_string()),
                ("PING_TIMEOUT_MS", PING_TIMEOUT_MS.to_string()),
            ]),
            &dir.join("monitor-service.log"),
        );
        Sistema {
            servicio,
            worker,
            monitor,
            url_servicio: format!("http://127.0.0.1:{port_servicio}"),
            url_monitor: format!("http://127.0.0.1:{port_monitor}"),
            http: cliente(),
            db: dir.join("inventario.db"),
        }
    }

    /// Freezes the worker (SIGSTOP) at an instant it holds no SQLite write lock. Stopped in
    /// the middle of a movement's transaction, it would keep the database's one writer slot,
    /// and every write, the service's record of a movement request included, would wait for
    /// it and then answer 503: true of any SQLite writer, and not what these scenarios study.
    async fn congelar_worker(&mut self) {
        use sqlx::Connection;
        let opciones = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.db)
            .busy_timeout(Duration::from_millis(200));
        let mut conn = sqlx::SqliteConnection::connect_with(&opciones)
            .await
            .expect("open the database");
        for _ in 0..100 {
            self.worker.signal(libc::SIGSTOP);
            if sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .is_ok()
            {
                sqlx::query("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .expect("rollback");
                return;
            }
            self.worker.signal(libc::SIGCONT);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the worker held the database's write lock at each of 100 tries");
    }

    /// Waits until both HTTP servers answer `/health`.
    async fn arrancado(&self) {
        for url in [&self.url_servicio, &self.url_monitor] {
            let up = eventually(ARRANQUE, Duration::from_millis(100), || async {
                self.http
                    .get(format!("{url}/health"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await;
            assert!(up, "{url} never answered /health\n{}", self.logs());
        }
    }

    /// Waits until `/ready` is 200 and the monitor's live ping is answered with `estado`.
    async fn en_estado(&self, estado: &str, limit: Duration) -> bool {
        let ready = eventually(limit, Duration::from_millis(100), || async {
            self.get(&self.url_servicio, "/ready").await.status == Some(200)
        })
        .await;
        ready
            && eventually(limit, Duration::from_millis(100), || async {
                let m = self.get(&self.url_monitor, "/monitor").await;
                m.status.is_some() && m.json["estado"] == estado
            })
            .await
    }

    async fn get(&self, base: &str, path: &str) -> Medida {
        medir(self.http.get(format!("{base}{path}"))).await
    }

    async fn post(&self, path: &str, body: &Value) -> Medida {
        medir(
            self.http
                .post(format!("{}{path}", self.url_servicio))
                .json(body),
        )
        .await
    }

    fn procesos(&mut self) -> [&mut Process; 3] {
        [&mut self.servicio, &mut self.worker, &mut self.monitor]
    }

    /// Asserts that none of the three programs has exited.
    fn todos_vivos(&mut self) {
        let logs = self.logs();
        for p in self.procesos() {
            assert!(p.is_running(), "{} exited\n{logs}", p.name());
        }
    }

    /// The tail of every log, for failure messages.
    fn logs(&self) -> String {
        [&self.servicio, &self.worker, &self.monitor]
            .iter()
            .map(|p| {
                let log = p.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("--- {} (last 30 lines)\n{tail}", p.name())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An HTTP client as the system's users have: every request carries a bearer token for the
/// writes (reads ignore it).
fn cliente() -> reqwest::Client {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let token =
        TOKEN.get_or_init(|| testkit::auth::service_token(JWT_SECRET, "system-tests", "6h"));
    testkit::auth::bearer_client(token)
        .timeout(COLGADA)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// One request: its status (None: no answer), latency and body.
#[derive(Debug, Clone)]
struct Medida {
    status: Option<u16>,
    latencia: Duration,
    json: Value,
    text: String,
    error: Option<String>,
}

async fn medir(request: reqwest::RequestBuilder) -> Medida {
    let started = Instant::now();
    let result = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok::<_, reqwest::Error>((status, text))
    }
    .await;
    let latencia = started.elapsed();
    match result {
        Ok((status, text)) => Medida {
            status: Some(status),
            latencia,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            error: None,
        },
        Err(e) => Medida {
            status: None,
            latencia,
            json: Value::Null,
            text: String::new(),
            error: Some(format!("{e:?}")),
        },
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Prints how long a test took when it ends (passing or not).
struct Cronometro(&'static str, Instant);

impl Cronometro {
    fn start(name: &'static str) -> Self {
        Cronometro(name, Instant::now())
    }
}

impl Drop for Cronometro {
    fn drop(&mut self) {
        println!("{}: {:.1} s", self.0, self.1.elapsed().as_secs_f64());
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Redis killed and restarted under load (and, beyond it, Redis frozen)

/// One request of the background load.
#[derive(Debug, Clone)]
struct Registro {
    inicio: Instant,
    latencia: Duration,
    ruta: &'static str,
    status: Option<u16>,
    tarea: Option<String>,
}

/// The background load: two clients, each sending GET /inventario and POST a movement (one
/// unit into producto 1) over and over until stopped; every request recorded.
struct Carga {
    stop: CancellationToken,
    hechas: Arc<AtomicUsize>,
    tareas: Vec<tokio::task::JoinHandle<Vec<Registro>>>,
}

impl Carga {
    fn start(s: &Sistema) -> Self {
        let stop = CancellationToken::new();
        let hechas = Arc::new(AtomicUsize::new(0));
        let tareas = (0..2)
            .map(|_| {
                let (http, base) = (s.http.clone(), s.url_servicio.clone());
                let (stop, hechas) = (stop.clone(), hechas.clone());
                tokio::spawn(async move {
                    let mut registros = Vec::new();
                    while !stop.is_cancelled() {
                        let inicio = Instant::now();
                        let m = medir(http.get(format!("{base}/inventario"))).await;
                        registros.push(Registro {
                            inicio,
                            latencia: m.latencia,
                            ruta: "GET /inventario",
                            status: m.status,
                            tarea: None,
                        });
                        let inicio = Instant::now();
                        let m = medir(
                            http.post(format!("{base}/inventario/1/movimientos"))
                                .json(&json!({"tipo": "entrada", "cantidad": 1})),
                        )
                        .await;
                        registros.push(Registro {
                            inicio,
                            latencia: m.latencia,
                            ruta: "POST movimientos",
                            status: m.status,
                            tarea: m.json["tarea_id"].as_str().map(str::to_owned),
                        });
                        hechas.fetch_add(2, Ordering::Relaxed);
                        // Pacing, so that the load does not starve the programs of 2 cores.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    registros
                })
            })
            .collect();
        Carga {
            stop,
            hechas,
            tareas,
        }
    }

    /// Waits until `n` more requests have been answered.
    async fn avanza(&self, n: usize) -> bool {
        let from = self.hechas.load(Ordering::Relaxed);
        eventually(
            Duration::from_secs(30),
            Duration::from_millis(20),
            || async { self.hechas.load(Ordering::Relaxed) >= from + n },
        )
        .await
    }

    async fn parar(self) -> Vec<Registro> {
        self.stop.cancel();
        let mut registros = Vec::new();
        for t in self.tareas {
            registros.extend(t.await.expect("load task"));
        }
        registros
    }
}

/// What the load saw during an outage, and whether its accepted movements all ran.
struct Balance {
    total: usize,
    durante: BTreeMap<(&'static str, Option<u16>), usize>,
    max_durante: Duration,
    movimientos: usize,
    reintentadas: usize,
    hechas: usize,
    delta: i64,
}

/// Checks the load's requests: none unanswered, CRUD always 200, movements 202 or 503, none
/// slower than the Redis timeout during `[desde, hasta)`. A 503 movement may still have reached
/// Redis at the instant of the outage (its reply lost), so its answer names the task: each is
/// retried now with that `Idempotency-Key`, as a client would. Then every movement, accepted at
/// once or on retry, has run, and producto 1's stock moved by exactly their number: none lost,
/// none applied twice.
async fn balance(
    s: &Sistema,
    redis: &shared::Redis,
    registros: &[Registro],
    desde: Instant,
    hasta: Instant,
    stock_antes: i64,
) -> Balance {
    let sin_respuesta: Vec<&Registro> = registros.iter().filter(|r| r.status.is_none()).collect();
    assert!(sin_respuesta.is_empty(), "unanswered: {sin_respuesta:?}");
    for r in registros {
        match r.ruta {
            "GET /inventario" => assert_eq!(r.status, Some(200), "{r:?}"),
            _ => {
                assert!(matches!(r.status, Some(202 | 503)), "{r:?}");
                assert!(
                    r.tarea.is_some(),
                    "a movement's answer names its task: {r:?}"
                );
            }
        }
    }
    let mut durante = BTreeMap::new();
    let mut max_durante = Duration::ZERO;
    for r in registros
        .iter()
        .filter(|r| r.inicio >= desde && r.inicio < hasta)
    {
        *durante.entry((r.ruta, r.status)).or_default() += 1;
        max_durante = max_durante.max(r.latencia);
    }
    assert!(
        max_durante < Duration::from_millis(REDIS_TIMEOUT_MS) + MARGEN,
        "a request took {max_durante:?} during the outage"
    );
    let movimientos: Vec<&Registro> = registros
        .iter()
        .filter(|r| r.ruta == "POST movimientos")
        .collect();
    let mut reintentadas = 0;
    for r in movimientos.iter().filter(|r| r.status == Some(503)) {
        let tarea = r.tarea.as_deref().expect("checked above");
        let m = medir(
            s.http
                .post(format!("{}/inventario/1/movimientos", s.url_servicio))
                .header("Idempotency-Key", tarea)
                .json(&json!({"tipo": "entrada", "cantidad": 1})),
        )
        .await;
        assert_eq!(m.status, Some(202), "retry of {tarea}: {m:?}");
        assert_eq!(m.json["tarea_id"], tarea);
        reintentadas += 1;
    }
    let todas: Vec<String> = movimientos.iter().filter_map(|r| r.tarea.clone()).collect();
    let hechas = Cell::new(0);
    let ok = eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let e = estados(redis, &todas).await;
            hechas.set(e.iter().filter(|e| *e == "SUCCESS").count());
            hechas.get() == todas.len()
        },
    )
    .await;
    assert!(ok, "movements done: {}/{}", hechas.get(), todas.len());
    let delta = cantidad(s, 1).await - stock_antes;
    assert_eq!(
        delta,
        todas.len() as i64,
        "stock moved {delta} for {} movements ({reintentadas} retried after a 503)",
        todas.len()
    );
    Balance {
        total: registros.len(),
        durante,
        max_durante,
        movimientos: todas.len(),
        reintentadas,
        hechas: hechas.get(),
        delta,
    }
}

async fn cantidad(s: &Sistema, id: i64) -> i64 {
    let m = s.get(&s.url_servicio, &format!("/inventario/{id}")).await;
    m.json["cantidad"]
        .as_i64()
        .unwrap_or_else(|| panic!("producto {id}: {m:?}"))
}

/// The stored state of each task (`PENDING` when nothing is stored yet).
async fn estados(redis: &shared::Redis, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let keys: Vec<String> = chunk
            .iter()
            .map(|id| shared::keys::result_key(id))
            .collect();
        let values: Vec<Option<String>> = redis
            .run(|mut c| {
                let keys = &keys;
                async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await }
            })
            .await
            .expect("MGET results");
        out.extend(values.into_iter().map(|v| {
            v.and_then(|v| serde_json::from_str::<Value>(&v).ok())
                .and_then(|m| m["status"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "PENDING".into())
        }));
    }
    out
}

/// `/ready` and `/monitor` probed side by side from `desde`, each until it has reported the
/// outage (503; CAIDO) and at least `min` has passed (at most 30 s).
struct Sondeo {
    ready: Vec<(Duration, Medida)>,
    monitor: Vec<(Duration, Medida)>,
}

impl Sondeo {
    async fn durante(s: &Sistema, desde: Instant, min: Duration) -> Self {
        let sondear = |base: String, path: &'static str| {
            let http = s.http.clone();
            async move {
                let mut medidas = Vec::new();
                let mut visto = false;
                let deadline = desde + Duration::from_secs(30);
                loop {
                    let m = medir(http.get(format!("{base}{path}"))).await;
                    visto |= match path {
                        "/ready" => m.status == Some(503),
                        _ => m.json["estado"] == "CAIDO",
                    };
                    medidas.push((desde.elapsed(), m));
                    if (visto && desde.elapsed() >= min) || Instant::now() >= deadline {
                        return medidas;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let (ready, monitor) = tokio::join!(
            sondear(s.url_servicio.clone(), "/ready"),
            sondear(s.url_monitor.clone(), "/monitor")
        );
        let sondeo = Sondeo { ready, monitor };
        assert!(
            sondeo.ready_503() > 0,
            "/ready never said 503: {:?}",
            sondeo.ready
        );
        assert!(
            sondeo.monitor_caido() > 0,
            "/monitor never said CAIDO: {:?}",
            sondeo.monitor
        );
        for (_, m) in &sondeo.monitor {
            if m.json["estado"] == "CAIDO" {
                assert_eq!(m.status, Some(503), "{m:?}");
            }
        }
        let (ready_max, monitor_max) = (sondeo.ready_max(), sondeo.monitor_max());
        assert!(
            ready_max < Duration::from_millis(REDIS_TIMEOUT_MS) + MARGEN,
            "/ready took {ready_max:?}"
        );
        assert!(
            monitor_max < Duration::from_millis(PING_TIMEOUT_MS) + MARGEN,
            "/monitor took {monitor_max:?}"
        );
        sondeo
    }

    fn ready_503(&self) -> usize {
        self.ready
            .iter()
            .filter(|(_, m)| m.status == Some(503))
            .count()
    }

    fn monitor_caido(&self) -> usize {
        self.monitor
            .iter()
            .filter(|(_, m)| m.json["estado"] == "CAIDO")
            .count()
    }

    fn ready_max(&self) -> Duration {
        slowest(&self.ready)
    }

    fn monitor_max(&self) -> Duration {
        slowest(&self.monitor)
    }

    fn resumen(&self) -> String {
        let first_503 = self
            .ready
            .iter()
            .find(|(_, m)| m.status == Some(503))
            .map(|(t, _)| ms(*t))
            .unwrap_or_default();
        format!(
            "ready503={}/{} (first after {first_503} ms, max latency {} ms), \
             /monitor CAIDO {}/{} (max latency {} ms)",
            self.ready_503(),
            self.ready.len(),
            ms(self.ready_max()),
            self.monitor_caido(),
            self.monitor.len(),
            ms(self.monitor_max()),
        )
    }
}

/// Waits for `/ready` 200, then for the monitor to be OK again; seconds from `desde` to each.
async fn recuperacion(s: &Sistema, desde: Instant) -> (f64, f64) {
    let ready = eventually(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { s.get(&s.url_servicio, "/ready").await.status == Some(200) },
    )
    .await;
    assert!(ready, "/ready did not come back\n{}", s.logs());
    let ready = desde.elapsed().as_secs_f64();
    let monitor = eventually(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let m = s.get(&s.url_monitor, "/monitor").await;
            m.status == Some(200) && m.json["estado"] == "OK"
        },
    )
    .await;
    assert!(monitor, "the monitor did not come back to OK\n{}", s.logs());
    (ready, desde.elapsed().as_secs_f64())
}

/// The monitor's recorded changes after `desde`: when it first went CAIDO, and when it was
/// next OK.
async fn historial_de_la_caida(
    s: &Sistema,
    desde: chrono::DateTime<chrono::Utc>,
) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let h = s
        .get(&s.url_monitor, "/monitor/historial?limite=10000")
        .await;
    let cambios = h.json["cambios"].as_array().cloned().unwrap_or_default();
    let en = |c: &Value| {
        c["en"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let caido = cambios
        .iter()
        .filter(|c| c["a"] == "CAIDO")
        .filter_map(en)
        .filter(|t| *t >= desde)
        .min()
        .unwrap_or_else(|| panic!("no CAIDO in the history: {}", h.text));
    let ok = cambios
        .iter()
        .filter(|c| c["a"] == "OK")
        .filter_map(en)
        .filter(|t| *t > caido)
        .min()
        .unwrap_or_else(|| panic!("no recovery in the history: {}", h.text));
    (caido, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_nobody_exits_everyone_reports_it_and_recovers_and_queued_tasks_survive() {
    let _t = Cronometro::start(
        "redis_outage_nobody_exits_everyone_reports_it_and_recovers_and_queued_tasks_survive",
    );
    let mut redis = RedisServer::start_with(ServerOptions {
        tcp: true,
        appendonly: true,
        args: vec!["--appendfsync".into(), "always".into()],
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut s = Sistema::start(&redis.url(), dir.path(), Opciones::default());
    s.arrancado().await;
    assert!(
        s.en_estado("OK", ARRANQUE).await,
        "not ready and OK\n{}",
        s.logs()
    );
    let cliente_redis = shared::Redis::from_url(&redis.url()).expect("redis url");
    let (stock1, stock2) = (cantidad(&s, 1).await, cantidad(&s, 2).await);
    let carga = Carga::start(&s);
    assert!(
        carga.avanza(40).await,
        "the load does not run\n{}",
        s.logs()
    );

    // Tasks that are in Redis, and only there, when it dies: the worker is frozen while they
    // are queued, and thawed once Redis is gone.
    const N: usize = 20;
    let congelado = Instant::now();
    s.congelar_worker().await;
    let mut encoladas = Vec::new();
    for _ in 0..N {
        let m = s
            .post(
                "/inventario/2/movimientos",
                &json!({"tipo": "entrada", "cantidad": 1}),
            )
            .await;
        assert_eq!(m.status, Some(202), "{m:?}");
        encoladas.push(m.json["tarea_id"].as_str().expect("tarea_id").to_owned());
    }
    let lista = shared::keys::queue_list("inventario", shared::worker::BUSINESS_PRIORITY);
    let pendientes = redis.cli(&["LRANGE", &lista, "0", "-1"]);
    for id in &encoladas {
        assert!(pendientes.contains(id.as_str()), "{id} is not queued");
    }

    let caida_reloj = chrono::Utc::now();
    let caida = Instant::now();
    redis.kill();
    s.worker.signal(libc::SIGCONT);
    let congelado_ms = ms(congelado.elapsed());
    let sondeo = Sondeo::durante(&s, caida, Duration::from_secs(4)).await;
    let down = caida.elapsed();
    s.todos_vivos();
    redis.restart();
    let vuelta = Instant::now();
    let (ready_s, monitor_s) = recuperacion(&s, vuelta).await;
    assert!(carga.avanza(20).await, "the load stalled\n{}", s.logs());
    let registros = carga.parar().await;

    // The tasks queued before the kill: every one ran, once.
    let sobrevivieron = Cell::new(0);
    let todas = eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let e = estados(&cliente_redis, &encoladas).await;
            sobrevivieron.set(e.iter().filter(|e| *e == "SUCCESS").count());
            sobrevivieron.get() == N
        },
    )
    .await;
    let sobrevivieron = sobrevivieron.get();
    assert!(
        todas,
        "queued tasks survived {sobrevivieron}/{N}\n{}",
        s.logs()
    );
    assert_eq!(
        cantidad(&s, 2).await,
        stock2 + N as i64,
        "each applied once"
    );

    let b = balance(&s, &cliente_redis, &registros, caida, vuelta, stock1).await;
    let (caido, ok) = historial_de_la_caida(&s, caida_reloj).await;
    s.todos_vivos();
    println!(
        "redis outage: down={:.1}s (worker frozen {congelado_ms} ms before the kill) {}; \
         monitor CAIDO after {:.3}s (history), recovered: /ready after {ready_s:.2}s, \
         monitor OK after {monitor_s:.2}s (history: {:.2}s after the restart); \
         load: {} requests, during the outage {:?}, max request latency {} ms; \
         movements {}/{} done ({} retried with their Idempotency-Key after a 503), stock +{}; queued tasks survived {sobrevivieron}/{N}",
        down.as_secs_f64(),
        sondeo.resumen(),
        (caido - caida_reloj).as_seconds_f64(),
        (ok - caida_reloj).as_seconds_f64() - down.as_secs_f64(),
        b.total,
        b.durante,
        ms(b.max_durante),
        b.hechas,
        b.movimientos,
        b.reintentadas,
        b.delta,
    );
}

/// Redis frozen (SIGSTOP): connections stay open and nothing answers, so only the programs'
/// own timeouts stand between a client and a hung request. Every request still answers within
/// `REDIS_TIMEOUT_MS` (the service) or `PING_TIMEOUT_MS` (the monitor) plus the margin, and
/// everything resumes when Redis thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_frozen_every_request_still_answers_within_its_timeout() {
    let _t = Cronometro::start("redis_frozen_every_request_still_answers_within_its_timeout");
    let redis = RedisServer::start_tcp();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut s = Sistema::start(&redis.url(), dir.path(), Opciones::default());
    s.arrancado().await;
    assert!(
        s.en_estado("OK", ARRANQUE).await,
        "not ready and OK\n{}",
        s.logs()
    );
    let cliente_redis = shared::Redis::from_url(&redis.url()).expect("redis url");
    let stock1 = cantidad(&s, 1).await;
    let pid = i32::try_from(redis.pid().expect("redis-server runs")).expect("pid");
    let carga = Carga::start(&s);
    assert!(
        carga.avanza(40).await,
        "the load does not run\n{}",
        s.logs()
    );

    let desde_reloj = chrono::Utc::now();
    let desde = Instant::now();
    // SAFETY: kill(2) on the test's own redis-server; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let sondeo = Sondeo::durante(&s, desde, Duration::from_secs(5)).await;
    let congelado = desde.elapsed();
    s.todos_vivos();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let vuelta = Instant::now();
    let (ready_s, monitor_s) = recuperacion(&s, vuelta).await;
    assert!(carga.avanza(20).await, "the load stalled\n{}", s.logs());
    let registros = carga.parar().await;
    let b = balance(&s, &cliente_redis, &registros, desde, vuelta, stock1).await;
    let (caido, _) = historial_de_la_caida(&s, desde_reloj).await;
    s.todos_vivos();
    println!(
        "redis frozen: {:.1}s {}; monitor CAIDO after {:.3}s (history), recovered: /ready after \
         {ready_s:.2}s, monitor OK after {monitor_s:.2}s; load: {} requests, while frozen {:?}, \
         max request latency {} ms (REDIS_TIMEOUT_MS {REDIS_TIMEOUT_MS}); movements {}/{} done \
         ({} retried with their Idempotency-Key after a 503), stock +{}",
        congelado.as_secs_f64(),
        sondeo.resumen(),
        (caido - desde_reloj).as_seconds_f64(),
        b.total,
        b.durante,
        ms(b.max_durante),
        b.hechas,
        b.movimientos,
        b.reintentadas,
        b.delta,
    );
}

// ---------------------------------------------------------------------------------------------
// 6. A slow worker and 1000 concurrent clients

#[derive(Debug, Default)]
struct Ronda {
    por_status: BTreeMap<u16, usize>,
    rechazadas: usize,
    colgadas: usize,
    otros_errores: Vec<String>,
    latencias: Vec<Duration>,
}

impl Ronda {
    fn total(&self) -> usize {
        self.por_status.values().sum::<usize>()
            + self.rechazadas
            + self.colgadas
            + self.otros_errores.len()
    }

    fn percentil(&self, p: f64) -> Duration {
        let mut l = self.latencias.clone();
        l.sort();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// `clientes` concurrent clients, each on its own connection, each sending `cada` GETs to
/// `url` one after another.
async fn ronda(url: String, clientes: usize, cada: usize) -> Ronda {
    let mut tareas = tokio::task::JoinSet::new();
    for _ in 0..clientes {
        let url = url.clone();
        tareas.spawn(async move {
            // One client, one connection (kept alive between its own requests).
            let http = cliente();
            let mut medidas = Vec::new();
            for _ in 0..cada {
                medidas.push(medir(http.get(&url)).await);
            }
            medidas
        });
    }
    let mut r = Ronda::default();
    while let Some(medidas) = tareas.join_next().await {
        for m in medidas.expect("client task") {
            match (m.status, &m.error) {
                (Some(status), _) => {
                    *r.por_status.entry(status).or_default() += 1;
                    r.latencias.push(m.latencia);
                }
                (None, Some(e)) if e.contains("Connect") || e.contains("refused") => {
                    r.rechazadas += 1
                }
                (None, _) if m.latencia >= COLGADA => r.colgadas += 1,
                (None, e) => r.otros_errores.push(format!("{e:?}")),
            }
        }
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_worker_and_a_thousand_clients_answers_in_time_memory_bounded() {
    let _t = Cronometro::start("slow_worker_and_a_thousand_clients_answers_in_time_memory_bounded");
    const CLIENTES: usize = 1000;
    const CADA: usize = 3;
    const FAULT_DELAY_MS: u64 = 500;
    // Inherited by the programs it starts: 2000 sockets must fit.
    testkit::slow_http::raise_open_files(8192);
    let redis = RedisServer::start_tcp();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut s = Sistema::start(
        &redis.url(),
        dir.path(),
        Opciones {
            worker: vec![("FAULT_DELAY_MS", FAULT_DELAY_MS.to_string())],
            ..Default::default()
        },
    );
    s.arrancado().await;

    // The slow consumer: every health answer 500 ms late (threshold 300 ms). /monitor answers
    // within its timeout and says DEGRADADO.
    let sondeos = RefCell::new(Vec::new());
    let degradado = eventually(ARRANQUE, Duration::from_millis(50), || async {
        let m = s.get(&s.url_monitor, "/monitor").await;
        let estado = m.json["estado"].as_str().unwrap_or_default().to_owned();
        sondeos
            .borrow_mut()
            .push((m.status, estado.clone(), m.latencia));
        estado == "DEGRADADO"
    })
    .await;
    let mut sondeos = sondeos.into_inner();
    assert!(degradado, "never DEGRADADO: {sondeos:?}\n{}", s.logs());
    // And it stays so, every answer within the timeout.
    for _ in 0..10 {
        let m = s.get(&s.url_monitor, "/monitor").await;
        let estado = m.json["estado"].as_str().unwrap_or_default().to_owned();
        assert!(
            estado == "DEGRADADO" || estado == "CAIDO",
            "a slow worker reads {estado}: {m:?}"
        );
        sondeos.push((m.status, estado, m.latencia));
    }
    let lento_max = sondeos.iter().map(|(_, _, l)| *l).max().unwrap_or_default();
    assert!(
        lento_max < Duration::from_millis(PING_TIMEOUT_MS) + MARGEN,
        "/monitor took {lento_max:?} with a slow worker: {sondeos:?}"
    );
    let ultimo = sondeos.last().cloned().expect("a probe");

    // Overload: rounds of 1000 clients on each service at once, memory sampled throughout.
    let rss = |s: &Sistema| {
        [
            s.servicio.rss_kib(),
            s.monitor.rss_kib(),
            s.worker.rss_kib(),
        ]
    };
    let antes = rss(&s);
    let mut informes = Vec::new();
    let mut despues = Vec::new();
    // A first round to warm up (the allocator's per-thread arenas, connection buffers), then
    // two measured ones; RONDAS=n runs more, to watch memory over a longer run by hand.
    let rondas: usize = std::env::var("RONDAS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
        .max(3);
    for n in 1..=rondas {
        let fin = CancellationToken::new();
        let pids = [s.servicio.pid(), s.monitor.pid(), s.worker.pid()];
        let muestreo = tokio::spawn({
            let fin = fin.clone();
            async move {
                let mut pico = [0u64; 3];
                while !fin.is_cancelled() {
                    for (i, pid) in pids.iter().enumerate() {
                        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                            .unwrap_or_default();
                        let kib = status
                            .lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                            .unwrap_or(0);
                        pico[i] = pico[i].max(kib);
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                pico
            }
        });
        let started = Instant::now();
        let (inv, mon) = tokio::join!(
            ronda(format!("{}/inventario", s.url_servicio), CLIENTES, CADA),
            ronda(format!("{}/monitor", s.url_monitor), CLIENTES, CADA),
        );
        let took = started.elapsed();
        fin.cancel();
        let pico = muestreo.await.expect("sampler");
        // Every client has closed its connection; both still answer.
        for url in [&s.url_servicio, &s.url_monitor] {
            let m = s.get(url, "/health").await;
            assert_eq!(m.status, Some(200), "{url}/health after round {n}: {m:?}");
        }
        let after = rss(&s);
        informes.push(format!(
            "round {n} ({:.1}s): inventario {:?} refused {} hung {} other {} p50 {} ms p99 {} ms max {} ms; \
             monitor {:?} refused {} hung {} other {} p50 {} ms p99 {} ms max {} ms; \
             RSS KiB service/monitor/worker peak {pico:?} after {after:?}",
            took.as_secs_f64(),
            inv.por_status, inv.rechazadas, inv.colgadas, inv.otros_errores.len(),
            ms(inv.percentil(0.5)), ms(inv.percentil(0.99)), ms(inv.percentil(1.0)),
            mon.por_status, mon.rechazadas, mon.colgadas, mon.otros_errores.len(),
            ms(mon.percentil(0.5)), ms(mon.percentil(0.99)), ms(mon.percentil(1.0)),
        ));
        for (name, r) in [("inventario", &inv), ("monitor", &mon)] {
            assert_eq!(r.total(), CLIENTES * CADA, "{name}: every request counted");
            assert_eq!(r.colgadas, 0, "{name}: requests hung");
            assert!(
                r.otros_errores.is_empty(),
                "{name}: {:?}",
                &r.otros_errores[..r.otros_errores.len().min(5)]
            );
        }
        // The service answers every listing (SQLite, no Redis involved).
        assert_eq!(
            inv.por_status.get(&200).copied().unwrap_or(0) + inv.rechazadas,
            CLIENTES * CADA,
            "{inv:?}"
        );
        // The monitor: an echo (200) or the documented 503 of a ping unanswered in time.
        assert!(
            mon.por_status.keys().all(|s| *s == 200 || *s == 503),
            "{:?}",
            mon.por_status
        );
        despues.push(after);
    }
    s.todos_vivos();

    // Memory: bounded, and, once warm, not growing from one round to the next.
    const TOPE_KIB: u64 = 100 * 1024;
    const CRECIMIENTO_KIB: u64 = 16 * 1024;
    for (i, name) in ["inventario-service", "monitor-service"].iter().enumerate() {
        for (n, d) in despues.iter().enumerate() {
            assert!(
                d[i] < TOPE_KIB,
                "{name} RSS {} KiB after round {}",
                d[i],
                n + 1
            );
        }
        for par in despues[1..].windows(2) {
            assert!(
                par[1][i] <= par[0][i] + CRECIMIENTO_KIB,
                "{name} RSS grew from {} to {} KiB between rounds",
                par[0][i],
                par[1][i]
            );
        }
    }

    // After the storm the monitor judges the worker as before, by itself.
    let vuelve = eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { s.get(&s.url_monitor, "/monitor").await.json["estado"] == "DEGRADADO" },
    )
    .await;
    assert!(vuelve, "the monitor did not settle back\n{}", s.logs());

    println!(
        "slow worker (FAULT_DELAY_MS={FAULT_DELAY_MS}): /monitor {:?} {} in {} ms (max {} ms over {} probes, \
         timeout {PING_TIMEOUT_MS} ms); \
         RSS KiB before {antes:?}\n  {}",
        ultimo.0,
        ultimo.1,
        ms(ultimo.2),
        ms(lento_max),
        sondeos.len(),
        informes.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Security basics

/// The password must appear in no log line and no HTTP answer: at start-up, with Redis down,
/// with Redis refusing a wrong password, and in `--help`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_redis_password_never_reaches_logs_or_answers() {
    let _t = Cronometro::start("the_redis_password_never_reaches_logs_or_answers");
    const CLAVE: &str = "Clave-Secreta-9f2c7e";
    const MALA: &str = "Clave-Erronea-41d8a0";
    let mut redis = RedisServer::start_with(ServerOptions {
        tcp: true,
        password: Some(CLAVE.into()),
        ..Default::default()
    });
    assert!(redis.url().contains(CLAVE));
    let dir = tempfile::tempdir().expect("temporary directory");
    // Debug level: whatever a dependency logs is checked too.
    let mut s = Sistema::start(
        &redis.url(),
        dir.path(),
        Opciones {
            rust_log: Some("debug"),
            ..Default::default()
        },
    );
    s.arrancado().await;
    assert!(s.en_estado("OK", ARRANQUE).await, "{}", s.logs());
    let respuestas = RefCell::new(Vec::new());
    let mover = json!({"tipo": "salida", "cantidad": 1});
    let m = s.post("/inventario/1/movimientos", &mover).await;
    assert_eq!(m.status, Some(202), "{m:?}");
    respuestas.borrow_mut().push(m.text);

    // Redis gone: every program meets connection errors (which often carry the URL).
    redis.kill();
    assert!(
        eventually(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let ready = s.get(&s.url_servicio, "/ready").await;
                let monitor = s.get(&s.url_monitor, "/monitor").await;
                let seen = ready.status == Some(503) && monitor.json["estado"] == "CAIDO";
                respuestas.borrow_mut().push(ready.text);
                respuestas.borrow_mut().push(monitor.text);
                seen
            }
        )
        .await,
        "the outage was not reported\n{}",
        s.logs()
    );
    let mut respuestas = respuestas.into_inner();
    for _ in 0..3 {
        respuestas.push(s.post("/inventario/1/movimientos", &mover).await.text);
        respuestas.push(s.get(&s.url_servicio, "/tareas/abc").await.text);
        respuestas.push(s.get(&s.url_monitor, "/monitor/historial").await.text);
    }
    let avisado = |p: &Process| {
        let log = p.log().to_lowercase();
        log.contains("redis unavailable") || log.contains("connection refused")
    };
    assert!(
        eventually(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async { avisado(&s.servicio) && avisado(&s.worker) && avisado(&s.monitor) }
        )
        .await,
        "every program logs the outage\n{}",
        s.logs()
    );
    redis.restart();
    assert!(
        s.en_estado("OK", Duration::from_secs(30)).await,
        "{}",
        s.logs()
    );
    s.todos_vivos();

    // A wrong password: Redis answers, and refuses it.
    let mala_url = redis.url().replace(CLAVE, MALA);
    let dir_mala = tempfile::tempdir().expect("temporary directory");
    let mut mala = Sistema::start(
        &mala_url,
        dir_mala.path(),
        Opciones {
            rust_log: Some("debug"),
            ..Default::default()
        },
    );
    mala.arrancado().await;
    let ready = mala.get(&mala.url_servicio, "/ready").await;
    assert_eq!(ready.status, Some(503), "{ready:?}");
    respuestas.push(ready.text);
    respuestas.push(mala.post("/inventario/1/movimientos", &mover).await.text);
    respuestas.push(mala.get(&mala.url_monitor, "/monitor").await.text);
    assert!(
        eventually(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let log = mala.worker.log().to_lowercase() + &mala.monitor.log().to_lowercase();
                log.contains("pass") || log.contains("auth")
            }
        )
        .await,
        "the refused password is logged as such\n{}",
        mala.logs()
    );
    mala.todos_vivos();

    // --help shows REDIS_URL's default, never the value in the environment.
    let mut ayudas = Vec::new();
    for binary in ["inventario-service", "inventario-worker", "monitor-service"] {
        let out = Command::new(workspace_binary(binary))
            .arg("--help")
            .env_clear()
            .env("REDIS_URL", redis.url())
            .output()
            .expect("--help");
        ayudas.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }

    let mut lineas = 0;
    let mut enmascaradas = 0;
    for (nombre, texto) in [
        ("inventario-service", s.servicio.log()),
        ("inventario-worker", s.worker.log()),
        ("monitor-service", s.monitor.log()),
        ("inventario-service (wrong password)", mala.servicio.log()),
        ("inventario-worker (wrong password)", mala.worker.log()),
        ("monitor-service (wrong password)", mala.monitor.log()),
    ] {
        for linea in texto.lines() {
            lineas += 1;
            enmascaradas += usize::from(linea.contains(":***@"));
            assert!(
                !linea.contains(CLAVE) && !linea.contains(MALA),
                "{nombre} logged the password: {linea}"
            );
        }
    }
    for texto in respuestas.iter().chain(&ayudas) {
        assert!(
            !texto.contains(CLAVE) && !texto.contains(MALA),
            "an answer carries the password: {texto}"
        );
    }
    println!(
        "password: absent from {lineas} log lines of 6 processes (RUST_LOG=debug; {enmascaradas} \
         lines show the masked URL), {} HTTP answers and 3 --help texts",
        respuestas.len()
    );
}

/// The 64 KiB body limit over a real socket: a JSON 413, the body announced or chunked. A
/// body far over the limit may instead see the connection closed before it is all sent (the
/// server answers 413 without reading the rest; the client may still be writing): either is a
/// refusal, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn the_body_limit_is_a_json_413_over_a_real_socket() {
    let _t = Cronometro::start("the_body_limit_is_a_json_413_over_a_real_socket");
    let redis = RedisServer::start_tcp();
    let dir = tempfile::tempdir().expect("temporary directory");
    let s = Sistema::start(&redis.url(), dir.path(), Opciones::default());
    s.arrancado().await;
    let mut cerradas = 0;
    for len in [64 * 1024 + 1, 1024 * 1024] {
        let mut body = json!({"nombre": "Grande", "cantidad": 1, "precio": 1.0}).to_string();
        body.push_str(&" ".repeat(len - body.len()));
        for chunked in [false, true] {
            let request = s
                .http
                .post(format!("{}/inventario", s.url_servicio))
                .header("content-type", "application/json");
            let request = if chunked {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
                    .as_bytes()
                    .chunks(16 * 1024)
                    .map(|c| Ok(c.to_vec()))
                    .collect();
                request.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                )))
            } else {
                request.body(body.clone())
            };
            let m = medir(request).await;
            let what = format!("{len} bytes (chunked: {chunked}): {m:?}");
            if m.status.is_none() && len > 64 * 1024 + 1 {
                cerradas += 1;
                continue;
            }
            assert_eq!(m.status, Some(413), "{what}");
            assert_eq!(m.json["error"], "cuerpo_demasiado_grande", "{what}");
            assert!(m.json["detalle"].is_string(), "{what}");
        }
    }
    // A fresh client: the pooled connection may be the one the server cut.
    let http = cliente();
    let health = medir(http.get(format!("{}/health", s.url_servicio))).await;
    assert_eq!(health.status, Some(200), "{health:?}");
    let count = medir(http.get(format!("{}/inventario", s.url_servicio)))
        .await
        .json;
    assert_eq!(count.as_array().map(Vec::len), Some(20), "nothing written");
    println!("body limit over a socket: 413 JSON; 1 MiB bodies cut off by the server {cerradas}/2");
}

/// Redis and Redis Insight are published on the host's loopback only: every `ports:` entry of
/// those two services in docker-compose.yml starts with `127.0.0.1:`. The service and the
/// monitor are published on loopback too unless the operator sets `PUBLISH_ADDR`.
#[test]
fn compose_publishes_redis_and_redis_insight_on_loopback_only() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml");
    let text = std::fs::read_to_string(&path).expect("docker-compose.yml");
    // A small reading of the YAML: service blocks at two spaces under `services:`, their
    // `ports:` list items below.
    let mut puertos: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut en_servicios = false;
    let mut servicio = None::<String>;
    let mut en_puertos = false;
    for linea in text.lines() {
        let sin_comentario = linea.split(" #").next().unwrap_or_default().trim_end();
        if sin_comentario.trim().is_empty() || sin_comentario.trim_start().starts_with('#') {
            continue;
        }
        let sangria = sin_comentario.len() - sin_comentario.trim_start().len();
        let contenido = sin_comentario.trim();
        if sangria == 0 {
            en_servicios = contenido == "services:";
            servicio = None;
            en_puertos = false;
        } else if en_servicios && sangria == 2 {
            servicio = contenido.strip_suffix(':').map(str::to_owned);
            en_puertos = false;
        } else if en_servicios && sangria == 4 {
            en_puertos = contenido == "ports:";
        } else if en_puertos && contenido.starts_with("- ") {
            if let Some(s) = &servicio {
                let valor = contenido[2..].trim().trim_matches('"').trim_matches('\'');
                puertos.entry(s.clone()).or_default().push(valor.to_owned());
            }
        }
    }
    for s in ["redis", "redisinsight"] {
        let list = puertos
            .get(s)
            .unwrap_or_else(|| panic!("{s} publishes no port: {puertos:?}"));
        for p in list {
            assert!(
                p.starts_with("127.0.0.1:"),
                "{s} publishes {p} beyond loopback"
            );
        }
    }
    for s in ["inventario-service", "monitor-service"] {
        let list = puertos
            .get(s)
            .unwrap_or_else(|| panic!("{s} publishes no port: {puertos:?}"));
        for p in list {
            assert!(
                p.starts_with("${PUBLISH_ADDR:-127.0.0.1}:"),
                "{s} publishes {p} beyond loopback by default"
            );
        }
    }
    println!("compose: loopback-only ports {puertos:?}");
}

/// What the compose file promises its operator beyond the schema (tests/compose/policy.py, read
/// with a real YAML parser, anchors and merge keys resolved): every log rotated, every pulled
/// image pinned to a version, the worker's stop grace longer than its shutdown timeout, the
/// fault-injection settings passed through with their defaults, and the escala profile (HAProxy,
/// PostgreSQL, Redis under Sentinel) complete, behind its profile alone, on the one app image, its
/// programs reaching Redis through the sentinels.
#[test]
fn compose_rotates_logs_pins_images_and_passes_the_fault_settings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(testkit::celery::python())
        .arg(root.join("tests/compose/policy.py"))
        .arg(root.join("docker-compose.yml"))
        .output()
        .expect("run tests/compose/policy.py");
    assert!(
        out.status.success(),
        "docker-compose.yml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The longest latency among timed probes.
fn slowest<T>(probes: &[(T, Medida)]) -> Duration {
    probes
        .iter()
        .map(|(_, m)| m.latencia)
        .max()
        .unwrap_or_default()
}
