//! Connections to Redis, from one `REDIS_URL` (`redis://`, `rediss://` for TLS, a password or
//! ACL user in the URL, `redis+unix://` for a socket, or kombu's
//! `sentinel://host:port;sentinel://host:port` with `REDIS_SENTINEL_MASTER`).
//!
//! Ordinary commands share a multiplexed connection taken from a deadpool-redis pool: many
//! concurrent commands ride one socket, pipelined, and a broken connection is replaced by a
//! fresh one from the pool on the next call. Blocking commands (the fetchers' waits) and
//! pub/sub get dedicated connections, so they never stall other traffic.
//!
//! Behind Sentinel the handle asks the sentinels for the master (the redis crate's
//! `sentinel` module, which also checks with `ROLE` that the server it names is one), and
//! asks again after any connection-level failure or a refusal that says the server is no
//! longer a master (`READONLY`, `MASTERDOWN`): a failover then costs the callers the errors of
//! an outage while no master answers, and every connection opened afterwards (the shared one,
//! dedicated ones, pub/sub) goes to the promoted replica.
//!
//! With `wait_replicas` set, task publishes go through [`Redis::run_acknowledged`], which
//! follows the write with `WAIT` on a pooled connection of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::{Manager, Pool, PoolError, Runtime};
use redis::aio::{MultiplexedConnection, PubSub};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo};
use tokio::sync::Mutex;

use crate::error::{QueueError, Result};

/// The port of a sentinel whose address in the URL names none (Sentinel's own default).
const SENTINEL_PORT: u16 = 26379;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    /// Connections the pool may open.
    pub pool_size: usize,
    /// A command that has had no answer after this long fails (and its connection is replaced).
    pub command_timeout: Duration,
    /// Opening a connection gives up after this long.
    pub connect_timeout: Duration,
    /// A PEM file of the CA that signed the server's certificate, for `rediss://` servers
    /// whose certificate the system's trust store does not know.
    pub ca_cert: Option<std::path::PathBuf>,
    /// The name the sentinels know the master by; required with a `sentinel://` URL, refused
    /// with any other.
    pub sentinel_master: Option<String>,
    /// The sentinels' own password (their `requirepass`, kombu's `sentinel_kwargs`); the
    /// password in a `sentinel://` URL is the data servers'.
    pub sentinel_password: Option<String>,
    /// Replicas that must hold each published task before the publish succeeds (`WAIT`); 0
    /// publishes without waiting.
    pub wait_replicas: usize,
    /// How long `WAIT` may take; must be shorter than `command_timeout`.
    pub wait_timeout: Duration,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            pool_size: 8,
            command_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(2),
            ca_cert: None,
            sentinel_master: None,
            sentinel_password: None,
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
        }
    }
}

/// A handle on one Redis server (behind Sentinel: on whichever server is master now): cheap to
/// clone, shared by every component of a process.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    source: Source,
    /// The database index (from the URL, whatever server serves it).
    db: i64,
    /// The shared multiplexed connection and the generation of the target it belongs to.
    shared: Mutex<Option<(u64, deadpool_redis::Connection)>>,
}

/// Where connections go: one fixed server, or the master the sentinels name.
enum Source {
    Direct(Arc<Target>),
    Sentinel(Box<Sentinels>),
}

/// One server and the pool of connections to it.
struct Target {
    client: Client,
    pool: Pool,
    /// Which resolution made it: a failure reported against an older one changes nothing.
    generation: u64,
}

/// The sentinels, and the master they named last.
struct Sentinels {
    /// Locked while the sentinels are asked, so that one caller asks for all.
    client: Mutex<SentinelClient>,
    master_name: String,
    /// The sentinel URL, masked, for errors.
    shown: String,
    /// The first sentinel's address, the endpoint before any master is known.
    first: (String, u16),
    current: std::sync::Mutex<Option<Arc<Target>>>,
    /// The last master found, for [`Redis::endpoint`] and to log a change of master once.
    last_master: std::sync::Mutex<Option<(String, u16)>>,
    /// When asking the sentinels last failed, and why: callers that queued behind that attempt
    /// get its answer instead of asking again, one after another.
    last_failure: std::sync::Mutex<Option<(Instant, String)>>,
    generations: AtomicU64,
}

