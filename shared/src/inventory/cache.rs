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

use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};

/// The cache's connection and the list it holds, with the version that list reflects.
pub struct ListCache {
    slot: Mutex<Slot>,
}

struct Slot {
    conn: Connection,
    cached: Option<(i64, Bytes)>,
}

impl std::fmt::Debug for ListCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListCache").finish_non_exhaustive()
    }
}

impl ListCache {
    /// A read-only connection to the database file at `path` (which must exist).
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let cache = ListCache {
            slot: Mutex::new(Slot { conn, cached: None }),
        };
        cache.lookup()?; // fails now rather than on the first request if the file is unusable
        Ok(cache)
    }

    /// The database's version as this connection sees it (it changes after others' commits),
    /// and the list cached for that version if it is the one held: one lock, one pragma.
    pub fn lookup(&self) -> rusqlite::Result<(i64, Option<Bytes>)> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let version = slot
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get::<_, i64>(0))?;
        let body = match &slot.cached {
            Some((v, body)) if *v == version => Some(body.clone()),
            _ => None,
        };
        Ok((version, body))
    }

    /// Keeps `body`, read after `version` was, as the list of that version.
    pub fn put(&self, version: i64, body: Bytes) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.cached = Some((version, body));
    }
}

#[cfg(test)]
mod tests {
    use crate::inventory::{NuevoProducto, Pagina, Producto, Store};

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
            worker.update(1, &nuevo).await.unwrap();
            let after = cantidades(&service.list_json().await.unwrap());
            assert_eq!(
                after[0], round,
                "round {round}: the listing shows the other commit"
            );
            assert_eq!(before[1..], after[1..]);
        }
    }
}
