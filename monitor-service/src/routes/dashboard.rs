//! The web dashboard: what an operator opens to watch the monitor, and the stream that keeps it
//! live. It exists so that INICIANDO / OK / DEGRADADO / CAIDO, the latencies, the availability, the workers
//! and the state changes can be watched as they happen, on any machine that reaches port 3002,
//! offline and without installing anything: the page's HTML, CSS and JavaScript
//! (`monitor-service/assets/`) are compiled into the binary; no CDN, no build step.
//!
//! - `GET /`: the page. `GET /assets/dashboard.css`, `GET /assets/dashboard.js`: its parts.
//!   The page names them with `?v=<hash of the assets>`; asked for with the current hash
//!   they may be cached for a year (a new binary has a new hash), otherwise, like the page
//!   itself, they are revalidated with their `ETag` each time (`304 Not Modified`).
//! - `GET /tarea` (one task by id, `?id=` or `#id` so it can be linked) and `GET /cuarentena`
//!   (the quarantined messages, each with a requeue button): the pages next to the dashboard,
//!   with the same stylesheet and one script of their own, `GET /assets/paginas.js`. They read
//!   the JSON routes (`/monitor/colas`, `/monitor/tareas/{id}`, `/monitor/cuarentena`) like any
//!   client; no data is put into their HTML on the server.
//! - `GET /monitor/stream`: server-sent events. First `snapshot` (the settings, every target's
//!   summary, the workers, the last hour of chart points from the [`Feed`], the recent changes),
//!   then `ping` and `cambio` as they happen, `estado` (summaries and workers) every second,
//!   `perdidos` when this client fell behind and events were skipped, and a keep-alive comment
//!   every 15 s. The stream ends when the process is asked to stop, so graceful shutdown never
//!   waits on an open page; the page reconnects by itself and gets a fresh snapshot.
//!
//! Each stream costs a broadcast receiver and a one-second timer; the number of streams is
//! capped (`DASHBOARD_MAX_CLIENTS`, 503 beyond it).
//!
//! [`Feed`]: crate::feed::Feed

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use tokio::time::{Interval, MissedTickBehavior};

use crate::change::StateChange;
use crate::control_ping::WorkerView;
use crate::error::AppError;
use crate::feed::{FeedEvent, Next, Point, Snapshot, Subscription};
use crate::monitor::{Monitor, TargetSummary};
use crate::routes::openapi::{ErrorBody, NoAutenticado, TAG_PANEL};

/// The availability requirement the chart shows as a line: a failure must be detected within
/// 2 s. The DEGRADADO threshold and the ping timeout are drawn next to it.
pub const ASR_DETECTION: Duration = Duration::from_secs(2);
/// How often each open page is sent the summaries and the workers.
pub const STATE_EVERY: Duration = Duration::from_secs(1);
/// A comment on an otherwise quiet stream, so proxies and browsers keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a browser waits before reconnecting a dropped stream.
pub const RECONNECT: Duration = Duration::from_secs(2);

const HTML: &str = include_str!("../../assets/dashboard.html");
const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");
const TAREA_HTML: &str = include_str!("../../assets/tarea.html");
const CUARENTENA_HTML: &str = include_str!("../../assets/cuarentena.html");
const PAGINAS_JS: &str = include_str!("../../assets/paginas.js");

/// The page's assets, with their version stamped in.
struct Assets {
    /// Hex hash of every asset: the `?v=` of the asset links, and the ETag of them all.
    version: String,
    etag: HeaderValue,
    html: String,
    tarea: String,
    cuarentena: String,
}

static ASSETS: LazyLock<Assets> = LazyLock::new(|| {
    let version = format!(
        "{:016x}",
        fnv1a([HTML, CSS, JS, TAREA_HTML, CUARENTENA_HTML, PAGINAS_JS])
    );
    let etag = HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    let stamp = |page: &str| page.replace("{{VERSION}}", &version);
    Assets {
        html: stamp(HTML),
        tarea: stamp(TAREA_HTML),
        cuarentena: stamp(CUARENTENA_HTML),
        version,
        etag,
    }
});

