//! The dashboard end to end, in a real browser: a private redis-server, a demo-worker process
//! and the monitor-service binary, with headless Chromium driven through chromedriver over
//! WebDriver (with `fantoccini`). The page must show INICIANDO, in a neutral colour, until the
//! worker (started after the monitor) answers, then OK, the worker's own answer to the control
//! ping, CAIDO within the 2 s ASR of a SIGKILL of the worker, and OK again after a restart; its
//! controls work; and the monitor stops promptly on SIGTERM with the page's stream open.
//!
//! A screenshot is saved to `<target>/artifacts/dashboard.png`, also when the test fails.
//! Needs `chromedriver` and `chromium` (see `dashboard_comun`). Without them the test fails when
//! `CI` is set, and is skipped with a message otherwise. `DASHBOARD_E2E_WARMUP_SECS` lets the
//! chart fill for that long before the kill (for a screenshot with more history).

mod dashboard_comun;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dashboard_comun::{artifact, tools, Browser, Outcome};
use serde_json::json;
use testkit::{free_port, workspace_binary, Process, RedisServer};

const SERVICE: &str = "InventarioService";
const WORKER: &str = "inventario@e2e";
/// The availability requirement: a failure is detected (and here, shown) within 2 s.
const ASR: Duration = Duration::from_secs(2);

