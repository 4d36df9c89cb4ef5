//! A private PostgreSQL server for one test: `initdb` in a temporary directory, started with
//! `pg_ctl` on a free loopback port and a unix socket in that directory, stopped and removed
//! when dropped. The machine's own server (port 5432) is never touched.
//!
//! Each test then creates its own database in it ([`PostgresServer::create_database`]).
//! The server trades durability for speed (`fsync` off): a test never survives a power cut.
//!
//! The binaries come from `$PG_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`
//! (Debian's place), else `PATH`. Without them a test skips with a message, unless `CI` is set:
//! then a missing PostgreSQL is a failure, not a silent skip. PostgreSQL refuses to run as
//! root; under root the server runs as the `postgres` system user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A running private PostgreSQL; see the module docs.
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The user the server runs as, when this process is root.
    user: Option<(u32, u32)>,
}

impl PostgresServer {
    /// Starts a server, or says why not and returns `None` when PostgreSQL is not installed
    /// (and `CI` is unset). Panics if it is installed but does not start.
    pub fn start_or_skip() -> Option<Self> {
        match find_bin() {
            Some(bin) => Some(Self::start_with(bin)),
            None if std::env::var_os("CI").is_some() => {
                panic!("PostgreSQL's initdb and pg_ctl were not found (install the postgresql package, or set PG_BIN)")
            }
            None => {
                eprintln!(
                    "SKIPPED: PostgreSQL's initdb and pg_ctl were not found (install the \
                     postgresql package, or set PG_BIN); this test needs them"
                );
                None
            }
        }
    }

    /// Starts a server; panics if PostgreSQL is missing or does not start.
    pub fn start() -> Self {
        Self::start_with(find_bin().expect("PostgreSQL's initdb and pg_ctl (set PG_BIN)"))
    }

    fn start_with(bin: PathBuf) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pg")
            .tempdir()
            .expect("temporary directory");
        let user = server_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the data dir");
        }
        let mut server = PostgresServer {
            dir,
            bin,
            port: 0,
            user,
        };
        let data = server.data();
        server.run_ok(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        // Another program may take the free port between the check and the bind: try again.
        for attempt in 1..=3 {
            server.port = crate::free_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -F",
                server.port,
                server.dir.path().display()
            );
            let log = server.dir.path().join("postgres.log");
            let started = server.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-w".as_ref(),
                    "-o".as_ref(),
                    options.as_ref(),
                    "start".as_ref(),
                ],
            );
            if started.status.success() {
                return server;
            }
            if attempt == 3 {
                panic!(
                    "PostgreSQL did not start: {}\n{}",
                    String::from_utf8_lossy(&started.stderr),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
        unreachable!()
    }

    /// The TCP port it listens on (loopback only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding its unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of database `name` over TCP, as the `postgres` superuser (no password).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a database with a name of its own and returns its URL.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "prueba_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let port = self.port.to_string();
        self.run_ok(
            "createdb",
            &[
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                name.as_ref(),
            ],
        );
        self.url(&name)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let mut command = Command::new(self.bin.join(program));
        command.args(args).current_dir(self.dir.path());
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        command
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    fn run_ok(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Immediate: the data is thrown away with the directory, nothing to flush.
        let data = self.data();
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
    }
}

/// The directory holding `initdb`, `pg_ctl` and `createdb`.
fn find_bin() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "createdb"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| has_all(d));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_all(bin))
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|d| has_all(d))
}

/// Under root, the uid and gid of the `postgres` user the server must run as.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam reads a NUL-terminated name; the record it returns is read at once,
    // before any other call could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root, and there is no postgres user to run PostgreSQL as"
    );
    // SAFETY: non-null, checked above.
    let pw = unsafe { &*pw };
    Some((pw.pw_uid, pw.pw_gid))
}

#[cfg(test)]
mod tests {
    use super::PostgresServer;

    #[test]
    fn starts_creates_databases_and_goes_away() {
        let Some(server) = PostgresServer::start_or_skip() else {
            return;
        };
        let socket = server
            .socket_dir()
            .join(format!(".s.PGSQL.{}", server.port()));
        assert!(socket.exists(), "unix socket at {}", socket.display());
        let a = server.create_database();
        let b = server.create_database();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("postgres://postgres@127.0.0.1:{}/", server.port())));
        let dir = server.socket_dir().to_owned();
        drop(server);
        assert!(!dir.exists(), "removed on drop");
    }
}