/// FNV-1a, 64 bits: enough to tell one build's assets from another's.
fn fnv1a<const N: usize>(parts: [&str; N]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// Only our own origin, no inline code: the page loads its two assets and opens its stream.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`.
#[utoipa::path(
    get,
    path = "/",
    tag = TAG_PANEL,
    summary = "El panel web",
    description = "Con MONITOR_TOKEN, `/?token=<token>` responde 303 a `/` con la cookie que \
                   abre el panel en el navegador.",
    params(("token" = Option<String>, Query, description = "MONITOR_TOKEN, una vez, para dejar la cookie.")),
    responses(
        (status = 200, description = "La página (HTML, sin código en línea).", content_type = "text/html; charset=utf-8", body = String),
        (status = 303, description = "`?token=` correcto: cookie puesta, a `/`.", headers(("location" = String), ("set-cookie" = String))),
        (status = 304, description = "La copia del cliente (`If-None-Match`) está al día."),
        (status = 401, response = NoAutenticado),
    ),
)]
pub async fn page(headers: HeaderMap) -> Response {
    let mut response = asset(&headers, "text/html; charset=utf-8", &ASSETS.html, false);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// `GET /assets/dashboard.css`.
#[utoipa::path(
    get,
    path = "/assets/dashboard.css",
    tag = TAG_PANEL,
    summary = "La hoja de estilo del panel",
    params(("v" = Option<String>, Query, description = "Versión de los recursos: con la actual, se guardan un año.")),
    responses(
        (status = 200, description = "CSS.", content_type = "text/css; charset=utf-8", body = String),
        (status = 304, description = "La copia del cliente está al día."),
        (status = 401, response = NoAutenticado),
    ),
)]
pub async fn css(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    asset(&headers, "text/css; charset=utf-8", CSS, current(query))
}

/// `GET /assets/dashboard.js`.
#[utoipa::path(
    get,
    path = "/assets/dashboard.js",
    tag = TAG_PANEL,
    summary = "El código del panel",
    params(("v" = Option<String>, Query, description = "Versión de los recursos: con la actual, se guardan un año.")),
    responses(
        (status = 200, description = "JavaScript.", content_type = "text/javascript; charset=utf-8", body = String),
        (status = 304, description = "La copia del cliente está al día."),
        (status = 401, response = NoAutenticado),
    ),
)]
pub async fn js(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    asset(
        &headers,
        "text/javascript; charset=utf-8",
        JS,
        current(query),
    )
}

/// `GET /tarea`: the task lookup. The id travels in the address (`?id=`, `#`) and is read by
/// the page's script, never put into the HTML here.
#[utoipa::path(
    get,
    path = "/tarea",
    tag = TAG_PANEL,
    summary = "Página: consulta de una tarea",
    description = "El id va en la dirección (`?id=` o `#id`) y lo lee el código de la página, \
                   que consulta `/monitor/tareas/{id}`.",
    responses(
        (status = 200, description = "La página (HTML, sin código en línea).", content_type = "text/html; charset=utf-8", body = String),
        (status = 304, description = "La copia del cliente (`If-None-Match`) está al día."),
        (status = 401, response = NoAutenticado),
    ),
)]
pub async fn tarea(headers: HeaderMap) -> Response {
    html_page(&headers, &ASSETS.tarea)
}

/// `GET /cuarentena`: the quarantined messages.
#[utoipa::path(
    get,
    path = "/cuarentena",
    tag = TAG_PANEL,
    summary = "Página: mensajes en cuarentena",
    description = "Lee `/monitor/cuarentena`; cada mensaje con su botón de reencolar.",
    responses(
        (status = 200, description = "La página (HTML, sin código en línea).", content_type = "text/html; charset=utf-8", body = String),
        (status = 304, description = "La copia del cliente (`If-None-Match`) está al día."),
        (status = 401, response = NoAutenticado),
    ),
)]
pub async fn cuarentena(headers: HeaderMap) -> Response {
    html_page(&headers, &ASSETS.cuarentena)
}

/// `GET /assets/paginas.js`: the script of `/tarea` and `/cuarentena`.
#[utoipa::path(
    get,
    path = "/assets/paginas.js",
    tag = TAG_PANEL,
    summary = "El código de las páginas /tarea y /cuarentena",
    params(("v" = Option<String>, Query, description = "Versión de los recursos: con la actual, se guardan un año.")),
    responses(
        (status = 200, description = "JavaScript.", content_type = "text/javascript; charset=utf-8", body = String),
        (status = 304, description = "La copia del cliente está al día."),
        (status = 401, response = NoAutenticado),
    ),
)]
pub async fn paginas_js(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    asset(
        &headers,
        "text/javascript; charset=utf-8",
        PAGINAS_JS,
        current(query),
    )
}

