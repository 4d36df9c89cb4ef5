//! The inventory store: the one place that issues SQL, on SQLite or on PostgreSQL.
//!
//! SQLite (`sqlite://file.db`, the default) serves one machine: the service and any number of
//! worker processes open the same file, so the store runs it in WAL mode (readers never block
//! the writer, nor the writer them) with a busy timeout (a writer that finds the write lock
//! taken waits for it instead of failing). PostgreSQL (`postgres://...`) serves several
//! machines: any number of service instances and workers on one database, each with a pool
//! whose connections carry a statement timeout. The schema comes from the migrations, applied
//! on open: `inventario/migrations/` for SQLite, `inventario/migrations/postgres/` for
//! PostgreSQL (the same versions and tables in each dialect).
//!
//! Every query is one SQL text for both databases (`$1` placeholders, `ON CONFLICT`,
//! `RETURNING` mean the same in both), compiled once per driver by the `with_pool!` macro; only the
//! clock expression differs. So the guarantees below are the same statements on either:
//!
//! Stock changes are a single conditional `UPDATE ... RETURNING`: the check ("enough stock")
//! and the change happen in one statement, so concurrent movements can neither lose an update
//! nor take the stock below zero (SQLite runs one writer at a time; PostgreSQL makes a second
//! `UPDATE` of the row wait for the first to commit and evaluates its `WHERE` again on the
//! committed row). Each applied movement is recorded by its task id in the same transaction,
//! so a task the queue delivers twice changes the stock once.
//!
//! Every change to a producto moves its `version`, movements included. A replacement states
//! which version it was made from ([`Precondicion`]) and is refused if the producto moved since,
//! so no replacement undoes a movement it did not see; and without a version it cannot change
//! the stock at all. Movement requests are recorded by task id with a fingerprint before they
//! are queued ([`Store::record_movement_request`]): a key reused for another request is refused
//! there, and [`Store::issued_task`] tells a task the service issued from an unknown id.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use bytes::Bytes;

use crate::cache::{ListCache, VersionCache};
use crate::model::{Movimiento, NuevoProducto, Producto, MAX_CANTIDAD};
use crate::seed::SemillaError;
use crate::tareas::PedidoMovimiento;

/// How long a SQLite writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const COLUMNAS: &str = "id, nombre, cantidad, precio, version, creado_en, actualizado_en";
/// The current time as the `*_en` columns hold it (RFC 3339, UTC, milliseconds), per dialect.
const AHORA_SQLITE: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
const AHORA_POSTGRES: &str =
    "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
/// How long a movement request's record is kept: as long as Celery keeps a task's result by
/// default (`result_expires`), so a task id can be told known or unknown for as long as its
/// result could be read, and the table holds one day of requests rather than all of them.
/// An applied movement stays known past this through its `movimientos` row.
pub const RETENCION_PEDIDOS: Duration = Duration::from_secs(24 * 60 * 60);

/// What callers of the store can match on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no existe el producto {0}")]
    NoEncontrado(i64),
    #[error(
        "stock insuficiente en el producto {producto_id}: hay {disponible}, se piden {pedido}"
    )]
    StockInsuficiente {
        producto_id: i64,
        disponible: i64,
        pedido: i64,
    },
    #[error("el producto {producto_id} pasaría del máximo de {MAX_CANTIDAD} unidades (hay {disponible}, entran {entrada})")]
    LimiteExcedido {
        producto_id: i64,
        disponible: i64,
        entrada: i64,
    },
    /// The change was made from a version the producto has moved past (a movement, another
    /// replacement landed since it was read); `actual` is the current one.
    #[error("el producto {producto_id} cambió desde la versión leída: va por la versión {actual}")]
    VersionObsoleta { producto_id: i64, actual: i64 },
    /// A replacement without a version asked for a stock other than the stored one.
    #[error("el producto {producto_id} tiene {guardada} unidades, no {pedida}: sin la versión leída el stock no se reescribe")]
    CantidadSinVersion {
        producto_id: i64,
        guardada: i64,
        pedida: i64,
        version: i64,
    },
    /// A movement request reused a task id (an `Idempotency-Key`) that was first used for
    /// another request.
    #[error(
        "la tarea {tarea_id} ya se pidió para otro movimiento (otro producto, tipo o cantidad)"
    )]
    ClaveReusada { tarea_id: String },
    #[error("la semilla no se pudo cargar: {0}")]
    Semilla(#[from] SemillaError),
    #[error("la base de datos no pasó a modo WAL (sigue en {0})")]
    SinWal(String),
    /// DATABASE_URL names neither SQLite nor PostgreSQL.
    #[error("DATABASE_URL debe empezar por sqlite:, postgres: o postgresql:")]
    UrlDesconocida,
    #[error("migraciones: {0}")]
    Migracion(#[from] sqlx::migrate::MigrateError),
    #[error("base de datos: {0}")]
    Db(#[from] sqlx::Error),
}

/// A page of the product list. `limit: None` means all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pagina {
    pub limit: Option<u32>,
    pub offset: u32,
}

/// The outcome of a movement.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MovimientoAplicado {
    pub producto_id: i64,
    pub delta: i64,
    /// The stock right after this movement.
    pub cantidad_resultante: i64,
    /// This task id had been applied before; nothing changed this time.
    pub repetido: bool,
}

