//! The service's test harness: a fresh SQLite file and a private redis-server per test, the
//! real router driven in process with `oneshot`, and, when a test needs one, a real
//! inventario worker in process on the same Redis and database file.
//!
//! With `TEST_DATABASE=postgres` the same tests run on PostgreSQL instead: each test starts a
//! private server (`testkit::PostgresServer`) and creates its database there
//! ([`en_postgres`]). The few checks that reach under the store ([`TestApp::bloquear`],
//! [`TestApp::sql`], [`TestApp::contar`]) speak to either.
//!
//! The service checks tokens signed with [`SECRETO`], and every request the helpers send
//! carries a valid one (`TestApp::token`), as a real client's would; [`TestApp::raw_con`]
//! sends any `Authorization` header, or none.
#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use inventario::{Backend, Store};
use inventario_service::auth::{self, Autenticacion, Secreto};
use inventario_service::{app, AppState};
use serde_json::Value;
use shared::shutdown::CancellationToken;
use shared::{Redis, Worker, WorkerConfig};
use testkit::RedisServer;
use tower::ServiceExt;

pub const QUEUE: &str = "inventario";

/// The HS256 secret the tests' service checks tokens with.
pub const SECRETO: &str = "secreto-de-las-pruebas-de-inventario-service";

/// The `sub` of the tokens the helpers send.
pub const SUB: &str = "pruebas";

/// A token signed with [`SECRETO`] for `sub`, valid for an hour.
pub fn token(sub: &str) -> String {
    auth::emitir(&Secreto::new(SECRETO), sub, Duration::from_secs(3600))
        .expect("token")
        .0
}

/// An answer: status, headers and the body parsed as JSON (`Value::Null` if it is not JSON).
pub struct Respuesta {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
    pub text: String,
}

/// Whether the tests run on PostgreSQL (`TEST_DATABASE=postgres`) rather than SQLite files.
pub fn en_postgres() -> bool {
    std::env::var("TEST_DATABASE").is_ok_and(|v| v.eq_ignore_ascii_case("postgres"))
}

/// A database nobody has opened yet: on SQLite the file `nombre` in `dir` (not created), on
/// PostgreSQL an empty database in a private server, returned with its URL (the server lives
/// as long as the value).
pub fn base_nueva(
    dir: &std::path::Path,
    nombre: &str,
) -> (Option<testkit::PostgresServer>, String) {
    if en_postgres() {
        let server = testkit::PostgresServer::start();
        let url = server.create_database();
        (Some(server), url)
    } else {
        (None, format!("sqlite://{}", dir.join(nombre).display()))
    }
}

/// Whether a test about SQLite itself must be skipped, because this run is on PostgreSQL; says
/// so, and `por_que` the check has no PostgreSQL counterpart.
pub fn solo_sqlite(por_que: &str) -> bool {
    let saltar = en_postgres();
    if saltar {
        eprintln!("SKIPPED on PostgreSQL (SQLite only: {por_que})");
    }
    saltar
}

pub struct TestApp {
    pub dir: tempfile::TempDir,
    /// The private PostgreSQL server the database lives in, under `TEST_DATABASE=postgres`.
    pub postgres: Option<testkit::PostgresServer>,
    pub database_url: String,
    pub server: RedisServer,
    pub state: AppState,
    pub router: Router,
    /// The bearer token the helpers send (`None`: no `Authorization` header).
    pub token: Option<String>,
}

impl TestApp {
    /// A service on a fresh, seeded database and a fresh Redis, checking tokens signed with
    /// [`SECRETO`]; the helpers send a valid one for [`SUB`].
    pub async fn start() -> Self {
        Self::start_con(Autenticacion::jwt(&Secreto::new(SECRETO))).await
    }