fn html_page(headers: &HeaderMap, body: &str) -> Response {
    let mut response = asset(headers, "text/html; charset=utf-8", body, false);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// Whether an asset was asked for under this build's version.
fn current(query: Option<String>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.strip_prefix("v=") == Some(ASSETS.version.as_str()))
    })
}

fn asset(headers: &HeaderMap, content_type: &'static str, body: &str, immutable: bool) -> Response {
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (header::ETAG, ASSETS.etag.clone()),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if fresh(headers) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body.to_owned(),
    )
        .into_response()
}

/// Whether the client's copy (`If-None-Match`) is this build's.
fn fresh(headers: &HeaderMap) -> bool {
    let ours = ASSETS.etag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == ours)
}

/// `GET /monitor/stream`.
#[utoipa::path(
    get,
    path = "/monitor/stream",
    tag = TAG_PANEL,
    summary = "Eventos del panel (server-sent events)",
    description = "Primero `snapshot`; luego `ping` y `cambio` según ocurren, `estado` cada \
                   segundo, `perdidos` si el cliente se quedó atrás. Termina al parar el proceso.",
    responses(
        (status = 200, description = "Flujo de eventos.", content_type = "text/event-stream", body = String),
        (status = 401, response = NoAutenticado),
        (status = 503, description = "`demasiados_clientes`: se alcanzó DASHBOARD_MAX_CLIENTS; lleva `Retry-After`.", body = ErrorBody),
    ),
)]
pub async fn stream(State(monitor): State<Monitor>) -> Result<Response, AppError> {
    let subscription = monitor.feed().subscribe()?;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + STATE_EVERY, STATE_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let live = Live {
        monitor,
        subscription,
        after: 0,
        tick,
    };
    let events = futures_util::stream::unfold(live, |mut live| async move {
        let event = live.next_event().await?;
        Some((Ok::<Event, Infallible>(event), live))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    // Tells a buffering reverse proxy (nginx) to pass events on at once.
    Ok(([("x-accel-buffering", "no")], sse).into_response())
}

/// One open page.
struct Live {
    monitor: Monitor,
    subscription: Subscription,
    /// The snapshot's sequence number: events up to it are in the snapshot.
    after: u64,
    tick: Interval,
}

impl Live {
    /// The next event for the page; `None` ends the stream (the process is stopping).
    async fn next_event(&mut self) -> Option<Event> {
        let shutdown = self.monitor.shutdown_token().clone();
        if shutdown.is_cancelled() {
            return None;
        }
        if let Some(snapshot) = self.subscription.take_snapshot() {
            self.after = snapshot.seq;
            let body = snapshot_body(&self.monitor, &snapshot);
            return Some(event("snapshot", &body).retry(RECONNECT));
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            next = self.subscription.next(self.after) => match next {
                Next::Event(FeedEvent::Ping { servicio, point, .. }) => {
                    Some(event("ping", &PingBody::new(&servicio, point)))
                }
                Next::Event(FeedEvent::Cambio { change, .. }) => {
                    Some(event("cambio", &CambioBody::new(&change)))
                }
                Next::Missed(eventos) => {
                    Some(event("perdidos", &serde_json::json!({ "eventos": eventos })))
                }
                Next::Closed => None,
            },
            _ = self.tick.tick() => Some(event("estado", &EstadoBody::now(&self.monitor))),
        }
    }
}

/// An SSE event whose data is `body` as JSON. Serializing these types cannot fail; if it ever
/// did, the page gets a comment instead of a broken event.
fn event(name: &'static str, body: &impl Serialize) -> Event {
    match serde_json::to_string(body) {
        Ok(json) => Event::default().event(name).data(json),
        Err(error) => {
            tracing::warn!(%error, event = name, "dashboard event not serializable");
            Event::default().comment("evento omitido")
        }
    }
}

/// `estado`: what changes by the second.
#[derive(Serialize)]
struct EstadoBody {
    /// The server's clock, ms since the epoch: the page measures "time since" on it.
    ahora: i64,
    objetivos: Vec<TargetSummary>,
    /// Heartbeat fields and the control ping's, per worker.
    workers: Vec<WorkerView>,
}

impl EstadoBody {
    fn now(monitor: &Monitor) -> Self {
        EstadoBody {
            ahora: Utc::now().timestamp_millis(),
            objetivos: monitor.summaries(),
            workers: monitor.workers_with_control(),
        }
    }
}

/// The numbers the page draws its lines and sizes its buffers with.
#[derive(Serialize)]
struct Ajustes {
    intervalo_ms: u64,
    timeout_ms: u64,
    /// 0 when control pings are disabled.
    control_intervalo_ms: u64,
    umbral_degradado_ms: u64,
    asr_ms: u64,
    ventana_disponibilidad: usize,
    ventana_degradado: usize,
    /// Points kept per target, here and in the page.
    puntos_max: usize,
    /// The order of the outcome codes in `puntos`.
    codigos: [&'static str; 3],
}

#[derive(Serialize)]
struct Serie<'a> {
    servicio: &'a str,
    /// `[t, latencia_ms, codigo]`, oldest first.
    puntos: &'a [Point],
}

/// `snapshot`: everything a page needs to draw at once.
#[derive(Serialize)]
struct SnapshotBody<'a> {
    #[serde(flatten)]
    estado: EstadoBody,
    ajustes: Ajustes,
    series: Vec<Serie<'a>>,
    /// Oldest first.
    cambios: Vec<CambioBody<'a>>,
}

fn snapshot_body<'a>(monitor: &Monitor, snapshot: &'a Snapshot) -> SnapshotBody<'a> {
    let config = monitor.config();
    SnapshotBody {
        estado: EstadoBody::now(monitor),
        ajustes: Ajustes {
            intervalo_ms: config.ping_interval().as_millis() as u64,
            timeout_ms: config.ping_timeout().as_millis() as u64,
            control_intervalo_ms: config.control_ping_interval_ms,
            umbral_degradado_ms: config.degraded_threshold_ms,
            asr_ms: ASR_DETECTION.as_millis() as u64,
            ventana_disponibilidad: config.availability_window,
            ventana_degradado: config.degraded_window,
            puntos_max: monitor.feed().capacity(),
            codigos: ["ok", "fallo", "timeout"],
        },
        series: snapshot
            .points
            .iter()
            .map(|(servicio, puntos)| Serie { servicio, puntos })
            .collect(),
        cambios: snapshot.changes.iter().map(CambioBody::new).collect(),
    }
}