impl Sentinels {
    /// Records why asking for the master failed, for the callers queued behind this attempt.
    fn failed(&self, why: String) -> QueueError {
        *self.last_failure.lock().expect("failure lock") = Some((Instant::now(), why.clone()));
        QueueError::Pool(why)
    }
}

/// What a `sentinel://` URL says: kombu's form, `sentinel://[[user]:password@]host[:port][/db]`
/// joined by `;`, the password and database being the data servers'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    pub sentinels: Vec<(String, u16)>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

/// Whether `url` is kombu's Sentinel form.
pub fn is_sentinel_url(url: &str) -> bool {
    url.trim_start()
        .get(..11)
        .is_some_and(|s| s.eq_ignore_ascii_case("sentinel://"))
}

impl SentinelUrl {
    /// Parses kombu's Sentinel URL. Each part must be `sentinel://`; a user, password or
    /// database given in several parts must be the same in each.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: String| QueueError::Config(format!("REDIS_URL {}: {why}", mask_url(url)));
        let mut parsed = SentinelUrl {
            sentinels: Vec::new(),
            username: None,
            password: None,
            db: 0,
        };
        let mut db = None;
        for part in url.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            if !is_sentinel_url(part) {
                return Err(bad(format!(
                    "{} is not a sentinel:// address (every address of the list must be one)",
                    mask_url(part)
                )));
            }
            let as_redis = format!("redis://{}", &part[11..]);
            let address =
                redis::parse_redis_url(&as_redis).ok_or_else(|| bad("not a URL".to_owned()))?;
            let info = as_redis
                .as_str()
                .into_connection_info()
                .map_err(|e| bad(e.to_string()))?;
            let host = match info.addr() {
                ConnectionAddr::Tcp(host, _) => host.trim_matches(['[', ']']).to_owned(),
                _ => return Err(bad("a sentinel is reached over TCP".to_owned())),
            };
            if host.is_empty() {
                return Err(bad(format!("{} names no host", mask_url(part))));
            }
            let port = address.port().unwrap_or(SENTINEL_PORT);
            parsed.sentinels.push((host, port));
            let settings = info.redis_settings();
            let same = |mine: &mut Option<String>, theirs: Option<&str>, what: &str| match (
                mine.as_deref(),
                theirs,
            ) {
                (_, None) => Ok(()),
                (None, Some(t)) => {
                    *mine = Some(t.to_owned());
                    Ok(())
                }
                (Some(m), Some(t)) if m == t => Ok(()),
                _ => Err(bad(format!(
                    "the sentinel addresses give different {what}s"
                ))),
            };
            same(&mut parsed.username, settings.username(), "user")?;
            same(&mut parsed.password, settings.password(), "password")?;
            if address.path().trim_matches('/').is_empty() {
                continue;
            }
            match db {
                Some(d) if d != settings.db() => {
                    return Err(bad("the sentinel addresses give different databases".into()))
                }
                _ => db = Some(settings.db()),
            }
        }
        if parsed.sentinels.is_empty() {
            return Err(bad("no sentinel address".to_owned()));
        }
        parsed.db = db.unwrap_or(0);
        Ok(parsed)
    }
}

impl Redis {
    /// Parses the URL and prepares the pool; no connection is opened until one is needed, so
    /// a process can start while Redis is down and connect when it comes up.
    pub fn open(config: RedisConfig) -> Result<Self> {
        // rustls needs one process-wide crypto provider for `rediss://`; a second call is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if config.wait_replicas > 0
            && (config.wait_timeout.is_zero() || config.wait_timeout >= config.command_timeout)
        {
            // WAIT 0 would block forever; a longer WAIT than the connection's response
            // timeout would be cut off as a broken connection.
            return Err(QueueError::Config(format!(
                "REDIS_WAIT_TIMEOUT_MS must be between 1 and {} ms",
                config.command_timeout.as_millis() - 1
            )));
        }
        let sentinel = is_sentinel_url(&config.url);
        match (&config.sentinel_master, sentinel) {
            (None, true) => {
                return Err(QueueError::Config(format!(
                    "REDIS_URL {} names sentinels: REDIS_SENTINEL_MASTER must name the master they watch",
                    mask_url(&config.url)
                )))
            }
            (Some(name), false) => {
                return Err(QueueError::Config(format!(
                    "REDIS_SENTINEL_MASTER is {name:?} but REDIS_URL {} is not a sentinel:// URL",
                    mask_url(&config.url)
                )))
            }
            (Some(name), true) if name.trim().is_empty() => {
                return Err(QueueError::Config("REDIS_SENTINEL_MASTER is empty".into()))
            }
            _ => {}
        }
        let (source, db) = if sentinel {
            Self::sentinels(&config)?
        } else {
            let client = Self::direct_client(&config)?;
            let db = client.get_connection_info().redis_settings().db();
            let target = Target {
                pool: Self::pool(&config, &client)?,
                client,
                generation: 0,
            };
            (Source::Direct(Arc::new(target)), db)
        };
        Ok(Redis {
            inner: Arc::new(Inner {
                config,
                source,
                db,
                shared: Mutex::new(None),
            }),
        })
    }

