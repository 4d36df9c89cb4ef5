//! The dashboard's queue views and its two lookup pages, in a real browser, against the real
//! monitor-service binary, a private redis-server and real demo-worker processes:
//!
//! - with no worker, the "no worker connected" banner shows (not in CAIDO's red), and the depth
//!   the page shows for a queue is what the test put on it; a worker that starts takes the
//!   banner away and gets its own row with its hostname and queue;
//! - `/tarea` shows a succeeded task's result and a failed task's error, with the id in the
//!   address or typed in the form, and says so when nothing is known of an id; a running
//!   task's Revocar is answered "needs MONITOR_TOKEN" without a token, and with it Terminar
//!   stops the task, shown REVOKED without the buttons;
//! - `/cuarentena` lists the entries the test put there; requeue answers the 403
//!   `reencolado_deshabilitado` as "needs MONITOR_TOKEN" on a monitor without a token, and
//!   works on one with it (the task then runs);
//! - hostile text in a task's error, arguments and name (`<img src=x onerror=...>`) is shown as
//!   text: no element is made of it and its script never runs;
//! - the page is usable at 400 px wide.
//!
//! Screenshots go to `<target>/artifacts/` (dashboard_colas*.png, tarea_*.png,
//! cuarentena_*.png), also when the test fails; `DASHBOARD_E2E_WARMUP_SECS` lets the charts
//! fill for that long before the picture of the filled queue. Skipped with a message without chromium and
//! chromedriver, unless `CI` is set (see `dashboard_comun`).

mod dashboard_comun;

use std::process::{Command, Stdio};
use std::time::Duration;

use dashboard_comun::{artifact, tools, Browser, Outcome};
use serde_json::{json, Map, Value};
use shared::{Client, Redis, SendOptions};
use testkit::queue::{cmd, stored};
use testkit::{free_port, wait_for_status, workspace_binary, Process, RedisServer};

/// The queue the test fills; the monitor samples it (MONITOR_QUEUES), the first worker does
/// not consume it, so what the test puts there stays until the second worker starts.
const LOTE: &str = "lote";
/// How many messages the test puts on it.
const FILLED: usize = 37;
const PINGS_WORKER: &str = "pings@e2e";
const LOTE_WORKER: &str = "lote@e2e";
const TOKEN: &str = "token-de-prueba-del-panel";
/// Hostile text: were it taken as HTML, it would make an <img> whose error handler sets a
/// global the test reads.
const HOSTILE: &str =
    "<img src=x onerror=\"window.__atacado=1\"><script>window.__atacado=2</script>";
const WAIT: Duration = Duration::from_secs(20);

fn worker(redis: &RedisServer, hostname: &str, queues: &str) -> Process {
    Process::spawn(
        hostname,
        Command::new(workspace_binary("demo-worker"))
            .env("REDIS_URL", redis.url())
            .env("WORKER_HOSTNAME", hostname)
            .env("QUEUE", queues)
            .env("CONCURRENCY", "2")
            .env("TASK_EVENTS", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null()),
    )
}

fn monitor(redis: &RedisServer, port: u16, token: Option<&str>, log: &std::path::Path) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_monitor-service"));
    command
        .env("REDIS_URL", redis.url())
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("MONITOR_QUEUES", LOTE)
        .env("RUST_LOG", "info")
        .env_remove("MONITOR_TOKEN")
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null());
    if let Some(token) = token {
        command.env("MONITOR_TOKEN", token);
    }
    Process::spawn("monitor-service", &mut command)
}