/// `ping`: one ping of the loop.
#[derive(Serialize)]
struct PingBody<'a> {
    servicio: &'a str,
    t: i64,
    latencia_ms: f64,
    resultado: &'static str,
}

impl<'a> PingBody<'a> {
    fn new(servicio: &'a str, point: Point) -> Self {
        PingBody {
            servicio,
            t: point.t,
            latencia_ms: point.latencia_ms,
            resultado: point.outcome.as_str(),
        }
    }
}

/// `cambio`: a state change as the history records it, plus `t` (ms since the epoch).
#[derive(Serialize)]
struct CambioBody<'a> {
    #[serde(flatten)]
    change: &'a StateChange,
    t: i64,
}

impl<'a> CambioBody<'a> {
    fn new(change: &'a Arc<StateChange>) -> Self {
        CambioBody {
            change,
            t: change.en.timestamp_millis(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_with_their_version() {
        let html = &ASSETS.html;
        assert!(!html.contains("{{VERSION}}"));
        let v = &ASSETS.version;
        assert!(html.contains(&format!("/assets/dashboard.css?v={v}")));
        assert!(html.contains(&format!("/assets/dashboard.js?v={v}")));
        assert!(current(Some(format!("v={v}"))));
        assert!(!current(Some("v=0".into())));
        assert!(!current(None));
    }

    #[test]
    fn if_none_match() {
        let mut h = HeaderMap::new();
        assert!(!fresh(&h));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(!fresh(&h));
        let list = format!("\"x\", W/{}", ASSETS.etag.to_str().unwrap());
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&list).unwrap());
        assert!(fresh(&h));
    }
}