    /// The same with another authentication set-up (none configured, or disabled).
    pub async fn start_con(auth: Autenticacion) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (postgres, database_url) = base_nueva(dir.path(), "inventario.db");
        let mut app = Self::on(dir, database_url, RedisServer::start(), auth).await;
        app.postgres = postgres;
        app
    }

    /// The service as `main` builds it, on an existing database file and Redis.
    pub async fn on(
        dir: tempfile::TempDir,
        database_url: String,
        server: RedisServer,
        auth: Autenticacion,
    ) -> Self {
        let store = Store::open(&database_url).await.expect("open store");
        store.seed_default().await.expect("seed");
        let redis = Redis::from_url(&server.url()).expect("redis url");
        let client = shared::Client::new(redis.clone(), QUEUE);
        let state = AppState::new(store, redis, client, Duration::from_secs(2), auth);
        TestApp {
            dir,
            postgres: None,
            database_url,
            server,
            router: app(state.clone()),
            state,
            token: Some(token(SUB)),
        }
    }

    /// Stops this instance and starts another on the same database file and Redis, as a
    /// process restart would.
    pub async fn restart(self) -> Self {
        let TestApp {
            dir,
            postgres,
            database_url,
            server,
            state,
            ..
        } = self;
        state.store.close().await;
        let mut app = Self::on(dir, database_url, server, state.auth.clone()).await;
        app.postgres = postgres;
        app
    }

    /// Holds what a movement of producto `id` must wait for (SQLite's write lock; on
    /// PostgreSQL, the producto's row lock) until [`Bloqueo::soltar`].
    pub async fn bloquear(&self, id: i64) -> Bloqueo {
        match self.state.store.backend() {
            Backend::Sqlite(pool) => {
                let mut conn = pool.acquire().await.expect("a connection");
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut *conn)
                    .await
                    .expect("the write lock");
                Bloqueo::Sqlite(conn)
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await.expect("a transaction");
                sqlx::query("SELECT 1 FROM productos WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .expect("the row lock");
                Bloqueo::Postgres(tx)
            }
        }
    }

    /// Runs `sql` (placeholders `$1`, `$2`...: both databases take them) with `args`.
    pub async fn sql(&self, sql: &str, args: &[i64]) {
        match self.state.store.backend() {
            Backend::Sqlite(pool) => {
                let mut q = sqlx::query(sql);
                for a in args {
                    q = q.bind(*a);
                }
                q.execute(pool).await.map(drop)
            }
            Backend::Postgres(pool) => {
                let mut q = sqlx::query(sql);
                for a in args {
                    q = q.bind(*a);
                }
                q.execute(pool).await.map(drop)
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The number `sql` (a `SELECT count(*) ...`) answers.
    pub async fn contar(&self, sql: &str) -> i64 {
        match self.state.store.backend() {
            Backend::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Backend::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn send(&self, request: Request<Body>) -> Respuesta {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router never fails");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Respuesta {
            status,
            headers,
            json,
            text,
        }
    }

    /// A request with a raw body and an optional content type, with the helpers' token.
    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Respuesta {
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        self.raw_con(method, uri, content_type, body, authorization.as_deref())
            .await
    }

    /// A request with exactly this `Authorization` header (`None`: without one).
    pub async fn raw_con(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
        authorization: Option<&str>,
    ) -> Respuesta {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a);
        }
        self.send(request.body(body.into()).expect("request")).await
    }

    pub async fn get(&self, uri: &str) -> Respuesta {
        self.raw(Method::GET, uri, None, Body::empty()).await
    }

    pub async fn delete(&self, uri: &str) -> Respuesta {
        self.raw(Method::DELETE, uri, None, Body::empty()).await
    }

    pub async fn json(&self, method: Method, uri: &str, body: &Value) -> Respuesta {
        self.raw(method, uri, Some("application/json"), body.to_string())
            .await
    }

    /// A request with `If-Match: if_match` and `body` as JSON (`Value::Null`: no body).
    pub async fn con_if_match(
        &self,
        method: Method,
        uri: &str,
        if_match: &str,
        body: &Value,
    ) -> Respuesta {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::IF_MATCH, if_match);
        if let Some(t) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = if body.is_null() {
            Body::empty()
        } else {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        };
        self.send(request.body(body).expect("request")).await
    }

    /// A real inventario worker in this process, with its own connection pool on the same
    /// database file (as a separate worker process would have).
    pub async fn worker(&self) -> RunningWorker {
        let store = Store::open(&self.database_url).await.expect("worker store");
        let registry = inventario_worker::registry(store, inventario_worker::Faults::none());
        let config = WorkerConfig {
            hostname: "test@localhost".into(),
            queues: vec![QUEUE.into()],
            track_started: true,
            lease_ttl: Duration::from_secs(2),
            heartbeat_interval: Duration::from_millis(500),
            recover_interval: Duration::from_millis(200),
            idle_block: Duration::from_secs(1),
            ..WorkerConfig::default()
        };
        let redis = Redis::from_url(&self.server.url()).expect("redis url");
        let token = CancellationToken::new();
        let handle = tokio::spawn(Worker::new(redis, registry, config).run(token.clone()));
        RunningWorker { token, handle }
    }
}

/// A lock held by [`TestApp::bloquear`].
pub enum Bloqueo {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Bloqueo {
    pub async fn soltar(self) {
        match self {
            Bloqueo::Sqlite(mut conn) => {
                sqlx::query("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .expect("COMMIT");
            }
            Bloqueo::Postgres(tx) => tx.commit().await.expect("COMMIT"),
        }
    }
}

pub struct RunningWorker {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<shared::Result<()>>,
}

impl RunningWorker {
    pub async fn stop(self) {
        self.token.cancel();
        self.handle
            .await
            .expect("worker task")
            .expect("worker stops cleanly");
    }
}

// ---------------------------------------------------------------------------------------------
// Programs of the workspace as real processes

/// inventario-service as a real process on `redis`, with its database and log in `dir` and
/// the extra variables `env` (nothing else leaks in from the shell), on a free loopback port.
/// Returns it and its base URL once `/health` answers.
pub async fn servicio(
    redis: &RedisServer,
    dir: &std::path::Path,
    env: &[(&str, String)],
) -> (testkit::Process, String) {
    let port = testkit::free_port();
    let mut all = vec![
        ("REDIS_URL", redis.url()),
        ("HTTP_ADDR", format!("127.0.0.1:{port}")),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("inventario.db").display()),
        ),
    ];
    all.extend(env.iter().cloned());
    let process = testkit::Process::program(
        "inventario-service",
        &all,
        &dir.join("inventario-service.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let up = testkit::wait_for_status(
        &reqwest::Client::new(),
        &format!("{base}/health"),
        200,
        Duration::from_secs(60),
    )
    .await;
    assert!(up, "inventario-service never answered:\n{}", process.log());
    (process, base)
}