#[tokio::test(flavor = "multi_thread")]
async fn queues_tasks_and_quarantine_in_the_browser() {
    let Some((chromedriver, chromium)) = tools("queues_tasks_and_quarantine_in_the_browser") else {
        return;
    };
    // Built (if need be) before the monitors start, so the workers start at once when asked.
    workspace_binary("demo-worker");
    let redis = RedisServer::start();
    let logs = tempfile::tempdir().unwrap();
    let open_port = free_port();
    let guarded_port = free_port();
    let open_log = logs.path().join("monitor-abierto.log");
    let guarded_log = logs.path().join("monitor-con-token.log");
    let _open = monitor(&redis, open_port, None, &open_log);
    let _guarded = monitor(&redis, guarded_port, Some(TOKEN), &guarded_log);
    let session = Browser::start(&chromedriver, &chromium, 1280, 900)
        .await
        .expect("a browser session");
    let mut workers = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(240),
        scenario(&session, &redis, open_port, guarded_port, &mut workers),
    )
    .await
    .unwrap_or_else(|_| Err("the scenario took over 240 s".into()));
    if outcome.is_err() {
        let shot = artifact("dashboard_colas_fallo.png");
        match session.screenshot(&shot).await {
            Ok(()) => eprintln!("screenshot of the failure: {}", shot.display()),
            Err(e) => eprintln!("no screenshot: {e}"),
        }
    }
    session.quit().await;
    if let Err(error) = outcome {
        let tail = |path: &std::path::Path| {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().rev().take(20).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        panic!(
            "{error}\n--- monitor without token (last lines) ---\n{}\n--- monitor with token ---\n{}",
            tail(&open_log),
            tail(&guarded_log)
        );
    }
}

