//! Connections to Redis, from one `REDIS_URL` (`redis://`, `rediss://` for TLS, a password or
//! ACL user in the URL, `redis+unix://` for a socket).
//!
//! Ordinary commands share a multiplexed connection taken from a deadpool-redis pool: many
//! concurrent commands ride one socket, pipelined, and a broken connection is replaced by a
//! fresh one from the pool on the next call. Blocking commands (the fetchers' waits) and
//! pub/sub get dedicated connections, so they never stall other traffic.

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::{MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::Mutex;

use crate::error::{QueueError, Result};

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
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            pool_size: 8,
            command_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(2),
            ca_cert: None,
        }
    }
}

/// A handle on one Redis server: cheap to clone, shared by every component of a process.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    pool: Pool,
    config: RedisConfig,
    shared: Mutex<Option<deadpool_redis::Connection>>,
}

impl Redis {
    /// Parses the URL and prepares the pool; no connection is opened until one is needed, so
    /// a process can start while Redis is down and connect when it comes up.
    pub fn open(config: RedisConfig) -> Result<Self> {
        // rustls needs one process-wide crypto provider for `rediss://`; a second call is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bad_url = |e: redis::RedisError| {
            QueueError::Config(format!("REDIS_URL {}: {e}", mask_url(&config.url)))
        };
        let client = match &config.ca_cert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    QueueError::Config(format!("CA certificate {}: {e}", path.display()))
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                Client::build_with_tls(config.url.as_str(), certs).map_err(bad_url)?
            }
            None => Client::open(config.url.as_str()).map_err(bad_url)?,
        };
        let conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout));
        let manager = Manager::new_with_config(client.get_connection_info().clone(), conn_config)
            .map_err(|e| QueueError::Config(e.to_string()))?;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(config.connect_timeout))
            .wait_timeout(Some(config.command_timeout))
            .build()
            .map_err(|e| QueueError::Config(e.to_string()))?;
        Ok(Redis {
            inner: Arc::new(Inner {
                client,
                pool,
                config,
                shared: Mutex::new(None),
            }),
        })
    }

    pub fn from_url(url: &str) -> Result<Self> {
        Self::open(RedisConfig::new(url))
    }

    /// The database index, which appears in event channel names (`/0.celeryev/...`).
    pub fn db(&self) -> i64 {
        self.inner
            .client
            .get_connection_info()
            .redis_settings()
            .db()
    }

    /// The URL with any password hidden, for logs.
    /// The server's host and port as configured (`("unix", 0)` for a socket).
    pub fn endpoint(&self) -> (String, u16) {
        match &self.inner.client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(host, port)
            | redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
            _ => ("unix".to_owned(), 0),
        }
    }

    pub fn display_url(&self) -> String {
        mask_url(&self.inner.config.url)
    }

    /// The shared multiplexed connection for ordinary commands. Call [`Redis::report`] with
    /// any error a command on it returns, so a dead connection is replaced.
    pub async fn conn(&self) -> Result<MultiplexedConnection> {
        let mut slot = self.inner.shared.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok((**conn).clone());
        }
        let conn = self.inner.pool.get().await?;
        let cloned = (*conn).clone();
        *slot = Some(conn);
        Ok(cloned)
    }

    /// Tells the handle that a command failed; a connection-level failure drops the shared
    /// connection so the next [`Redis::conn`] opens a fresh one.
    pub async fn report(&self, error: &QueueError) {
        if error.is_connection_error() {
            if let Some(conn) = self.inner.shared.lock().await.take() {
                // Don't hand a broken connection back to the pool.
                let _ = deadpool_redis::Connection::take(conn);
            }
        }
    }

    /// Runs `f` on the shared connection. After a connection-level failure (a connection
    /// Redis closed while it sat idle, a restarted server) it runs `f` once more on a fresh
    /// connection, so a stale socket costs a retry rather than an error. Every operation of
    /// this crate tolerates running twice: acknowledgements and settles check ownership,
    /// results never overwrite SUCCESS, and a duplicated publish is an at-least-once delivery.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut retried = false;
        loop {
            let conn = self.conn().await?;
            match f(conn).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let e = QueueError::Redis(e);
                    self.report(&e).await;
                    if retried || !e.is_connection_error() || e.is_timeout() {
                        return Err(e);
                    }
                    retried = true;
                }
            }
        }
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
        Ok(self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// A pub/sub connection of its own.
    pub async fn pubsub(&self) -> Result<PubSub> {
        let connect = self.inner.client.get_async_pubsub();
        match tokio::time::timeout(self.inner.config.connect_timeout, connect).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(QueueError::Pool(format!(
                "pub/sub connection to {} timed out",
                self.display_url()
            ))),
        }
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