    fn direct_client(config: &RedisConfig) -> Result<Client> {
        let bad_url = |e: redis::RedisError| {
            QueueError::Config(format!("REDIS_URL {}: {e}", mask_url(&config.url)))
        };
        match &config.ca_cert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    QueueError::Config(format!("CA certificate {}: {e}", path.display()))
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                Client::build_with_tls(config.url.as_str(), certs).map_err(bad_url)
            }
            None => Client::open(config.url.as_str()).map_err(bad_url),
        }
    }

    fn sentinels(config: &RedisConfig) -> Result<(Source, i64)> {
        let url = SentinelUrl::parse(&config.url)?;
        if config.ca_cert.is_some() {
            return Err(QueueError::Config(
                "REDIS_CA_CERT (TLS) is not supported through Sentinel".into(),
            ));
        }
        let master_name = config.sentinel_master.clone().unwrap_or_default();
        let addrs = url
            .sentinels
            .iter()
            .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
        let config_error = |e: redis::RedisError| {
            QueueError::Config(format!("REDIS_URL {}: {e}", mask_url(&config.url)))
        };
        let mut builder =
            SentinelClientBuilder::new(addrs, &master_name, SentinelServerType::Master)
                .map_err(config_error)?
                .set_client_to_redis_db(url.db);
        if let Some(user) = &url.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &url.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = &config.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        let client = builder.build().map_err(config_error)?;
        let sentinels = Sentinels {
            client: Mutex::new(client),
            master_name,
            shown: mask_url(&config.url),
            first: url.sentinels[0].clone(),
            current: std::sync::Mutex::new(None),
            last_master: std::sync::Mutex::new(None),
            last_failure: std::sync::Mutex::new(None),
            generations: AtomicU64::new(1),
        };
        Ok((Source::Sentinel(Box::new(sentinels)), url.db))
    }

    fn pool(config: &RedisConfig, client: &Client) -> Result<Pool> {
        let conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout));
        let manager = Manager::new_with_config(client.get_connection_info().clone(), conn_config)
            .map_err(|e| QueueError::Config(e.to_string()))?;
        Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(config.connect_timeout))
            .wait_timeout(Some(config.command_timeout))
            .build()
            .map_err(|e| QueueError::Config(e.to_string()))
    }

    pub fn from_url(url: &str) -> Result<Self> {
        Self::open(RedisConfig::new(url))
    }

    /// The database index, which appears in event channel names (`/0.celeryev/...`).
    pub fn db(&self) -> i64 {
        self.inner.db
    }

    /// The server's host and port as configured (`("unix", 0)` for a socket); behind Sentinel,
    /// the master's last found (the first sentinel's before any was).
    pub fn endpoint(&self) -> (String, u16) {
        let client = match &self.inner.source {
            Source::Direct(target) => &target.client,
            Source::Sentinel(s) => {
                return s
                    .last_master
                    .lock()
                    .expect("master lock")
                    .clone()
                    .unwrap_or_else(|| s.first.clone())
            }
        };
        address_of(client)
    }

    /// The URL with any password hidden, for logs.
    pub fn display_url(&self) -> String {
        mask_url(&self.inner.config.url)
    }

    /// The server to talk to now: the configured one, or the master the sentinels name
    /// (asked for when none is known, after a failure was reported).
    async fn target(&self) -> Result<Arc<Target>> {
        match &self.inner.source {
            Source::Direct(target) => Ok(target.clone()),
            Source::Sentinel(s) => {
                if let Some(target) = s.current.lock().expect("target lock").clone() {
                    return Ok(target);
                }
                // Boxed: the sentinel search is a deep future, and inlined into every command's
                // it overflows the compiler's layout depth in large callers (the worker).
                Box::pin(self.find_master(s)).await
            }
        }
    }

    async fn find_master(&self, s: &Sentinels) -> Result<Arc<Target>> {
        let asked = Instant::now();
        let mut client = s.client.lock().await;
        if let Some(target) = s.current.lock().expect("target lock").clone() {
            return Ok(target);
        }
        if let Some((at, why)) = s.last_failure.lock().expect("failure lock").clone() {
            if at >= asked {
                return Err(QueueError::Pool(why));
            }
        }
        // The crate bounds each of its connections (1 s to connect, 0.5 s per answer); this
        // bounds the whole search, over every sentinel and the master each names.
        let limit = self.inner.config.connect_timeout * 2;
        let found = match tokio::time::timeout(limit, client.async_get_client()).await {
            Ok(Ok(master)) => master,
            Ok(Err(e)) => {
                let why = if e.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel {
                    format!(
                        "no sentinel of {} names a master {:?} that answers as one (the name \
                         is unknown to them, or the master is down): {e}",
                        s.shown, s.master_name
                    )
                } else {
                    // The crate's error does not say whether a sentinel or the master it
                    // named refused: until the sentinels fail over they name a dead master.
                    format!(
                        "no master {:?} answered through {} (the sentinels, or the master \
                         they name, which stays named until they fail over): {e}",
                        s.master_name, s.shown
                    )
                };
                return Err(s.failed(why));
            }
            Err(_) => {
                return Err(s.failed(format!(
                    "the sentinels of {} named no master {:?} within {limit:?}",
                    s.shown, s.master_name
                )))
            }
        };
        let target = Arc::new(Target {
            pool: Self::pool(&self.inner.config, &found)?,
            generation: s.generations.fetch_add(1, Ordering::Relaxed),
            client: found,
        });
        let address = address_of(&target.client);
        let mut last = s.last_master.lock().expect("master lock");
        match last.as_ref() {
            None => tracing::info!(
                master = %format!("{}:{}", address.0, address.1),
                name = %s.master_name,
                "Redis master found through Sentinel"
            ),
            Some(before) if *before != address => tracing::warn!(
                antes = %format!("{}:{}", before.0, before.1),
                ahora = %format!("{}:{}", address.0, address.1),
                name = %s.master_name,
                "Redis master changed"
            ),
            Some(_) => {}
        }
        *last = Some(address);
        *s.last_failure.lock().expect("failure lock") = None;
        *s.current.lock().expect("target lock") = Some(target.clone());
        drop(client);
        Ok(target)
    }

    /// Forgets the master of `generation` (all when `None`), so the next call asks the
    /// sentinels again. Nothing to forget for a fixed server.
    fn forget_master(&self, generation: Option<u64>) {
        if let Source::Sentinel(s) = &self.inner.source {
            let mut current = s.current.lock().expect("target lock");
            if current
                .as_ref()
                .is_some_and(|t| generation.is_none_or(|g| g == t.generation))
            {
                *current = None;
            }
        }
    }

    /// A connection of the target's pool. A failure to connect (not a pool that is merely
    /// busy) makes the sentinels be asked again.
    async fn pooled(&self, target: &Target) -> Result<deadpool_redis::Connection> {
        match target.pool.get().await {
            Ok(conn) => Ok(conn),
            Err(e) => {
                if !matches!(e, PoolError::Timeout(deadpool_redis::TimeoutType::Wait)) {
                    self.forget_master(Some(target.generation));
                }
                Err(e.into())
            }
        }
    }

    /// The shared multiplexed connection for ordinary commands. Call [`Redis::report`] with
    /// any error a command on it returns, so a dead connection is replaced.
    pub async fn conn(&self) -> Result<MultiplexedConnection> {
        self.conn_of().await.map(|(_, c)| c)
    }

    async fn conn_of(&self) -> Result<(u64, MultiplexedConnection)> {
        let target = self.target().await?;
        let mut slot = self.inner.shared.lock().await;
        if let Some((generation, conn)) = slot.as_ref() {
            if *generation == target.generation {
                return Ok((*generation, (**conn).clone()));
            }
        }
        let conn = self.pooled(&target).await?;
        let cloned = (*conn).clone();
        if let Some((_, old)) = slot.replace((target.generation, conn)) {
            // A connection to a former master goes nowhere, least of all back to a pool.
            let _ = deadpool_redis::Connection::take(old);
        }
        Ok((target.generation, cloned))
    }

    /// Tells the handle that a command failed; a connection-level failure drops the shared
    /// connection so the next [`Redis::conn`] opens a fresh one, and behind Sentinel a failure
    /// that may mean a failover (a lost connection, `READONLY`, `MASTERDOWN`) makes the next
    /// call ask the sentinels for the master.
    pub async fn report(&self, error: &QueueError) {
        self.report_for(None, error).await
    }

    async fn report_for(&self, generation: Option<u64>, error: &QueueError) {
        if !error.is_connection_error() && !self.follows_master(error) {
            return;
        }
        self.forget_master(generation);
        let mut slot = self.inner.shared.lock().await;
        if slot
            .as_ref()
            .is_some_and(|(g, _)| generation.is_none_or(|want| want == *g))
        {
            if let Some((_, conn)) = slot.take() {
                // Don't hand a broken connection back to the pool.
                let _ = deadpool_redis::Connection::take(conn);
            }
        }
    }

    /// Whether `error` says the server is no longer the master, and the handle can find the
    /// one that is (behind Sentinel; a fixed server stays what it is).
    fn follows_master(&self, error: &QueueError) -> bool {
        matches!(self.inner.source, Source::Sentinel(_)) && error.is_not_master()
    }

    /// Whether running a failed command again, on a fresh connection, may succeed and cannot
    /// do harm: the connection failed without the command surely running, or (behind
    /// Sentinel) the server refused it for not being the master.
    fn may_retry(&self, error: &QueueError) -> bool {
        (error.is_connection_error() && !error.is_timeout()) || self.follows_master(error)
    }

    /// Runs `f` on the shared connection. After a connection-level failure (a connection
    /// Redis closed while it sat idle, a restarted server) or, behind Sentinel, a server that
    /// is no longer the master, it runs `f` once more on a fresh connection (to the master
    /// found again), so a stale socket costs a retry rather than an error. Every operation of
    /// this crate tolerates running twice: acknowledgements and settles check ownership,
    /// results never overwrite SUCCESS, and a duplicated publish is an at-least-once delivery.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut retried = false;
        loop {
            let (generation, conn) = self.conn_of().await?;
            match f(conn).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let e = QueueError::Redis(e);
                    self.report_for(Some(generation), &e).await;
                    if retried || !self.may_retry(&e) {
                        return Err(e);
                    }
                    retried = true;
                }
            }
        }
    }

    /// Like [`Redis::run`] for a write that must reach replicas (task publishes): with
    /// `wait_replicas` set, `f` runs on a pooled connection of its own and is followed there by
    /// `WAIT replicas timeout`; fewer replicas than asked is [`QueueError::NotReplicated`]
    /// (the write is on the master all the same). `WAIT` counts the writes made before it on
    /// its own connection, and blocks that connection until it answers: on the shared
    /// connection it would hold up every other command of the process meanwhile, for the
    /// whole timeout while a replica is away. With `wait_replicas` at 0 this is [`Redis::run`].
    pub async fn run_acknowledged<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let wanted = self.inner.config.wait_replicas;
        if wanted == 0 {
            return self.run(f).await;
        }
        let mut retried = false;
        loop {
            let target = self.target().await?;
            let mut conn = self.pooled(&target).await?;
            let written = f((*conn).clone()).await;
            let value = match written {
                Ok(v) => v,
                Err(e) => {
                    let e = QueueError::Redis(e);
                    self.release_failed(&target, conn, &e).await;
                    if retried || !self.may_retry(&e) {
                        return Err(e);
                    }
                    retried = true;
                    continue;
                }
            };
            let timeout = self.inner.config.wait_timeout.as_millis() as u64;
            let got: std::result::Result<usize, _> = redis::cmd("WAIT")
                .arg(wanted)
                .arg(timeout.max(1))
                .query_async(&mut *conn)
                .await;
            return match got {
                Ok(got) if got >= wanted => Ok(value),
                Ok(got) => Err(QueueError::NotReplicated { wanted, got }),
                Err(e) => {
                    // The write was done: not retried, lest it be done twice for nothing.
                    let e = QueueError::Redis(e);
                    self.release_failed(&target, conn, &e).await;
                    Err(e)
                }
            };
        }
    }

    /// Gives back a pooled connection a command failed on, and reports the failure: a broken
    /// connection is dropped rather than handed back to the pool.
    async fn release_failed(
        &self,
        target: &Target,
        conn: deadpool_redis::Connection,
        error: &QueueError,
    ) {
        if error.is_connection_error() {
            let _ = deadpool_redis::Connection::take(conn);
        }
        self.report_for(Some(target.generation), error).await;
    }

    /// A connection of its own, for blocking commands. `response_timeout` must exceed the
    /// longest block the caller asks Redis for.
    pub async fn dedicated(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.config.connect_timeout))
            .set_response_timeout(response_timeout);
        let target = self.target().await?;
        match target
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => Ok(conn),
            Err(e) => {
                let e = QueueError::Redis(e);
                self.report_for(Some(target.generation), &e).await;
                Err(e)
            }
        }
    }

    /// A pub/sub connection of its own.
    pub async fn pubsub(&self) -> Result<PubSub> {
        let target = self.target().await?;
        let connect = target.client.get_async_pubsub();
        let error = match tokio::time::timeout(self.inner.config.connect_timeout, connect).await {
            Ok(Ok(pubsub)) => return Ok(pubsub),
            Ok(Err(e)) => QueueError::Redis(e),
            Err(_) => QueueError::Pool(format!(
                "pub/sub connection to {} timed out",
                self.display_url()
            )),
        };
        self.report_for(Some(target.generation), &error).await;
        Err(error)
    }

    /// Redis's `maxmemory-policy`, when it lets us read it (managed services often disable
    /// CONFIG): `None` when unknown.
    pub async fn eviction_policy(&self) -> Option<String> {
        let reply: Vec<String> = self
            .run(|mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async(&mut c)
                    .await
            })
            .await
            .ok()?;
        reply.get(1).cloned()
    }

    /// Warns when Redis may evict keys to make room: queues, held-message records and leases
    /// must never be evicted (a message would be lost, a live worker declared dead). The queue
    /// needs `noeviction` (or a `volatile-*` policy, which evicts only keys with a TTL, such as
    /// results). Returns whether the policy was found unsafe.
    pub async fn warn_if_evicting(&self) -> bool {
        match self.eviction_policy().await.as_deref() {
            Some(policy) if policy.starts_with("allkeys-") => {
                tracing::warn!(
                    policy,
                    "Redis may evict any key when full (maxmemory-policy {policy}): queued and held messages can be lost; set maxmemory-policy noeviction"
                );
                true
            }
            _ => false,
        }
    }

    /// PUBLISHes `payload` on `channel` (events, control requests); how many subscribers got it.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<i64> {
        self.run(|mut c| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
    }

    /// PING: whether Redis answers now.
    pub async fn ping(&self) -> Result<()> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }
}