async fn scenario(
    session: &Browser,
    server: &RedisServer,
    open_port: u16,
    guarded_port: u16,
    workers: &mut Vec<Process>,
) -> Outcome<()> {
    let open = format!("http://127.0.0.1:{open_port}");
    let guarded = format!("http://127.0.0.1:{guarded_port}");
    let http = reqwest::Client::new();
    for base in [&open, &guarded] {
        if !wait_for_status(
            &http,
            &format!("{base}/health"),
            200,
            Duration::from_secs(30),
        )
        .await
        {
            return Err(format!("{base}/health never answered"));
        }
    }
    let redis = Redis::from_url(&server.url()).map_err(|e| e.to_string())?;
    let client = Client::new(redis.clone(), "inventario");

    // ---- No worker: the banner, and the depth the test put on the queue -------------------
    session.goto(&format!("{open}/")).await?;
    session
        .wait_until(
            "the page loaded /monitor/colas",
            "return document.getElementById('seccion-colas').dataset.cargada === 'si';",
            WAIT,
        )
        .await?;
    session
        .wait_until(
            "the 'no worker connected' banner shows",
            "const b = document.getElementById('sin-workers'); \
             return !b.hidden && getComputedStyle(b).display !== 'none' \
             && b.textContent.includes('Ningún worker conectado');",
            WAIT,
        )
        .await?;
    let banner = session
        .exec("return getComputedStyle(document.getElementById('sin-workers')).borderLeftColor;")
        .await?;
    if banner == "rgb(239, 68, 68)" {
        return Err("the banner is drawn in CAIDO's red".into());
    }
    client
        .send_many(
            "add",
            (0..FILLED).map(|i| vec![json!(i), json!(1)]),
            SendOptions::queue(LOTE),
        )
        .await
        .map_err(|e| e.to_string())?;
    session
        .wait_for_value(
            "the depth shown for the queue",
            &format!(
                "const r = document.querySelector('#colas tr[data-cola=\"{LOTE}\"]'); \
                 return r ? r.dataset.pendientes : null;"
            ),
            &json!(FILLED.to_string()),
            WAIT,
        )
        .await?;
    let row = session
        .text(&format!("#colas tr[data-cola=\"{LOTE}\"]"))
        .await?;
    if !row
        .as_str()
        .unwrap_or_default()
        .contains(&format!("{FILLED}\u{a0}mensajes"))
    {
        return Err(format!("the queue's row says {row}, without its unit"));
    }
    session
        .wait_until(
            "the oldest message's age is shown in seconds",
            "const d = document.getElementById('cifra-antiguedad'); \
             return Number(d.dataset.valor) > 0 && /\\u00a0(s|min)/.test(d.textContent);",
            WAIT,
        )
        .await?;
    session
        .wait_until(
            "the depth chart draws samples",
            "return Number(document.getElementById('grafico-colas').dataset.puntos) > 0;",
            WAIT,
        )
        .await?;
    session
        .full_screenshot(1280, &artifact("dashboard_colas_sin_workers.png"))
        .await?;

    // ---- A worker (pings only): the banner goes, its row shows its hostname and queue -----
    workers.push(worker(server, PINGS_WORKER, "inventario"));
    session
        .wait_until(
            "the banner goes when a worker connects",
            "return document.getElementById('sin-workers').hidden \
             && document.body.dataset.sinWorkers === 'no';",
            Duration::from_secs(30),
        )
        .await?;
    session
        .wait_until(
            "the worker's row shows its hostname, queue and concurrency",
            &format!(
                "const r = document.querySelector('#workers tr[data-worker=\"{PINGS_WORKER}\"]'); \
                 return !!r && r.dataset.vivo === 'si' \
                 && r.querySelector('.host').textContent.includes('{PINGS_WORKER}') \
                 && r.querySelector('[data-rol=\"colas\"]').textContent.includes('inventario') \
                 && /2\\u00a0procesos/.test(r.querySelector('[data-rol=\"concurrencia\"]').textContent) \
                 && /hace /.test(r.querySelector('.hace').textContent);"
            ),
            Duration::from_secs(30),
        )
        .await?;
    session
        .wait_until(
            "the target is OK",
            "const e = document.querySelector('[data-servicio=\"InventarioService\"]'); \
             return !!e && e.dataset.estado === 'OK';",
            Duration::from_secs(45),
        )
        .await?;
    // What was put on the queue still waits there: the picture for the docs.
    session
        .wait_for_value(
            "the depth still shown",
            &format!(
                "const r = document.querySelector('#colas tr[data-cola=\"{LOTE}\"]'); \
                 return r ? r.dataset.pendientes : null;"
            ),
            &json!(FILLED.to_string()),
            WAIT,
        )
        .await?;
    session
        .wait_until(
            "the latency chart draws the pings",
            "return Number(document.getElementById('grafico').dataset.puntos) >= 5;",
            WAIT,
        )
        .await?;
    // Only for the picture: more history on the charts when asked for.
    if let Some(secs) = std::env::var("DASHBOARD_E2E_WARMUP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    session
        .full_screenshot(1280, &artifact("dashboard_colas.png"))
        .await?;
    // At 400 px: nothing wider than the window (wide tables scroll inside their card).
    session.resize(400, 900).await?;
    session
        .wait_until(
            "the page fits 400 px",
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            Duration::from_secs(5),
        )
        .await?;
    session
        .full_screenshot(400, &artifact("dashboard_colas_400px.png"))
        .await?;
    session.resize(1280, 900).await?;

    // ---- A worker for the filled queue: it drains ------------------------------------------
    workers.push(worker(server, LOTE_WORKER, LOTE));
    session
        .wait_for_value(
            "the queue drains",
            &format!(
                "const r = document.querySelector('#colas tr[data-cola=\"{LOTE}\"]'); \
                 return r ? r.dataset.pendientes : null;"
            ),
            &json!("0"),
            Duration::from_secs(30),
        )
        .await?;
    session
        .wait_until(
            "the second worker's row shows its queue",
            &format!(
                "const r = document.querySelector('#workers tr[data-worker=\"{LOTE_WORKER}\"]'); \
                 return !!r && r.querySelector('[data-rol=\"colas\"]').textContent.includes('{LOTE}');"
            ),
            Duration::from_secs(30),
        )
        .await?;

    // ---- /tarea: a success, a failure (hostile), an unknown id -----------------------------
    let ok = send_and_wait(&client, &redis, "add", vec![json!(20), json!(22)]).await?;
    session.goto(&format!("{open}/tarea?id={ok}")).await?;
    session
        .wait_until(
            "the task page shows the success and its result",
            "const e = document.getElementById('estado-tarea'); \
             const r = document.querySelector('[data-campo=\"resultado\"]'); \
             return e.dataset.estado === 'SUCCESS' && !!r && r.textContent.trim() === '42';",
            WAIT,
        )
        .await?;
    let nombre = session.text("[data-campo=\"nombre\"]").await?;
    if nombre != "add" {
        return Err(format!("the task's name is shown as {nombre}"));
    }
    session
        .full_screenshot(1280, &artifact("tarea_ok.png"))
        .await?;

    let failed = send_and_wait(&client, &redis, "fail", vec![json!(HOSTILE)]).await?;
    // Typed into the form, as a user would: the address then names the task.
    session.type_into("#id-tarea", &failed).await?;
    session.click("#buscar button[type=submit]").await?;
    session
        .wait_until(
            "the task page shows the failure and its error, as text",
            &format!(
                "const e = document.getElementById('estado-tarea'); \
                 const r = document.querySelector('[data-campo=\"error\"]'); \
                 return e.dataset.estado === 'FAILURE' && !!r \
                 && r.textContent.includes('ValueError') && r.textContent.includes({}) \
                 && document.getElementById('tarea').dataset.id === {};",
                json!("<img src=x onerror="),
                json!(failed)
            ),
            WAIT,
        )
        .await?;
    let address = session
        .exec("return location.pathname + location.search;")
        .await?;
    if address != json!(format!("/tarea?id={failed}")) {
        return Err(format!("after a search the address is {address}"));
    }
    no_element_from_hostile_text(session, "the task page").await?;
    session
        .full_screenshot(1280, &artifact("tarea_error.png"))
        .await?;

    let unknown = "00000000-0000-4000-8000-000000000000";
    session.goto(&format!("{open}/tarea#{unknown}")).await?;
    session
        .wait_until(
            "an unknown id is said to be unknown",
            "const m = document.getElementById('mensaje-tarea'); \
             return !m.hidden && m.dataset.codigo === 'tarea_desconocida' \
             && document.getElementById('tarea').hidden;",
            WAIT,
        )
        .await?;

    // ---- /cuarentena: entries the test put there, requeue without and with the token -------
    let requeued =
        quarantine_real_message(&client, &redis, "add", vec![json!(1), json!(2)], |e| e).await?;
    // Hostile everywhere: the reason, the consumer, the task's name in the message, its args.
    let hostile =
        quarantine_real_message(&client, &redis, "noop", vec![json!(HOSTILE)], |mut e| {
            e["reason"] = json!(format!("motivo {HOSTILE}"));
            e["consumer"] = json!(HOSTILE);
            let mut message: Value =
                serde_json::from_str(e["message"].as_str().unwrap_or("{}")).unwrap_or_default();
            message["headers"]["task"] = json!(HOSTILE);
            e["message"] = json!(message.to_string());
            e
        })
        .await?;
    session.goto(&format!("{open}/cuarentena")).await?;
    session
        .wait_until(
            "the quarantine page lists both entries",
            &format!(
                "return document.body.dataset.listo === 'si' \
                 && !!document.querySelector('li[data-tarea-id=\"{requeued}\"]') \
                 && !!document.querySelector('li[data-tarea-id=\"{hostile}\"]');"
            ),
            WAIT,
        )
        .await?;
    let shown = session
        .exec(&format!(
            "const li = document.querySelector('li[data-tarea-id=\"{hostile}\"]'); \
             const raw = li.querySelector('[data-rol=\"mensaje\"]'); \
             return [li.querySelector('.motivo-entrada').textContent, \
                     li.querySelector('[data-campo=\"consumidor\"]').textContent, \
                     li.querySelector('[data-campo=\"tarea\"]').textContent, \
                     li.querySelector('[data-campo=\"lista\"]').textContent, \
                     raw.tagName, raw.open, raw.textContent.includes('\"task\"')];"
        ))
        .await?;
    let want = json!([
        format!("motivo {HOSTILE}"),
        HOSTILE,
        HOSTILE,
        LOTE,
        "DETAILS",
        false,
        true
    ]);
    if shown != want {
        return Err(format!(
            "the hostile entry is shown as {shown}, not as text {want}"
        ));
    }
    no_element_from_hostile_text(session, "the quarantine page").await?;
    let answer = format!(
        "const r = document.querySelector('li[data-tarea-id=\"{requeued}\"] [data-rol=\"respuesta\"]'); \
         return r && !r.hidden ? [r.dataset.codigo, r.textContent] : null;"
    );
    session
        .click(&format!(
            "li[data-tarea-id=\"{requeued}\"] [data-rol=\"reencolar\"]"
        ))
        .await?;
    session
        .wait_until(
            "without MONITOR_TOKEN, requeue is refused and the page says it needs the token",
            &format!(
                "const a = (() => {{ {answer} }})(); \
                 return !!a && a[0] === 'reencolado_deshabilitado' && a[1].includes('MONITOR_TOKEN');"
            ),
            WAIT,
        )
        .await?;
    session
        .full_screenshot(1280, &artifact("cuarentena_sin_token.png"))
        .await?;

    // With the token (the cookie `/?token=` leaves), on the other monitor.
    session.goto(&format!("{guarded}/?token={TOKEN}")).await?;
    session.goto(&format!("{guarded}/cuarentena")).await?;
    session
        .wait_until(
            "the quarantine page lists the entry, with the token",
            &format!("return !!document.querySelector('li[data-tarea-id=\"{requeued}\"]');"),
            WAIT,
        )
        .await?;
    session
        .click(&format!(
            "li[data-tarea-id=\"{requeued}\"] [data-rol=\"reencolar\"]"
        ))
        .await?;
    session
        .wait_until(
            "with MONITOR_TOKEN, the entry is requeued and the page says where",
            &format!(
                "const a = (() => {{ {answer} }})(); \
                 return !!a && a[0] === 'reencolada' && a[1].includes('{LOTE}') \
                 && document.querySelector('li[data-tarea-id=\"{requeued}\"]').dataset.reencolada === 'si';"
            ),
            WAIT,
        )
        .await?;
    session
        .full_screenshot(1280, &artifact("cuarentena_reencolada.png"))
        .await?;
    // Requeued for real: the worker of its list runs it.
    let ran = testkit::eventually(WAIT, Duration::from_millis(50), || async {
        stored(&redis, std::slice::from_ref(&requeued)).await[0]
            .status
            .is_ready()
    })
    .await;
    if !ran {
        return Err("the requeued task never ran".into());
    }
    let meta = &stored(&redis, std::slice::from_ref(&requeued)).await[0];
    if meta.result != json!(3) {
        return Err(format!("the requeued add(1, 2) gave {}", meta.result));
    }
    // Listed again, it is gone from the quarantine.
    session.click("#actualizar").await?;
    session
        .wait_until(
            "after requeue and refresh the entry is gone, the hostile one stays",
            &format!(
                "return document.body.dataset.listo === 'si' \
                 && !document.querySelector('li[data-tarea-id=\"{requeued}\"]') \
                 && !!document.querySelector('li[data-tarea-id=\"{hostile}\"]');"
            ),
            WAIT,
        )
        .await?;

    // ---- /tarea: revoking a running task ----------------------------------------------------
    let running = client
        .send_task(
            "sleep",
            vec![json!(120_000)],
            Map::new(),
            SendOptions::queue(LOTE),
        )
        .await
        .map_err(|e| e.to_string())?;
    let buttons = "const e = document.getElementById('estado-tarea'); \
                   const r = document.querySelector('[data-rol=\"revocar\"]'); \
                   const t = document.querySelector('[data-rol=\"terminar\"]'); \
                   return [e.dataset.estado, r.offsetParent !== null, t.offsetParent !== null];";
    let revoke_answer = "const r = document.getElementById('respuesta-revocar'); \
                         return r.hidden ? null : [r.dataset.codigo, r.textContent];";
    // Without the token, the page offers it and says it needs MONITOR_TOKEN.
    session.goto(&format!("{open}/tarea?id={running}")).await?;
    session
        .wait_for_value(
            "a running task offers Revocar and Terminar",
            buttons,
            &json!(["STARTED", true, true]),
            WAIT,
        )
        .await?;
    session.click("[data-rol=\"revocar\"]").await?;
    session
        .wait_until(
            "without MONITOR_TOKEN, revoking is refused and the page says it needs the token",
            &format!(
                "const a = (() => {{ {revoke_answer} }})(); \
                 return !!a && a[0] === 'revocacion_deshabilitada' && a[1].includes('MONITOR_TOKEN');"
            ),
            WAIT,
        )
        .await?;
    // With it, Terminar stops the task: REVOKED, and the buttons go.
    session
        .goto(&format!("{guarded}/tarea?id={running}"))
        .await?;
    session
        .wait_for_value(
            "with the token, the running task offers Terminar",
            buttons,
            &json!(["STARTED", true, true]),
            WAIT,
        )
        .await?;
    session.click("[data-rol=\"terminar\"]").await?;
    session
        .wait_until(
            "Terminar answers and the task shows REVOKED without buttons",
            &format!(
                "const a = (() => {{ {revoke_answer} }})(); \
                 const b = (() => {{ {buttons} }})(); \
                 return !!a && a[0] === 'revocada' && b[0] === 'REVOKED' && !b[1] && !b[2];"
            ),
            WAIT,
        )
        .await?;
    session
        .full_screenshot(1280, &artifact("tarea_revocada.png"))
        .await?;
    let meta = &stored(&redis, std::slice::from_ref(&running)).await[0];
    if meta.status != shared::protocol::TaskState::Revoked {
        return Err(format!("the terminated task is stored as {meta:?}"));
    }
    Ok(())
}

/// Sends a task to the drained queue and waits for its result; its id.
async fn send_and_wait(
    client: &Client,
    redis: &Redis,
    name: &str,
    args: Vec<Value>,
) -> Outcome<String> {
    let id = client
        .send_task(name, args, Map::new(), SendOptions::queue(LOTE))
        .await
        .map_err(|e| e.to_string())?;
    let done = testkit::eventually(WAIT, Duration::from_millis(50), || async {
        stored(redis, std::slice::from_ref(&id)).await[0]
            .status
            .is_ready()
    })
    .await;
    if done {
        Ok(id)
    } else {
        Err(format!("{name} {id} never finished"))
    }
}

/// Puts a real task message into the quarantine as a worker would (the record's fields as
/// `shared::broker` writes them), edited by `edit`; returns the task's id. The message is made
/// by the client on a queue nobody consumes and taken off it, so it is exactly what a client
/// sends; the record names `lote` as its list, where requeue puts it back.
async fn quarantine_real_message(
    client: &Client,
    redis: &Redis,
    name: &str,
    args: Vec<Value>,
    edit: impl FnOnce(Value) -> Value,
) -> Outcome<String> {
    let parking = "nadie-consume-esta-cola";
    let id = client
        .send_task(name, args, Map::new(), SendOptions::queue(parking))
        .await
        .map_err(|e| e.to_string())?;
    let raw: Option<String> = cmd(redis, redis::cmd("RPOP").arg(parking).clone()).await;
    let raw = raw.ok_or("the message was not on its queue")?;
    let record = edit(json!({
        "reason": "malformed body: the test put it here",
        "list": LOTE,
        "consumer": "prueba@e2e",
        "quarantined_at": chrono::Utc::now().to_rfc3339(),
        "message": raw,
    }));
    let _: i64 = cmd(
        redis,
        redis::cmd("LPUSH")
            .arg(shared::keys::QUARANTINE)
            .arg(record.to_string())
            .clone(),
    )
    .await;
    Ok(id)
}

/// Nothing the hostile text describes exists in the page, and its script never ran.
async fn no_element_from_hostile_text(session: &Browser, page: &str) -> Outcome<()> {
    let found = session
        .exec(
            "return [document.querySelectorAll('img').length, \
                     [...document.scripts].filter(s => !s.src).length, \
                     window.__atacado === undefined];",
        )
        .await?;
    if found != json!([0, 0, true]) {
        return Err(format!(
            "{page}: the hostile text became elements or ran ([img, inline scripts, not run] = {found})"
        ));
    }
    Ok(())
}