fn worker(redis: &RedisServer) -> Process {
    Process::spawn(
        "demo-worker",
        Command::new(workspace_binary("demo-worker"))
            .env("REDIS_URL", redis.url())
            .env("WORKER_HOSTNAME", WORKER)
            .env("CONCURRENCY", "4")
            .env("LEASE_TTL_SECS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null()),
    )
}

/// The script that reads the target card's `data-estado`.
fn estado_script() -> String {
    format!(
        "const e = document.querySelector('[data-servicio=\"{SERVICE}\"]'); \
         return e ? e.dataset.estado : null;"
    )
}

/// Waits until the target's card shows `want`, within `limit`; returns when it was first seen.
async fn wait_for(session: &Browser, want: &str, limit: Duration) -> Outcome<Instant> {
    session
        .wait_for_value(
            &format!("the page shows {want}"),
            &estado_script(),
            &json!(want),
            limit,
        )
        .await
}

/// What the scenario measured.
struct Figures {
    caido_after_kill: Duration,
    ok_after_restart: Duration,
    shutdown: Duration,
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_e2e() {
    let Some((chromedriver, chromium)) = tools("dashboard_e2e") else {
        return;
    };

    // Built (if need be) before the clock starts: the worker, started after the monitor, must
    // start at once, not after a cargo build that outlasts the start-up grace.
    workspace_binary("demo-worker");
    let redis = RedisServer::start();
    // Started after the monitor, as `docker compose up` may: the page shows INICIANDO first.
    let mut worker = None;
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("monitor-service.log");
    let http_port = free_port();
    let mut monitor = Process::spawn(
        "monitor-service",
        Command::new(env!("CARGO_BIN_EXE_monitor-service"))
            .env("REDIS_URL", redis.url())
            .env("HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log_path).unwrap())
            .stderr(Stdio::null()),
    );
    let page = format!("http://127.0.0.1:{http_port}/");
    let session = Browser::start(&chromedriver, &chromium, 1280, 900)
        .await
        .expect("a browser session");

    let outcome = tokio::time::timeout(
        Duration::from_secs(180),
        scenario(&session, &page, &redis, &mut worker, &mut monitor),
    )
    .await
    .unwrap_or_else(|_| Err("the scenario took over 180 s".into()));

    // The screenshot, whatever happened (the scenario takes its own at the right moment when
    // it succeeds; on failure, this one shows where it stopped).
    let shot = artifact("dashboard.png");
    if outcome.is_err() {
        match session.screenshot(&shot).await {
            Ok(()) => eprintln!("screenshot of the failure: {}", shot.display()),
            Err(e) => eprintln!("no screenshot: {e}"),
        }
    }
    session.quit().await;
    match outcome {
        Ok(f) => println!(
            "SIGKILL -> page CAIDO: {:.3} s; restart -> page OK: {:.3} s; SIGTERM -> exit with \
             the page open: {:.3} s; screenshot: {}",
            f.caido_after_kill.as_secs_f64(),
            f.ok_after_restart.as_secs_f64(),
            f.shutdown.as_secs_f64(),
            shot.display()
        ),
        Err(error) => {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "{error}\n--- monitor-service log (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

async fn scenario(
    session: &Browser,
    page: &str,
    redis: &RedisServer,
    worker: &mut Option<Process>,
    monitor: &mut Process,
) -> Outcome<Figures> {
    // The monitor answers before the page is loaded.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{page}health")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err("monitor-service never answered /health".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    session.goto(page).await?;
    session
        .wait_until(
            "the page received its snapshot",
            "return document.body.dataset.listo === 'si';",
            Duration::from_secs(20),
        )
        .await?;
    // No worker yet: starting, in a neutral colour, not an outage in red.
    wait_for(session, "INICIANDO", Duration::from_secs(10)).await?;
    let colour = session
        .exec(&format!(
            "return getComputedStyle(document.querySelector(\
             '[data-servicio=\"{SERVICE}\"] [data-rol=\"estado\"]')).color;"
        ))
        .await?;
    if colour != "rgb(148, 163, 184)" {
        return Err(format!(
            "INICIANDO is shown in {colour}, not the neutral grey"
        ));
    }
    *worker = Some(self::worker(redis));
    wait_for(session, "OK", Duration::from_secs(30)).await?;
    session
        .wait_until(
            "the start is listed",
            "return !!document.querySelector('#cambios li[data-de=\"INICIANDO\"][data-a=\"OK\"]');",
            Duration::from_secs(5),
        )
        .await?;
    session
        .wait_until(
            "the worker is listed, alive",
            &format!(
                "return !!document.querySelector('#workers tr[data-worker=\"{WORKER}\"][data-vivo=\"si\"]');"
            ),
            Duration::from_secs(20),
        )
        .await?;
    // Its own answer to the control ping, with its latency, and that it consumes its queue.
    session
        .wait_until(
            "the worker's row shows its answer to the control ping",
            &format!(
                "const r = document.querySelector('#workers tr[data-worker=\"{WORKER}\"]'); \
                 return !!r && r.dataset.control === 'si' && r.dataset.consume === 'si' \
                 && /pong · [0-9.]+\\u00a0ms/.test(r.textContent);"
            ),
            Duration::from_secs(20),
        )
        .await?;
    // Only for the picture: more history on the chart when asked for.
    if let Some(secs) = std::env::var("DASHBOARD_E2E_WARMUP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    session
        .wait_until(
            "the chart draws the pings",
            "return Number(document.getElementById('grafico').dataset.puntos) >= 5;",
            Duration::from_secs(10),
        )
        .await?;

    // SIGKILL: no goodbye, no worker-offline. The page must say CAIDO within the ASR.
    let killed = Instant::now();
    if let Some(mut w) = worker.take() {
        w.sigkill();
    }
    let seen = wait_for(session, "CAIDO", Duration::from_secs(10)).await?;
    let caido_after_kill = seen - killed;
    println!(
        "page showed CAIDO {:.3} s after the SIGKILL",
        caido_after_kill.as_secs_f64()
    );
    if caido_after_kill > ASR {
        return Err(format!(
            "CAIDO shown {caido_after_kill:?} after the kill, over the {ASR:?} ASR"
        ));
    }
    session
        .wait_until(
            "the change is listed",
            "return !!document.querySelector('#cambios li[data-a=\"CAIDO\"]');",
            Duration::from_secs(5),
        )
        .await?;
    // Only for the picture: let the outage show on the chart for a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let restarted = Instant::now();
    *worker = Some(self::worker(redis));
    let back = wait_for(session, "OK", Duration::from_secs(30)).await?;
    let ok_after_restart = back - restarted;
    println!(
        "page showed OK {:.3} s after the restart",
        ok_after_restart.as_secs_f64()
    );
    session
        .wait_until(
            "the recovery is listed",
            "return !!document.querySelector('#cambios li[data-de=\"CAIDO\"][data-a=\"OK\"]');",
            Duration::from_secs(5),
        )
        .await?;

    // The controls: pause and resume the chart, change the window.
    session.click("#pausa").await?;
    let paused = session
        .exec("const b = document.getElementById('pausa'); return [b.textContent, b.getAttribute('aria-pressed')];")
        .await?;
    if paused != json!(["Reanudar", "true"]) {
        return Err(format!("after Pausar the button says {paused}"));
    }
    session.click("#pausa").await?;
    let resumed = session
        .exec("return document.getElementById('pausa').textContent;")
        .await?;
    if resumed != "Pausar" {
        return Err(format!("after Reanudar the button says {resumed}"));
    }
    for (button, seconds) in [("600", 600), ("3600", 3600), ("60", 60)] {
        session
            .click(&format!("[data-ventana=\"{button}\"]"))
            .await?;
        session
            .wait_until(
                &format!("the chart shows the {seconds} s window"),
                &format!(
                    "return document.getElementById('grafico').dataset.ventana === '{seconds}' \
                     && document.querySelector('[data-ventana=\"{button}\"]').getAttribute('aria-pressed') === 'true';"
                ),
                Duration::from_secs(5),
            )
            .await?;
    }
    // The recovered worker's heartbeats are listed again.
    session
        .wait_until(
            "the restarted worker is listed, alive",
            &format!(
                "return !!document.querySelector('#workers tr[data-worker=\"{WORKER}\"][data-vivo=\"si\"]');"
            ),
            Duration::from_secs(20),
        )
        .await?;
    // The picture, of the whole page, after a little OK history following the recovery.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let size = session
        .exec("return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight];")
        .await?;
    let height = size[0].as_u64().unwrap_or(900) + size[1].as_u64().unwrap_or(0);
    session.resize(1280, height.clamp(900, 2000) as u32).await?;
    session
        .wait_until(
            "the chart is redrawn at the new size",
            "const c = document.getElementById('grafico'); \
             return c.width === Math.round(c.getBoundingClientRect().width * (window.devicePixelRatio || 1));",
            Duration::from_secs(5),
        )
        .await?;
    session.screenshot(&artifact("dashboard.png")).await?;

    // SIGTERM with the page's stream open: the monitor must exit promptly, and the page must
    // notice the stream ended.
    let asked = Instant::now();
    monitor.signal(libc::SIGTERM);
    let status = monitor
        .wait_exit(Duration::from_secs(10))
        .await
        .ok_or("monitor-service did not exit within 10 s of SIGTERM with a page open")?;
    let shutdown = asked.elapsed();
    if !status.success() {
        return Err(format!("monitor-service exited with {status}"));
    }
    session
        .wait_until(
            "the page shows it lost the stream",
            "return document.getElementById('conexion').dataset.conectado === 'no';",
            Duration::from_secs(10),
        )
        .await?;
    Ok(Figures {
        caido_after_kill,
        ok_after_restart,
        shutdown,
    })
}