/// A client's server as host and port (`("unix", 0)` for a socket).
fn address_of(client: &Client) -> (String, u16) {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            (host.clone(), *port)
        }
        _ => ("unix".to_owned(), 0),
    }
}

/// Hides every secret a Redis URL can carry, so the URL can be logged: the password of the
/// user part (`redis://user:secret@host` → `redis://user:***@host`, whatever characters the
/// password holds), password-like query parameters (`?password=`, `&pass=`, the redis crate's
/// and kombu's spellings, any case) and each URL of a list (`sentinel://…;sentinel://…`). Text
/// that is not a URL at all is not shown: it could be anything, a password included.
pub fn mask_url(url: &str) -> String {
    url.split(';').map(mask_one).collect::<Vec<_>>().join(";")
}

fn mask_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.trim().is_empty() {
            String::new()
        } else {
            "<not a URL>".to_owned()
        };
    };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    // The user part ends at the last `@` before the query: a password may hold `/`, `@` or `:`.
    let base = match base.rfind('@') {
        Some(at) => {
            let (userinfo, host) = (&base[..at], &base[at + 1..]);
            match userinfo.split_once(':') {
                Some((user, _)) if !user.contains('/') => format!("{user}:***@{host}"),
                _ => format!("***@{host}"),
            }
        }
        None => base.to_owned(),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret_param(k) => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}://{base}?{q}"),
        None => format!("{scheme}://{base}"),
    }
}

