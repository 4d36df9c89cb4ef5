//! inventario-service: the inventory REST API (port 3001). Parses its settings, opens (and
//! seeds, once) the database, serves until SIGTERM/SIGINT, then finishes in-flight requests.
//! `inventario-service token --sub NAME [--ttl 1h]` prints a bearer token for the writes instead.

use anyhow::Context;
use clap::Parser;
use inventario::Store;
use inventario_service::auth::{self, Autenticacion};
use inventario_service::config::{Command, TokenArgs};
use inventario_service::{app, AppState, Config};
use shared::events::TaskEvents;
use shared::shutdown::CancellationToken;

/// mimalloc rather than glibc's malloc: allocation is a large part of the queue's CPU cost
/// (the measurement is in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Below this many bytes an HS256 secret is weak (RFC 7518 asks for a key as long as the hash).
const MIN_SECRET_BYTES: usize = 32;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    match &config.command {
        Some(Command::Token(args)) => token(&config, args),
        None => serve(config),
    }
}

/// Prints the token alone on stdout (for `TOKEN=$(inventario-service token --sub yo)`), and
/// when it expires on stderr.
fn token(config: &Config, args: &TokenArgs) -> anyhow::Result<()> {
    let secreto = config
        .jwt_secret
        .clone()
        .unwrap_or_else(|| auth::Secreto::new(""));
    let (token, claims) = auth::emitir(&secreto, &args.sub, args.ttl)?;
    println!("{token}");
    let exp = i64::try_from(claims.exp)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(|| claims.exp.to_string(), |t| t.to_rfc3339());
    eprintln!("token for sub={:?}, valid until {exp}", claims.sub);
    Ok(())
}

#[tokio::main]
async fn serve(config: Config) -> anyhow::Result<()> {
    shared::telemetry::init();
    let auth = config.autenticacion();
    log_autenticacion(&config, &auth);
    // DATABASE_URL may carry a password (postgres://user:pass@host/db): logs show it masked.
    let database = shared::connection::mask_url(&config.database_url);
    let store = Store::open_with(&config.database_url, config.database_pool.config())
        .await
        .with_context(|| format!("opening {database}"))?;
    let seeded = store.seed_default().await.context("seeding productos")?;
    tracing::info!(%database, seeded, "database ready");
    let redis = shared::Redis::open(config.redis.config())?;
    let mut client = shared::Client::new(redis.clone(), &config.queue);
    // task-sent events leave through a flusher of their own, stopped after the server, so the
    // events of the last requests go out too.
    let events_stop = CancellationToken::new();
    let mut flushing = None;
    if config.task_sent_events {
        let (events, flusher) = TaskEvents::for_client(redis.clone(), client.origin());
        client = client.with_sent_events(events);
        flushing = Some(tokio::spawn(flusher.run(events_stop.clone())));
        tracing::info!("task-sent events on (TASK_SENT_EVENTS)");
    }
    let state = AppState::new(store, redis, client, config.redis_timeout(), auth);
    let listener = http_server::bind(&config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let shutdown = shared::shutdown::on_signals();
    // X-Instancia: which instance answered, for clients behind a balancer.
    let server = http_server::Server::new(listener, app(state.clone()), config.http.limits())
        .instance(&shared::hostname());
    state.metrics.register_server(server.stats());
    server.run(shutdown).await;
    events_stop.cancel();
    if let Some(flushing) = flushing {
        let _ = flushing.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// How writes are authenticated, said once at start; never the secret itself.
fn log_autenticacion(config: &Config, auth: &Autenticacion) {
    let secreto = config.jwt_secret.as_ref().filter(|s| !s.is_empty());
    match auth {
        Autenticacion::Desactivada => {
            tracing::warn!(
                jwt_secret_ignored = secreto.is_some(),
                "AUTH_DISABLED=true: authentication is disabled, writes need no token; anyone \
                 who reaches this service can change the inventory"
            );
        }
        Autenticacion::NoConfigurada => tracing::warn!(
            "JWT_SECRET is not set: every write (POST, PUT, DELETE) is answered 401; set \
             JWT_SECRET, or AUTH_DISABLED=true to run without authentication"
        ),
        Autenticacion::Jwt(_) => {
            tracing::info!(
                leeway_secs = auth::LEEWAY_SECS,
                "writes need Authorization: Bearer <JWT> (HS256, exp and sub required)"
            );
            if secreto.is_some_and(|s| s.len() < MIN_SECRET_BYTES) {
                tracing::warn!(
                    "JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes: fine for development, \
                     use a long random secret anywhere else"
                );
            }
        }
    }
}
