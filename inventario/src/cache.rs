//! The full product list, kept serialized in memory for as long as the database has not changed,
//! so that `GET /inventario` (the request every client and load test makes) costs a microsecond
//! check instead of a query through the connection pool.
//!
//! Whether anything changed is SQLite's own answer: `PRAGMA data_version` on a connection of the
//! cache's own returns a new value after any *other* connection commits, whoever it belongs to
//! (this process's pool, the worker process, a `sqlite3` shell), and answers without a pool hop.
//! The version is read before the list is, so a commit landing in between leaves a newer list
//! under an older version: the next request sees the version move and reads again. A stale list
//! is never served for a version it does not reflect.
//!
//! The pragma opens a read transaction, which costs two `fcntl` calls on the WAL index and a
//! mutex inside SQLite that requests on both threads fight over, a measurable share of the
//! listing's throughput. So before it, the cache reads the WAL index's header (`<db>-shm`,
//! 96 bytes by one `pread`; format in <https://sqlite.org/walformat.html>): every commit, by any
//! process, rewrites that header with a new change counter before it becomes visible to readers.
//! If the header is the one seen when the held list was known current, nothing has committed
//! since and the list is served with no lock taken. Otherwise (or when the header is unreadable,
//! torn by a writer mid-update, or of a format version this code does not know) the pragma
//! decides, as above.
//!
//! On PostgreSQL there is no file to watch; [`VersionCache`] holds the list under the number of
//! the `version_productos` row instead, which a trigger moves in every transaction that writes
//! productos (see the PostgreSQL migrations). Reading that number is one indexed row per request,
//! and it is exact across instances: a reader sees the new number exactly when it sees the new
//! rows, so a client that wrote through one instance and reads through another never gets the
//! list from before its write. `LISTEN/NOTIFY` would spare that query, but a notification
//! reaches other instances only some time after the commit (and is lost while a listener
//! reconnects), so another instance could serve the old list meanwhile.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};

/// One copy of the WAL-index header; the file starts with two.
const HEADER: usize = 48;
/// `iVersion`, the header's first field: the WAL-index format this code reads.
const WAL_INDEX_VERSION: u32 = 3_007_000;
/// `isInit`: 1 once the header has been written.
const IS_INIT: usize = 12;

/// The cache's connection and the list it holds, with the version that list reflects, and the
/// same list under the WAL-index header it is current for.
pub struct ListCache {
    slot: Mutex<Slot>,
    /// `<db>-shm`, when it could be opened.
    index: Option<File>,
    current: RwLock<Option<([u8; HEADER], Bytes)>>,
}

struct Slot {
    conn: Connection,
    cached: Option<(i64, Bytes)>,
}

/// A lookup that found no list for the database's version: read the list, then hand both to
/// [`ListCache::put`].
#[derive(Debug, Clone, Copy)]
pub struct Miss {
    version: i64,
    header: Option<[u8; HEADER]>,
}

impl std::fmt::Debug for ListCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListCache")
            .field("wal_index", &self.index.is_some())
            .finish_non_exhaustive()
    }
}

impl ListCache {
    /// A read-only connection to the database file at `path` (which must exist), and its WAL
    /// index if the database is in WAL mode.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Fails now rather than on the first request if the file is unusable; and a read makes
        // SQLite create the WAL index if no one has yet.
        conn.query_row("PRAGMA data_version", [], |row| row.get::<_, i64>(0))?;
        let mut shm = path.as_os_str().to_owned();
        shm.push("-shm");
        let index = File::open(&shm)
            .inspect_err(|e| tracing::debug!(error = %e, "list cache: no WAL index to watch"))
            .ok();
        Ok(ListCache {
            slot: Mutex::new(Slot { conn, cached: None }),
            index,
            current: RwLock::new(None),
        })
    }

    /// The WAL index's header, if it reads whole: SQLite writes the second copy, then the first,
    /// so equal copies (read first, then second) are one header and not a torn write.
    fn header(&self) -> Option<[u8; HEADER]> {
        let mut both = [0u8; 2 * HEADER];
        self.index.as_ref()?.read_exact_at(&mut both, 0).ok()?;
        let (first, second) = both.split_at(HEADER);
        let version = u32::from_ne_bytes(first[..4].try_into().expect("4 bytes"));
        (first == second && version == WAL_INDEX_VERSION && first[IS_INIT] == 1)
            .then(|| first.try_into().expect("HEADER bytes"))
    }

    /// The list current for the database as it is now, or what to read it for.
    pub fn lookup(&self) -> rusqlite::Result<Result<Bytes, Miss>> {
        let header = self.header();
        if let Some(header) = header {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if let Some((seen, body)) = current.as_ref() {
                if *seen == header {
                    return Ok(Ok(body.clone()));
                }
            }
        }
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let version = slot
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get::<_, i64>(0))?;
        match &slot.cached {
            Some((v, body)) if *v == version => {
                // Nothing committed since the list was read, nor since the header was.
                let body = body.clone();
                drop(slot);
                self.remember(header, body.clone());
                Ok(Ok(body))
            }
            _ => Ok(Err(Miss { version, header })),
        }
    }

    /// Keeps `body`, read after `miss` was looked up, as the list of that version (and header).
    pub fn put(&self, miss: Miss, body: Bytes) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.cached = Some((miss.version, body.clone()));
        drop(slot);
        self.remember(miss.header, body);
    }

    /// A slower request may put an older pair back after a newer one: still a true pair, it
    /// only costs the next request the pragma.
    fn remember(&self, header: Option<[u8; HEADER]>, body: Bytes) {
        if let Some(header) = header {
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some((header, body));
        }
    }
}