fn secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "pass", "password", "passwd", "pwd", "secret", "token", "auth",
    ]
    .iter()
    .any(|s| name == *s || name.ends_with(&format!("_{s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            mask_url("redis://:s3cret@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(
            mask_url("rediss://app:p@ss@host/1"),
            "rediss://app:***@host/1"
        );
        assert_eq!(mask_url("redis://token@host"), "redis://***@host");
        // A password holding `/`, `@`, `:` or `?`-free oddities stays hidden whole.
        for url in [
            "redis://:pa/ss@host:6379/0",
            "redis://u:p@s/s:w@host/0",
            "redis://:a:b:c@host",
        ] {
            let masked = mask_url(url);
            assert!(
                masked.ends_with("***@host:6379/0")
                    || masked.ends_with("***@host/0")
                    || masked.ends_with("***@host"),
                "{url} → {masked}"
            );
            for secret in ["pa/ss", "p@s/s:w", "a:b:c"] {
                assert!(!masked.contains(secret), "{url} → {masked}");
            }
        }
        assert_eq!(
            mask_url("redis+unix:///run/redis.sock?db=2&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=2&pass=***"
        );
        assert_eq!(
            mask_url("redis://host:6379/0?Password=s3cret&protocol=resp3"),
            "redis://host:6379/0?Password=***&protocol=resp3"
        );
        assert_eq!(
            mask_url("sentinel://:a@h1:26379;sentinel://:b@h2:26379"),
            "sentinel://:***@h1:26379;sentinel://:***@h2:26379"
        );
        assert_eq!(mask_url("s3cret-not-a-url"), "<not a URL>");
    }

    /// Whatever the URL, what the library says of it (its display form, its errors) holds
    /// no password.
    #[test]
    fn no_form_of_url_leaks_its_password_into_errors() {
        for url in [
            "redis://:s3cret@[::1:6379/0",
            "redis://:s3cret@host:notaport/0",
            "redis+unix:///nowhere.sock?pass=s3cret",
            "unix:///nowhere.sock?password=s3cret",
            "s3cret",
            "redis://:s3cret@host/not-a-db",
        ] {
            let shown = match Redis::from_url(url) {
                Ok(r) => r.display_url(),
                Err(e) => e.to_string(),
            };
            assert!(!shown.contains("s3cret"), "{url} → {shown}");
        }
    }

    #[test]
    fn bad_urls_are_config_errors() {
        assert!(matches!(
            Redis::from_url("http://nope"),
            Err(QueueError::Config(_))
        ));
        let r = Redis::from_url("redis://127.0.0.1:6379/3").unwrap();
        assert_eq!(r.db(), 3);
    }
}

/// Tracks one component's loss of Redis: logs once when it starts and once when it ends
/// (not once per failed retry), and paces the retries with a capped exponential backoff.
#[derive(Debug)]
pub struct Outage {
    component: &'static str,
    down_since: Option<std::time::Instant>,
    backoff: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Outage {
    pub fn new(component: &'static str) -> Self {
        Outage {
            component,
            down_since: None,
            backoff: BACKOFF_MIN,
        }
    }

    /// Records a failure; returns how long to wait before trying again.
    pub fn failed(&mut self, error: &QueueError) -> Duration {
        match self.down_since {
            None => {
                tracing::warn!(component = self.component, %error, "redis unavailable; retrying until it is back");
                self.down_since = Some(std::time::Instant::now());
                self.backoff = BACKOFF_MIN;
            }
            Some(_) => self.backoff = (self.backoff * 2).min(BACKOFF_MAX),
        }
        self.backoff
    }

    /// Records a success, logging the end of an outage.
    pub fn ok(&mut self) {
        if let Some(since) = self.down_since.take() {
            tracing::info!(component = self.component, down_for = ?since.elapsed(), "redis reachable again");
        }
    }

    pub fn is_down(&self) -> bool {
        self.down_since.is_some()
    }
}