/// What a replacement or a deletion knows of the producto it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondicion {
    /// The writer read this version (`If-Match`): the change is made only if it is still the
    /// current one, and a replacement then sets every field, the stock included.
    Version(i64),
    /// The writer names no version: a deletion is made anyway; a replacement sets the name and
    /// the price, and the stock must be the stored one, since the stock moves through
    /// movements and a stock read before one landed would undo it.
    Ninguna,
}

/// What recording a movement request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pedido {
    /// The task id was new: the request is recorded, the task is to be sent.
    Nuevo,
    /// The same request under the same task id was recorded before (or applied, for a task id
    /// older than the records): a retry, to be sent again (the worker applies it once).
    Repetido,
}

/// The connection pool's limits (`DATABASE_*` settings of the binaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections per process. SQLite has one writer at a time anyway, so more only let
    /// reads proceed while a write waits; each PostgreSQL connection is a server process, so
    /// instances × this must stay under the server's `max_connections`.
    pub max_connections: u32,
    /// The longest an operation waits for a free connection before failing (by default
    /// sqlx's own, what the SQLite store always had).
    pub acquire_timeout: Duration,
    /// PostgreSQL only: the server cancels a statement that runs (or waits for a row lock)
    /// longer than this. SQLite's bound is its busy timeout.
    pub statement_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// The database behind a [`Store`], with its driver's pool.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool, once per driver: the body (its SQL
/// text, its binds, its transaction) is written once and type-checked for each database.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// How `GET /inventario`'s body is kept between changes (see [`crate::cache`]).
#[derive(Clone, Debug)]
enum Listado {
    /// A SQLite file: its WAL index and `data_version` say when it changed.
    Archivo(Arc<ListCache>),
    /// PostgreSQL: the `version_productos` row says when productos changed.
    Version(Arc<VersionCache>),
    /// An in-memory SQLite database, or a cache that failed to open: every listing reads.
    Ninguno,
}

/// The inventory database. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    listado: Listado,
}

