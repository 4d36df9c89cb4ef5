//! Programs as child processes in tests: one guard type, [`Process`], that kills and reaps its
//! child when dropped (so a failing test leaves nothing running), sends signals one way
//! (`kill(2)` on a child not yet reaped, so the pid cannot belong to anyone else), and keeps
//! what the program logged in a file the test can read.
//!
//! [`workspace_binary`] finds (building it if needed) a binary of this workspace, for tests
//! of one crate that run another crate's program.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::wait::eventually;

/// A child process owned by a test.
pub struct Process {
    name: String,
    child: Child,
    log: Option<PathBuf>,
    exited: Option<ExitStatus>,
    /// Leads a process group of its own: signals and the final SIGKILL go to the whole group
    /// (the browsers a WebDriver starts, a Python worker's pool children).
    group: bool,
}

impl Process {
    /// Starts `cmd` with stdin closed and stdout and stderr written to the file `log`.
    pub fn start(name: &str, cmd: &mut Command, log: &Path) -> Self {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("log file {}: {e}", log.display()));
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        let mut process = Self::spawn(name, cmd);
        process.log = Some(log.to_owned());
        process
    }

    /// Starts `binary`, a program of this workspace, with only the environment `env` (nothing
    /// leaks in from the shell that runs the tests), its output in the file `log`.
    pub fn program(binary: &str, env: &[(&str, String)], log: &Path) -> Self {
        let mut cmd = Command::new(workspace_binary(binary));
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        Self::start(binary, &mut cmd, log)
    }

    /// Starts `cmd` with the standard streams the caller set on it.
    pub fn spawn(name: &str, cmd: &mut Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({:?}): {e}", cmd.get_program()));
        Process {
            name: name.to_owned(),
            child,
            log: None,
            exited: None,
            group: false,
        }
    }

    /// Starts `cmd` (standard streams as the caller set them) as the leader of a new process
    /// group, so that whatever it starts is signalled and killed with it.
    pub fn spawn_group(name: &str, cmd: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let mut process = Self::spawn(name, cmd);
        process.group = true;
        process
    }

    /// The name it was started under (a program's or a worker's node name).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`libc::SIGTERM`, `libc::SIGSTOP`, ...) to it, or to its whole group when
    /// started with [`Process::spawn_group`]. Panics if the process has already exited: its
    /// pid may then be someone else's.
    pub fn signal(&mut self, signal: libc::c_int) {
        self.assert_alive();
        let rc = self.kill(signal);
        assert_eq!(rc, 0, "kill({}, {signal})", self.name);
    }

    /// kill(2) on the child (or its group); the return code.
    fn kill(&self, signal: libc::c_int) -> libc::c_int {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        let target = if self.group { -pid } else { pid };
        // SAFETY: kill(2) takes no memory. Callers check that the child has not been reaped,
        // so its pid (and the group it leads) names no other process.
        unsafe { libc::kill(target, signal) }
    }

    /// SIGKILL, then reaped; returns the instant it was gone.
    pub fn sigkill(&mut self) -> Instant {
        self.assert_alive();
        self.stop();
        Instant::now()
    }

    /// SIGKILL to whatever is left of it (its group too), then reaped.
    fn stop(&mut self) {
        if self.exited.is_none() {
            if self.group {
                // The leader is not reaped yet, so the group id is still ours.
                self.kill(libc::SIGKILL);
            }
            // SIGKILL ends a stopped (SIGSTOP) process too.
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Whether it is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Panics, with the end of its log, if it has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.try_exit() {
            panic!(
                "{} exited by itself ({status}); its log ends with:\n{}",
                self.name,
                self.log_tail(20)
            );
        }
    }

    /// Waits up to `limit` for it to exit; `None` if it is still running then.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        eventually(limit, Duration::from_millis(20), || {
            std::future::ready(self.try_exit().is_some())
        })
        .await;
        self.exited
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// The file its output goes to, when started with [`Process::start`].
    pub fn log_path(&self) -> &Path {
        self.log
            .as_deref()
            .unwrap_or_else(|| panic!("{} was started without a log file", self.name))
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `n` lines of its log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let Some(path) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Its log lines that are JSON objects (with `LOG_FORMAT=json`; a panic message, written by
    /// the runtime, is not one).
    pub fn json_log(&self) -> Vec<Value> {
        json_log(self.log_path())
    }

    /// Resident memory (VmRSS), KiB; 0 once it is gone.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The JSON lines of a log file.
pub fn json_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// The path of a binary of this workspace (`inventario-worker`, `demo-worker`, ...), for tests
/// of one crate that need another crate's program as a real process. `cargo test --workspace`
/// has built it already; otherwise it is built here with the same cargo and profile, once per
/// test process.
pub fn workspace_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(name.to_owned())
        .or_insert_with(|| build(name))
        .clone()
}

fn build(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries in target/<profile>.
    let exe = std::env::current_exe().expect("current executable");
    let mut profile_dir = exe.parent().expect("the executable's folder").to_path_buf();
    if profile_dir.file_name().is_some_and(|d| d == "deps") {
        profile_dir.pop();
    }
    let path = profile_dir.join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--workspace", "--bin", name]);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    // Always ask cargo: it rebuilds only when the sources changed, so a stale binary is never used.
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build --bin {name} failed");
    assert!(path.exists(), "{} was not built", path.display());
    path
}
