//! What the dashboard's browser tests share: finding chromium and chromedriver (skipping the
//! test with a message when they are missing, failing when `CI` is set), a WebDriver session
//! through `fantoccini` on a chromedriver of the test's own, and where screenshots go.
//!
//! Needs `chromedriver` and `chromium` (Debian: `apt-get install chromium chromium-driver`;
//! `CHROMEDRIVER` and `CHROMIUM` override the paths).

#![allow(dead_code)] // each test file uses its own part

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use testkit::{eventually, free_port, Process};

pub type Outcome<T> = Result<T, String>;

/// How often the page is looked at while waiting for something on it.
pub const STEP: Duration = Duration::from_millis(25);

/// chromedriver and chromium, or `None` (after saying why) when the test is to be skipped.
/// Panics instead when `CI` is set: there a missing browser is a broken machine.
pub fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    match (find(&chromedriver), find(&chromium)) {
        (Some(d), Some(c)) => Some((d, c)),
        _ => {
            let message = format!(
                "{test} needs {chromedriver} and {chromium} \
                 (Debian: apt-get install chromium chromium-driver)"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{message}");
            }
            eprintln!("SKIPPED: {message}; set CI=1 to make this a failure");
            None
        }
    }
}

/// The path of `name` if it is an executable on PATH (or the given absolute path exists).
fn find(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.exists().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// `<target>/artifacts/<name>`: under CARGO_TARGET_DIR, or the target directory this test
/// executable was built in (`<target>/<profile>/deps/<exe>`).
pub fn artifact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("test executable");
            exe.ancestors()
                .nth(3)
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("target"))
        });
    target.join("artifacts").join(name)
}

/// A headless Chromium on a chromedriver of its own (in a process group of its own, so the
/// browsers it starts go with it).
pub struct Browser {
    pub client: Client,
    _driver: Process,
}

impl Browser {
    pub async fn start(
        chromedriver: &Path,
        chromium: &Path,
        width: u32,
        height: u32,
    ) -> Outcome<Self> {
        let port = free_port();
        let driver = Process::spawn_group(
            "chromedriver",
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen: a refused connection is retried.
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(format!("no WebDriver session on {url}: {e}")),
            }
        };
        Ok(Browser {
            client,
            _driver: driver,
        })
    }

    pub async fn goto(&self, url: &str) -> Outcome<()> {
        self.client
            .goto(url)
            .await
            .map_err(|e| format!("goto {url}: {e}"))
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn exec(&self, script: &str) -> Outcome<Value> {
        self.client
            .execute(script, vec![])
            .await
            .map_err(|e| format!("script failed ({e}): {script}"))
    }

    /// A real click (WebDriver's, not a script's) on the element `css` selects.
    pub async fn click(&self, css: &str) -> Outcome<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .map_err(|e| format!("no element {css}: {e}"))?
            .click()
            .await
            .map_err(|e| format!("click on {css}: {e}"))
    }

    /// Types `text` into the field `css` selects, as a user would.
    pub async fn type_into(&self, css: &str, text: &str) -> Outcome<()> {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .map_err(|e| format!("no element {css}: {e}"))?;
        field.clear().await.map_err(|e| e.to_string())?;
        field.send_keys(text).await.map_err(|e| e.to_string())
    }

    /// The text the element `css` selects shows (`null` when there is none).
    pub async fn text(&self, css: &str) -> Outcome<Value> {
        self.exec(&format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            json!(css)
        ))
        .await
    }

    pub async fn resize(&self, width: u32, height: u32) -> Outcome<()> {
        self.client
            .set_window_size(width, height)
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn screenshot(&self, path: &Path) -> Outcome<()> {
        let png = self.client.screenshot().await.map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| e.to_string())
    }

    /// Resizes the window to show the whole page at `width`, then takes the screenshot.
    pub async fn full_screenshot(&self, width: u32, path: &Path) -> Outcome<()> {
        let size = self
            .exec("return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight];")
            .await?;
        let height = size[0].as_u64().unwrap_or(900) + size[1].as_u64().unwrap_or(0);
        self.resize(width, height.clamp(600, 4000) as u32).await?;
        self.screenshot(path).await
    }

    pub async fn quit(self) {
        let _ = self.client.close().await;
    }

    /// Waits until `script` returns `true`, within `limit`; returns when it first did.
    pub async fn wait_until(&self, what: &str, script: &str, limit: Duration) -> Outcome<Instant> {
        let failure = RefCell::new(None);
        let held = eventually(limit, STEP, || async {
            match self.exec(script).await {
                Ok(v) => v == Value::Bool(true),
                Err(e) => {
                    *failure.borrow_mut() = Some(e);
                    false
                }
            }
        })
        .await;
        if held {
            return Ok(Instant::now());
        }
        match failure.into_inner() {
            Some(e) => Err(format!("{what}: not within {limit:?} (last error: {e})")),
            None => Err(format!("{what}: not within {limit:?}")),
        }
    }

    /// Waits until `script`'s value equals `want`, within `limit`; the error says what it was.
    pub async fn wait_for_value(
        &self,
        what: &str,
        script: &str,
        want: &Value,
        limit: Duration,
    ) -> Outcome<Instant> {
        let last = RefCell::new(Value::Null);
        let held = eventually(limit, STEP, || async {
            let v = self.exec(script).await.unwrap_or(Value::Null);
            let same = &v == want;
            *last.borrow_mut() = v;
            same
        })
        .await;
        if held {
            Ok(Instant::now())
        } else {
            Err(format!(
                "{what}: not {want} within {limit:?} (it is {})",
                last.into_inner()
            ))
        }
    }
}