impl Store {
    /// Opens the database at `url` with the default [`PoolConfig`] (see [`Store::open_with`]).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, PoolConfig::default()).await
    }

    /// Opens the database at `url` and brings its schema up to date: a SQLite file
    /// (`sqlite://inventario.db`, `sqlite:///abs/path.db`; created if missing, switched to WAL
    /// mode), or a PostgreSQL database (`postgres://user:password@host/db`; it must exist).
    pub async fn open_with(url: &str, config: PoolConfig) -> Result<Self, StoreError> {
        let store = if url.starts_with("sqlite:") {
            Self::open_sqlite(url, config).await?
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Self::open_postgres(url, config).await?
        } else {
            return Err(StoreError::UrlDesconocida);
        };
        Ok(store)
    }

    async fn open_sqlite(url: &str, config: PoolConfig) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // NORMAL is durable across process crashes in WAL mode; only a power cut can lose
            // the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let filename = options.get_filename().to_path_buf();
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        let mut store = Store {
            backend: Backend::Sqlite(pool),
            listado: Listado::Ninguno,
        };
        store.use_wal().await?;
        // The cache opens the file itself, so the schema must exist: migrate first.
        store.migrate().await?;
        if filename != Path::new(":memory:") {
            store.listado = match ListCache::open(&filename) {
                Ok(cache) => Listado::Archivo(Arc::new(cache)),
                Err(e) => {
                    tracing::warn!(error = %e, "list cache unavailable: every listing reads the database");
                    Listado::Ninguno
                }
            };
        }
        Ok(store)
    }

    async fn open_postgres(url: &str, config: PoolConfig) -> Result<Self, StoreError> {
        let timeout_ms = config.statement_timeout.as_millis().max(1).to_string();
        let options =
            PgConnectOptions::from_str(url)?.options([("statement_timeout", timeout_ms.as_str())]);
        Self::first_connection(&options, config.acquire_timeout).await?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        let store = Store {
            backend: Backend::Postgres(pool),
            listado: Listado::Version(Arc::new(VersionCache::default())),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Waits for the server to take a connection, for up to `patience` (a server that is still
    /// starting is normal in a deployment), and fails with the last attempt's own error. The
    /// pool alone would retry as long and then report only "pool timed out", whether the server
    /// refused connections, the password was wrong or the database did not exist.
    async fn first_connection(
        options: &PgConnectOptions,
        patience: Duration,
    ) -> Result<(), StoreError> {
        use sqlx::{ConnectOptions, Connection};
        let deadline = Instant::now() + patience;
        let mut pause = Duration::from_millis(50);
        loop {
            let attempt = tokio::time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                options.connect(),
            )
            .await;
            let error = match attempt {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Ok(Err(e)) => e,
                Err(_) => sqlx::Error::PoolTimedOut,
            };
            // A refusal that waiting cannot change (a wrong password, a database that does not
            // exist, TLS) is reported at once; a server still starting (57P03) or full is not.
            let lasting = match &error {
                sqlx::Error::Database(e) => {
                    matches!(e.code().as_deref(), Some("28P01" | "28000" | "3D000"))
                }
                sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => true,
                _ => false,
            };
            if lasting || Instant::now() + pause >= deadline {
                return Err(StoreError::Db(error));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Puts the file in WAL mode (a setting stored in the file, so once is enough).
    ///
    /// Switching needs an exclusive lock that SQLite will not wait for with the busy timeout,
    /// so processes opening a new file together would fail with "database is locked". Hence
    /// this is done here rather than as a connection option, retried with a short backoff
    /// until the switch happens or the busy timeout passes.
    async fn use_wal(&self) -> Result<(), StoreError> {
        let Backend::Sqlite(pool) = &self.backend else {
            return Ok(());
        };
        let deadline = Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(2);
        loop {
            let mode = sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
                .fetch_one(pool)
                .await;
            match mode {
                Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
                Err(e) if !is_busy(&e) || Instant::now() >= deadline => return Err(e.into()),
                Ok(mode) if Instant::now() >= deadline => return Err(StoreError::SinWal(mode)),
                _ => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Applies pending migrations (a second run finds nothing to do). On SQLite, processes
    /// starting at once on a new file race on the migration table (SQLite refuses, without
    /// waiting, a transaction that read before another wrote); a loser tries again and finds
    /// the work done. On PostgreSQL sqlx holds an advisory lock while it migrates, so
    /// instances starting together queue instead.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut attempts = 0;
        loop {
            let run = match &self.backend {
                Backend::Sqlite(pool) => sqlx::migrate!("./migrations").run(pool).await,
                Backend::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
            };
            match run {
                Ok(()) => return Ok(()),
                Err(e) if attempts >= 10 => return Err(e.into()),
                Err(_) => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(5 * attempts)).await;
                }
            }
        }
    }

    /// The SQLite pool, for checks that have no method here (tests read pragmas with it).
    ///
    /// # Panics
    ///
    /// On a PostgreSQL store: see [`Store::backend`].
    pub fn pool(&self) -> &SqlitePool {
        match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(_) => panic!("Store::pool is SQLite's; this store is PostgreSQL"),
        }
    }

    /// The database and its pool, for checks that have no method here.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Whether this store is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Closes the pool: waits for connections in use to come back, then closes them all.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }

    /// The current time as SQL, in this store's dialect.
    fn ahora(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => AHORA_SQLITE,
            Backend::Postgres(_) => AHORA_POSTGRES,
        }
    }

    /// Whether the database answers a query now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    /// SQLite's journal mode (`wal` once opened by this store); PostgreSQL has none to report.
    pub async fn journal_mode(&self) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(self.pool())
            .await?)
    }

    pub async fn count(&self) -> Result<i64, StoreError> {
        Ok(
            with_pool!(self, pool => sqlx::query_scalar("SELECT count(*) FROM productos")
            .fetch_one(pool)
            .await)?,
        )
    }

    /// Productos in id order.
    pub async fn list(&self, pagina: Pagina) -> Result<Vec<Producto>, StoreError> {
        // No page size: a LIMIT no table reaches, which both databases take.
        let limit = pagina.limit.map_or(i64::MAX, i64::from);
        let sql = format!("SELECT {COLUMNAS} FROM productos ORDER BY id LIMIT $1 OFFSET $2");
        Ok(with_pool!(self, pool => sqlx::query_as(&sql)
            .bind(limit)
            .bind(i64::from(pagina.offset))
            .fetch_all(pool)
            .await)?)
    }

    /// The whole list as the JSON array `GET /inventario` answers, from memory while the database
    /// is unchanged (see [`crate::cache`]); read and serialized again after any commit.
    pub async fn list_json(&self) -> Result<Bytes, StoreError> {
        match &self.listado {
            Listado::Archivo(cache) => {
                let miss = match cache.lookup() {
                    Ok(Ok(body)) => return Ok(body),
                    Ok(Err(miss)) => miss,
                    Err(e) => {
                        tracing::debug!(error = %e, "list cache: version unreadable, reading the database");
                        return self.list_json_uncached().await;
                    }
                };
                let body = self.list_json_uncached().await?;
                cache.put(miss, body.clone());
                Ok(body)
            }
            Listado::Version(cache) => {
                // Read before the list: a change committed in between leaves a newer list
                // under an older number, which the next request reads again.
                let version: i64 = with_pool!(self, pool => sqlx::query_scalar(
                    "SELECT version FROM version_productos"
                )
                .fetch_one(pool)
                .await)?;
                if let Some(body) = cache.lookup(version) {
                    return Ok(body);
                }
                let body = self.list_json_uncached().await?;
                cache.put(version, body.clone());
                Ok(body)
            }
            Listado::Ninguno => self.list_json_uncached().await,
        }
    }

    async fn list_json_uncached(&self) -> Result<Bytes, StoreError> {
        let list = self.list(Pagina::default()).await?;
        Ok(serde_json::to_vec(&list)
            .expect("productos serialize")
            .into())
    }

    pub async fn get(&self, id: i64) -> Result<Producto, StoreError> {
        let sql = format!("SELECT {COLUMNAS} FROM productos WHERE id = $1");
        with_pool!(self, pool => sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?
        .ok_or(StoreError::NoEncontrado(id))
    }

    pub async fn create(&self, nuevo: &NuevoProducto) -> Result<Producto, StoreError> {
        let sql = format!(
            "INSERT INTO productos (nombre, cantidad, precio) VALUES ($1, $2, $3) RETURNING {COLUMNAS}"
        );
        Ok(with_pool!(self, pool => sqlx::query_as(&sql)
            .bind(nuevo.nombre())
            .bind(nuevo.cantidad())
            .bind(nuevo.precio())
            .fetch_one(pool)
            .await)?)
    }

    /// Replaces the client-set fields of producto `id` as `precondicion` allows (see
    /// [`Precondicion`]), in one conditional statement: a movement landing between the
    /// writer's read and this write makes it fail rather than be undone.
    pub async fn update(
        &self,
        id: i64,
        nuevo: &NuevoProducto,
        precondicion: Precondicion,
    ) -> Result<Producto, StoreError> {
        // $4 is the stock: the one to set under a version, the one that must be stored without.
        let (cantidad, condicion) = match precondicion {
            Precondicion::Version(_) => ("$4", "version = $5"),
            Precondicion::Ninguna => ("cantidad", "cantidad = $4"),
        };
        let sql = format!(
            "UPDATE productos SET nombre = $1, precio = $2, cantidad = {cantidad}, \
             version = version + 1, actualizado_en = {ahora} \
             WHERE id = $3 AND {condicion} RETURNING {COLUMNAS}",
            ahora = self.ahora()
        );
        let updated: Option<Producto> = with_pool!(self, pool => {
            let mut query = sqlx::query_as(&sql)
                .bind(nuevo.nombre())
                .bind(nuevo.precio())
                .bind(id)
                .bind(nuevo.cantidad());
            if let Precondicion::Version(v) = precondicion {
                query = query.bind(v);
            }
            query.fetch_optional(pool).await
        })?;
        match updated {
            Some(producto) => Ok(producto),
            None => Err(self.why_unchanged(id, nuevo.cantidad(), precondicion).await),
        }
    }

    /// Deletes producto `id`; under [`Precondicion::Version`], only if it is still at that
    /// version.
    pub async fn delete(&self, id: i64, precondicion: Precondicion) -> Result<(), StoreError> {
        let deleted = with_pool!(self, pool => match precondicion {
            Precondicion::Version(v) => {
                sqlx::query("DELETE FROM productos WHERE id = $1 AND version = $2")
                    .bind(id)
                    .bind(v)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
            }
            Precondicion::Ninguna => {
                sqlx::query("DELETE FROM productos WHERE id = $1")
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
            }
        })?;
        match (deleted, precondicion) {
            (0, Precondicion::Version(_)) => Err(self.why_unchanged(id, 0, precondicion).await),
            (0, Precondicion::Ninguna) => Err(StoreError::NoEncontrado(id)),
            _ => Ok(()),
        }
    }

    /// Why a conditional change of producto `id` matched no row: it is gone, it moved past
    /// the version the writer read, or (without one) its stock is not `cantidad`.
    async fn why_unchanged(
        &self,
        id: i64,
        cantidad: i64,
        precondicion: Precondicion,
    ) -> StoreError {
        let actual = match self.get(id).await {
            Ok(actual) => actual,
            Err(e) => return e,
        };
        match precondicion {
            Precondicion::Version(_) => StoreError::VersionObsoleta {
                producto_id: id,
                actual: actual.version,
            },
            Precondicion::Ninguna => StoreError::CantidadSinVersion {
                producto_id: id,
                guardada: actual.cantidad,
                pedida: cantidad,
                version: actual.version,
            },
        }
    }

    /// Records that the movement `pedido` is about to be sent as task `tarea_id`, unless that
    /// task id was used before: for the same request that is a retry ([`Pedido::Repetido`]);
    /// for another, [`StoreError::ClaveReusada`], and the first request stands. Concurrent
    /// requests under one task id queue on SQLite's write lock (on PostgreSQL, on the first
    /// insert of the key, until its transaction ends), so exactly one records it.
    ///
    /// A task id applied before records existed (a database of an earlier version, or a task
    /// a Celery client sent) is checked against the movement it applied instead. Records
    /// older than [`RETENCION_PEDIDOS`] are dropped on the way.
    pub async fn record_movement_request(
        &self,
        tarea_id: &str,
        pedido: &PedidoMovimiento,
    ) -> Result<Pedido, StoreError> {
        let huella = pedido.huella();
        let ahora = segundos_desde_1970(SystemTime::now());
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // First statement a write, as in `apply_movement`: it takes the write lock at once.
            let nuevo = sqlx::query(
                "INSERT INTO pedidos_movimiento (tarea_id, producto_id, huella, pedido_en) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tarea_id) DO NOTHING",
            )
            .bind(tarea_id)
            .bind(pedido.producto_id)
            .bind(&huella)
            .bind(ahora)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let (mismo, visto) = if nuevo {
                let aplicado: Option<(i64, i64)> =
                    sqlx::query_as("SELECT producto_id, delta FROM movimientos WHERE tarea_id = $1")
                        .bind(tarea_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let pedido = (pedido.producto_id, pedido.movimiento().map(|m| m.delta()));
                let mismo = aplicado.is_none_or(|(id, delta)| pedido == (id, Ok(delta)));
                (mismo, aplicado.is_some())
            } else {
                let anterior: String =
                    sqlx::query_scalar("SELECT huella FROM pedidos_movimiento WHERE tarea_id = $1")
                        .bind(tarea_id)
                        .fetch_one(&mut *tx)
                        .await?;
                (anterior == huella, true)
            };
            if !mismo {
                tx.rollback().await?;
                return Err(StoreError::ClaveReusada {
                    tarea_id: tarea_id.to_owned(),
                });
            }
            let vencido = ahora - RETENCION_PEDIDOS.as_secs() as i64;
            sqlx::query("DELETE FROM pedidos_movimiento WHERE pedido_en < $1")
                .bind(vencido)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(if visto {
                Pedido::Repetido
            } else {
                Pedido::Nuevo
            })
        })
    }

    /// Whether `tarea_id` names a movement this inventory knows: one requested within
    /// [`RETENCION_PEDIDOS`], or one applied at any time.
    pub async fn issued_task(&self, tarea_id: &str) -> Result<bool, StoreError> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pedidos_movimiento WHERE tarea_id = $1) \
             OR EXISTS (SELECT 1 FROM movimientos WHERE tarea_id = $1)",
        )
        .bind(tarea_id)
        .fetch_one(pool)
        .await)?)
    }

    /// Applies `movimiento` to producto `producto_id` on behalf of task `tarea_id`, once:
    /// a task id seen before returns the recorded outcome and changes nothing. A `salida`
    /// larger than the stock fails with [`StoreError::StockInsuficiente`] and changes nothing.
    pub async fn apply_movement(
        &self,
        tarea_id: &str,
        producto_id: i64,
        movimiento: &Movimiento,
    ) -> Result<MovimientoAplicado, StoreError> {
        let delta = movimiento.delta();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Claiming the task id is the transaction's first statement and a write, so on SQLite
            // it takes the write lock straight away (waiting on the busy timeout) rather than
            // reading first and then failing to upgrade a stale snapshot. On PostgreSQL a second
            // claim of the same id waits for the first transaction and then finds it taken.
            let claimed = sqlx::query(
                "INSERT INTO movimientos (tarea_id, producto_id, delta, cantidad_resultante) \
                 VALUES ($1, $2, $3, -1) ON CONFLICT (tarea_id) DO NOTHING",
            )
            .bind(tarea_id)
            .bind(producto_id)
            .bind(delta)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !claimed {
                let (producto_id, delta, cantidad_resultante): (i64, i64, i64) = sqlx::query_as(
                    "SELECT producto_id, delta, cantidad_resultante FROM movimientos WHERE tarea_id = $1",
                )
                .bind(tarea_id)
                .fetch_one(&mut *tx)
                .await?;
                return Ok(MovimientoAplicado {
                    producto_id,
                    delta,
                    cantidad_resultante,
                    repetido: true,
                });
            }
            let sql = format!(
                "UPDATE productos SET cantidad = cantidad + $1, version = version + 1, actualizado_en = {ahora} \
                 WHERE id = $2 AND cantidad + $1 BETWEEN 0 AND $3 RETURNING cantidad",
                ahora = self.ahora()
            );
            let nueva: Option<i64> = sqlx::query_scalar(&sql)
                .bind(delta)
                .bind(producto_id)
                .bind(MAX_CANTIDAD)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(cantidad_resultante) = nueva else {
                // Nothing changed; find out why, then drop the claim with the rest.
                let disponible: Option<i64> =
                    sqlx::query_scalar("SELECT cantidad FROM productos WHERE id = $1")
                        .bind(producto_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                tx.rollback().await?;
                return Err(match disponible {
                    None => StoreError::NoEncontrado(producto_id),
                    Some(disponible) if delta < 0 => StoreError::StockInsuficiente {
                        producto_id,
                        disponible,
                        pedido: -delta,
                    },
                    Some(disponible) => StoreError::LimiteExcedido {
                        producto_id,
                        disponible,
                        entrada: delta,
                    },
                });
            };
            sqlx::query("UPDATE movimientos SET cantidad_resultante = $1 WHERE tarea_id = $2")
                .bind(cantidad_resultante)
                .bind(tarea_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(MovimientoAplicado {
                producto_id,
                delta,
                cantidad_resultante,
                repetido: false,
            })
        })
    }

    /// Loads `productos` under the seed name `nombre` if this database has never loaded that
    /// seed and holds no productos; returns how many were inserted. Restarting, or starting
    /// several processes at once, never duplicates them, and a database whose productos were
    /// all deleted stays empty.
    pub async fn seed(&self, nombre: &str, productos: &[NuevoProducto]) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // First statement a write, as in `apply_movement`: concurrent seeders queue here.
            let first_time =
                sqlx::query("INSERT INTO semillas (nombre) VALUES ($1) ON CONFLICT DO NOTHING")
                    .bind(nombre)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
            let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM productos)")
                .fetch_one(&mut *tx)
                .await?;
            let mut inserted = 0;
            if first_time && empty {
                for p in productos {
                    sqlx::query("INSERT INTO productos (nombre, cantidad, precio) VALUES ($1, $2, $3)")
                        .bind(p.nombre())
                        .bind(p.cantidad())
                        .bind(p.precio())
                        .execute(&mut *tx)
                        .await?;
                    inserted += 1;
                }
            }
            tx.commit().await?;
            Ok(inserted)
        })
    }

    /// Seeds the productos shipped in `seeds/productos.json` (see [`Store::seed`]).
    pub async fn seed_default(&self) -> Result<u64, StoreError> {
        let productos = crate::seed::parse_semilla(crate::seed::SEMILLA_PRODUCTOS)?;
        self.seed("productos", &productos).await
    }
}

/// `t` as whole seconds since 1970 (0 for a clock set before it).
fn segundos_desde_1970(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether SQLite answered SQLITE_BUSY (any of its extended codes): another connection holds
/// a lock this one could not wait for.
fn is_busy(e: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| c & 0xff == SQLITE_BUSY),
        _ => false,
    }
}