/// The list under the `version_productos` number it was read after (PostgreSQL).
#[derive(Debug, Default)]
pub struct VersionCache {
    held: Mutex<Option<(i64, Bytes)>>,
}

impl VersionCache {
    /// The list held for `version`, if it is that one.
    pub fn lookup(&self, version: i64) -> Option<Bytes> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.as_ref()
            .filter(|(v, _)| *v == version)
            .map(|(_, body)| body.clone())
    }

    /// Keeps `body`, read after `version` was, as that version's list. A slower request may put
    /// an older pair back after a newer one: still a true pair, it only costs the next request
    /// a read.
    pub fn put(&self, version: i64, body: Bytes) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some((version, body));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ListCache;
    use crate::{NuevoProducto, Pagina, Precondicion, Producto, Store};

    async fn open(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("inventario.db").display());
        Store::open(&url).await.expect("open the store")
    }

    fn cantidades(body: &[u8]) -> Vec<i64> {
        let list: Vec<serde_json::Value> = serde_json::from_slice(body).expect("a JSON array");
        list.iter()
            .map(|p| p["cantidad"].as_i64().expect("cantidad"))
            .collect()
    }

    #[tokio::test]
    async fn serves_the_same_bytes_until_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        store.seed_default().await.unwrap();
        let first = store.list_json().await.unwrap();
        let again = store.list_json().await.unwrap();
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the second listing came from memory"
        );
        let read: Vec<Producto> = store.list(Pagina::default()).await.unwrap();
        assert_eq!(
            first,
            serde_json::to_vec(&read).unwrap(),
            "same JSON as a read"
        );

        let nuevo = NuevoProducto::parse("Panela 500 g", 7, 1.5).unwrap();
        store.create(&nuevo).await.unwrap();
        let after = store.list_json().await.unwrap();
        assert_ne!(first.as_ptr(), after.as_ptr());
        assert_eq!(cantidades(&after).len(), cantidades(&first).len() + 1);
    }

    #[tokio::test]
    async fn sees_commits_of_another_connection_at_once() {
        // A second store on the same file stands for the worker process: its commits go
        // through connections this store's cache knows nothing about.
        let dir = tempfile::tempdir().unwrap();
        let service = open(&dir).await;
        service.seed_default().await.unwrap();
        let worker = open(&dir).await;
        for round in 1..=20 {
            let before = cantidades(&service.list_json().await.unwrap());
            let nuevo = NuevoProducto::parse("Arroz", round, 2.0).unwrap();
            let leido = Precondicion::Version(worker.get(1).await.unwrap().version);
            worker.update(1, &nuevo, leido).await.unwrap();
            let after = cantidades(&service.list_json().await.unwrap());
            assert_eq!(
                after[0], round,
                "round {round}: the listing shows the other commit"
            );
            assert_eq!(before[1..], after[1..]);
        }
    }

    #[tokio::test]
    async fn the_wal_index_header_moves_with_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        store.seed_default().await.unwrap();
        let cache = ListCache::open(&dir.path().join("inventario.db")).unwrap();
        let mut seen = vec![cache.header().expect("a WAL database's header reads whole")];
        for round in 1..=5 {
            let nuevo = NuevoProducto::parse("Arroz", round, 2.0).unwrap();
            let leido = Precondicion::Version(store.get(1).await.unwrap().version);
            store.update(1, &nuevo, leido).await.unwrap();
            let header = cache.header().expect("header");
            assert!(!seen.contains(&header), "round {round}: a new header");
            seen.push(header);
        }
        assert_eq!(
            cache.header(),
            seen.last().copied(),
            "no commit, same header"
        );
    }

    #[tokio::test]
    async fn an_unchanged_database_is_answered_without_the_pragma() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        store.seed_default().await.unwrap();
        let cache =
            std::sync::Arc::new(ListCache::open(&dir.path().join("inventario.db")).unwrap());
        let miss = cache.lookup().unwrap().expect_err("nothing held yet");
        cache.put(miss, "[1]".into());
        // With the pragma's connection held here, only the header path can answer.
        let held = cache.slot.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let c = cache.clone();
        std::thread::spawn(move || tx.send(c.lookup().unwrap().ok()));
        let answer = rx.recv_timeout(Duration::from_secs(10));
        drop(held);
        assert_eq!(answer, Ok(Some("[1]".into())));
    }
}
