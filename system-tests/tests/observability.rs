//! The Grafana dashboard (`observability/grafana/dashboards/inventario.json`) and the
//! Prometheus configuration (`observability/prometheus/prometheus.yml`) against the real
//! programs. A dashboard is only text until a Prometheus evaluates it: a metric renamed in the
//! code, or a panel that names a metric no program exposes, shows as an empty graph that
//! nobody notices until the day it is needed. So:
//!
//! - the dashboard is checked for what Grafana needs to load it as provisioned (a schema
//!   version, a grid position per panel, targets with a query and the provisioned datasource);
//! - a real redis-server, a `demo-worker` sending task events, `monitor-service` and
//!   `inventario-service` run with some traffic (tasks that succeed, fail, retry and expire, a
//!   malformed message that ends in quarantine, HTTP requests, one refused), and every metric
//!   name any panel queries must appear on their `/metrics`;
//! - Debian's `prometheus` checks the configuration (`promtool check config`), then scrapes the
//!   programs every second with that configuration (only the targets and intervals changed),
//!   and every panel's query must evaluate through its HTTP API without error and return data.
//!
//! The `prometheus` package provides `promtool` and `prometheus` (scripts/test.sh installs it).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::{Client, Redis, SendOptions};
use testkit::demo::spawn_demo_worker;
use testkit::queue::{business, QUEUE};
use testkit::{eventually, free_port, start_redis, wait_for_status, workspace_binary, Process};

/// Start-up of the programs (the first may wait for cargo).
const ARRANQUE: Duration = Duration::from_secs(120);
/// How long the metrics may take to show what the traffic did (task events are batched, the
/// queue sampler and the control pings run on their own intervals).
const METRICAS: Duration = Duration::from_secs(60);
/// What the dashboard's `$__rate_interval` stands for here: Grafana makes it at least four
/// scrape intervals, and this test's Prometheus scrapes every second.
const RATE_INTERVAL: &str = "5s";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    let full = repository().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

// ---------------------------------------------------------------------------------------------
// The dashboard and its queries

/// One query of one panel.
#[derive(Debug)]
struct Query {
    panel: String,
    ref_id: String,
    expr: String,
}

fn dashboard() -> Value {
    let path = "observability/grafana/dashboards/inventario.json";
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every panel, those nested in collapsed rows included, rows themselves excluded.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels: a list") {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

fn queries(dashboard: &Value) -> Vec<Query> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |target| Query {
                    panel: title.clone(),
                    ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                    expr: target["expr"].as_str().unwrap_or_default().to_owned(),
                })
        })
        .collect()
}

/// Words of PromQL that are never metric names when they stand outside braces and brackets.
const PROMQL_WORDS: [&str; 22] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
];

/// The metric names a PromQL expression selects: identifiers outside label matchers (`{...}`),
/// ranges (`[...]`) and strings, that are not followed by `(` (a function or an aggregation)
/// and are not a keyword; the label lists of `by (...)`, `on (...)` and the like are skipped.
/// Enough for the queries a dashboard holds; a `{__name__=~...}` selector is not supported (the
/// dashboard should name its metrics).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening character to its closing one, strings inside included.
    let skip_group = |mut i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                q @ ('"' | '\'' | '`') => {
                    i += 1;
                    while i < chars.len() && chars[i] != q {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    let next_non_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if matches!(c, '"' | '\'' | '`') {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            // A number or a duration (`5m`): letters that follow belong to it.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = next_non_space(i);
            let lower = word.to_ascii_lowercase();
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&lower.as_str())
            {
                if chars.get(after) == Some(&'(') {
                    i = skip_group(after, '(', ')');
                }
            } else if chars.get(after) == Some(&'(') || PROMQL_WORDS.contains(&lower.as_str()) {
                // A function or an aggregation: its arguments are read as the loop goes on.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            "histogram_quantile(0.95, sum by (le, name) (rate(celery_task_runtime_bucket{queue_name=~\"a|b\"}[$__rate_interval])))"
        ),
        ["celery_task_runtime_bucket"]
    );
    assert_eq!(
        names(
            "(sum(rate(http_requests_total{status=~\"5..\"}[5m])) or vector(0)) / sum without (route) (rate(http_requests_total[5m] offset 1h))"
        ),
        ["http_requests_total"]
    );
    assert_eq!(
        names("max by (queue_name) (monitor_queue_oldest_age_seconds) > bool on(queue_name) group_left celery_queue_length"),
        ["celery_queue_length", "monitor_queue_oldest_age_seconds"]
    );
    assert_eq!(names("up{job=\"by (x)\"} * 2e3"), ["up"]);
}

/// What Grafana needs to load the dashboard from a file provider, and what keeps it loadable
/// by the provisioned datasource: a schema version, a unique uid, every panel with a grid
/// position inside the 24 columns and a unique id, every query with a refId unique in its
/// panel, an expression, and the provisioned datasource's uid.
#[test]
fn dashboard_loads_as_provisioned() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion: {}",
        dashboard["schemaVersion"]
    );
    assert!(
        dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()),
        "the dashboard needs a uid: links to it must not change when it is provisioned again"
    );
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));

    // The datasource's uid as provisioned.
    let datasources = read("observability/grafana/provisioning/datasources/prometheus.yml");
    let uid = datasources
        .lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .map(|u| u.trim().trim_matches('"').to_owned())
        .expect("the provisioned datasource has a fixed uid");
    assert!(datasources.contains("type: prometheus"));
    let provider = read("observability/grafana/provisioning/dashboards/inventario.yml");
    assert!(provider.contains("type: file"), "{provider}");

    let mut ids = BTreeSet::new();
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels").iter() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    for panel in all {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "{title}: id {id} used twice");
        let grid = &panel["gridPos"];
        let (x, w, h) = (grid["x"].as_u64(), grid["w"].as_u64(), grid["h"].as_u64());
        assert!(
            grid["y"].as_u64().is_some() && h.is_some_and(|h| h > 0),
            "{title}: gridPos {grid}"
        );
        assert!(
            matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24),
            "{title}: gridPos {grid} beyond the 24 columns"
        );
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array();
        assert!(targets.is_some_and(|t| !t.is_empty()), "{title}: no query");
        let mut refs = BTreeSet::new();
        for target in targets.into_iter().flatten() {
            let ref_id = target["refId"].as_str().unwrap_or_default();
            assert!(
                !ref_id.is_empty() && refs.insert(ref_id),
                "{title}: refId {ref_id:?} missing or repeated"
            );
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "{title} {ref_id}: no expr"
            );
            for datasource in [&panel["datasource"], &target["datasource"]] {
                assert_eq!(
                    datasource,
                    &json!({"type": "prometheus", "uid": uid}),
                    "{title} {ref_id}: not the provisioned datasource"
                );
            }
        }
    }
    println!(
        "dashboard: {} panels, {} queries",
        ids.len(),
        queries(&dashboard).len()
    );
}

// ---------------------------------------------------------------------------------------------
// The programs

/// A program of Debian's `prometheus` package.
fn prometheus_tool(name: &str) -> PathBuf {
    ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not found: install Debian's prometheus package (scripts/test.sh does)")
        })
}

/// `promtool check config`, which reads the file as the Prometheus server does.
fn promtool_check(config: &Path) {
    let out = Command::new(prometheus_tool("promtool"))
        .args(["check", "config"])
        .arg(config)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check config {}: {}{}",
        config.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository's prometheus.yml with the compose services' addresses replaced by the test's
/// ports and every interval set to a second; nothing else changes, so the jobs and their
/// paths are the ones the compose Prometheus uses.
fn prometheus_config(monitor: &str, servicio: &str) -> String {
    let mut text = read("observability/prometheus/prometheus.yml");
    for (from, to) in [
        ("monitor-service:3002", monitor),
        ("inventario-service:3001", servicio),
        ("scrape_interval: 5s", "scrape_interval: 1s"),
        ("scrape_timeout: 4s", "scrape_timeout: 1s"),
        ("evaluation_interval: 5s", "evaluation_interval: 1s"),
    ] {
        assert!(
            text.contains(from),
            "observability/prometheus/prometheus.yml no longer has {from:?}: update this test"
        );
        text = text.replace(from, to);
    }
    text
}

/// The names a `/metrics` page exposes.
fn exposed(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Whether `name` is exposed as is, or is the base of a histogram, summary or counter exposed.
fn is_exposed(name: &str, names: &BTreeSet<String>) -> bool {
    ["", "_bucket", "_sum", "_count", "_total"]
        .iter()
        .any(|suffix| names.contains(&format!("{name}{suffix}")))
}

async fn metrics_page(http: &reqwest::Client, url: &str) -> String {
    match http.get(format!("{url}/metrics")).send().await {
        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
        _ => String::new(),
    }
}

/// Sends the traffic the dashboard graphs: tasks that succeed, fail, retry and expire (a
/// `task-revoked`), a malformed message (quarantine), and requests to the service, one of them
/// refused (404).
async fn traffic(
    client: &Client,
    redis: &testkit::RedisServer,
    http: &reqwest::Client,
    servicio: &str,
) {
    let send = |task: &'static str, args: Vec<Value>, options: SendOptions| async move {
        client
            .send_task(task, args, Default::default(), options)
            .await
            .expect("send_task")
    };
    for i in 0..5 {
        send("add", vec![json!(i), json!(1)], business()).await;
    }
    for _ in 0..2 {
        send("fail", vec![json!("fallo de prueba")], business()).await;
    }
    send("reintentar", vec![json!(2)], business()).await;
    send(
        "noop",
        vec![json!("caducada")],
        SendOptions {
            expires: Some(Duration::ZERO),
            ..business()
        },
    )
    .await;
    send("sleep", vec![json!(200)], business()).await;
    redis.cli(&["LPUSH", QUEUE, "esto no es un mensaje de Celery"]);
    for path in [
        "/inventario",
        "/inventario/1",
        "/inventario/999999",
        "/health",
    ] {
        let status = http
            .get(format!("{servicio}{path}"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert!(status.is_ok(), "GET {path}: {status:?}");
    }
}

/// The dashboard's queries, evaluated by a real Prometheus that scrapes the real programs: each
/// metric a panel names is on a `/metrics` page, and each query returns data without error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_queries_metrics_the_programs_expose() {
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for q in &queries {
        let names = metric_names(&q.expr);
        assert!(
            !names.is_empty(),
            "{} {}: no metric in {}",
            q.panel,
            q.ref_id,
            q.expr
        );
        for name in names {
            wanted
                .entry(name)
                .or_default()
                .push(format!("{} ({})", q.panel, q.ref_id));
        }
    }
    promtool_check(&repository().join("observability/prometheus/prometheus.yml"));

    let built = Instant::now();
    for binary in ["demo-worker", "monitor-service", "inventario-service"] {
        workspace_binary(binary);
    }
    println!(
        "(programs built or checked in {:.1} s)",
        built.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let redis = start_redis(true).await;
    let url = redis.url();
    let (port_monitor, port_servicio, port_prometheus) = (free_port(), free_port(), free_port());
    let _worker = spawn_demo_worker(
        &url,
        "observabilidad@test",
        &[("TASK_EVENTS", "true"), ("CONCURRENCY", "2")],
        dir.path(),
    );
    let base = |extra: Vec<(&'static str, String)>| {
        let mut env = vec![
            ("REDIS_URL", url.clone()),
            ("QUEUE", QUEUE.to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        env.extend(extra);
        env
    };
    let mut monitor = Process::program(
        "monitor-service",
        &base(vec![("HTTP_ADDR", format!("127.0.0.1:{port_monitor}"))]),
        &dir.path().join("monitor-service.log"),
    );
    let mut servicio = Process::program(
        "inventario-service",
        &base(vec![
            ("HTTP_ADDR", format!("127.0.0.1:{port_servicio}")),
            (
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("inventario.db").display()),
            ),
            (
                "JWT_SECRET",
                "secreto-de-la-prueba-de-observabilidad".to_owned(),
            ),
        ]),
        &dir.path().join("inventario-service.log"),
    );
    let url_monitor = format!("http://127.0.0.1:{port_monitor}");
    let url_servicio = format!("http://127.0.0.1:{port_servicio}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    for (program, base_url) in [(&mut monitor, &url_monitor), (&mut servicio, &url_servicio)] {
        assert!(
            wait_for_status(&http, &format!("{base_url}/health"), 200, ARRANQUE).await,
            "{} did not answer /health; its log ends with:\n{}",
            program.name(),
            program.log_tail(20)
        );
    }

    let client = Client::new(Redis::from_url(&url).expect("redis url"), QUEUE);
    traffic(&client, &redis, &http, &url_servicio).await;

    // 1. Every name a panel queries is on a /metrics page.
    let missing = RefCell::new(Vec::new());
    let found = eventually(METRICAS, Duration::from_millis(250), || async {
        let mut names = exposed(&metrics_page(&http, &url_monitor).await);
        names.extend(exposed(&metrics_page(&http, &url_servicio).await));
        *missing.borrow_mut() = wanted
            .iter()
            .filter(|(name, _)| !is_exposed(name, &names))
            .map(|(name, panels)| format!("{name} (queried by {})", panels.join(", ")))
            .collect();
        missing.borrow().is_empty()
    })
    .await;
    monitor.assert_alive();
    servicio.assert_alive();
    assert!(
        found,
        "metrics the dashboard queries but no program exposes:\n  {}",
        missing.borrow().join("\n  ")
    );
    println!(
        "names: the {} metrics the dashboard queries are all exposed",
        wanted.len()
    );

    // 2. A real Prometheus, with the repository's configuration, scrapes them every second.
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        prometheus_config(
            &format!("127.0.0.1:{port_monitor}"),
            &format!("127.0.0.1:{port_servicio}"),
        ),
    )
    .expect("write prometheus.yml");
    promtool_check(&config);
    let mut prometheus = Process::start(
        "prometheus",
        Command::new(prometheus_tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port_prometheus}"))
            .arg("--log.level=warn"),
        &dir.path().join("prometheus.log"),
    );
    let url_prometheus = format!("http://127.0.0.1:{port_prometheus}");
    assert!(
        wait_for_status(&http, &format!("{url_prometheus}/-/ready"), 200, ARRANQUE).await,
        "prometheus did not get ready; its log ends with:\n{}",
        prometheus.log_tail(20)
    );
    let query = |expr: String| {
        let http = http.clone();
        let url = format!("{url_prometheus}/api/v1/query");
        async move {
            let answer: Value = http
                .get(url)
                .query(&[("query", expr.as_str())])
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if answer["status"] != "success" {
                return Err(format!("{}: {}", answer["errorType"], answer["error"]));
            }
            Ok(answer["data"].clone())
        }
    };
    let up = eventually(ARRANQUE, Duration::from_millis(250), || async {
        query("sum(up)".to_owned())
            .await
            .is_ok_and(|d| d["result"][0]["value"][1] == "2")
    })
    .await;
    assert!(
        up,
        "prometheus does not scrape both programs: up = {:?}; its log ends with:\n{}",
        query("up".to_owned()).await,
        prometheus.log_tail(20)
    );

    // 3. Every query answers, with data, once a few scrapes have seen the traffic. More traffic
    // as it goes: rates over a few seconds need something happening.
    let outcome: RefCell<BTreeMap<String, String>> = RefCell::default();
    let all_answer = eventually(METRICAS, Duration::from_millis(500), || async {
        traffic(&client, &redis, &http, &url_servicio).await;
        let mut failing = BTreeMap::new();
        for q in &queries {
            let expr = q.expr.replace("$__rate_interval", RATE_INTERVAL);
            let verdict = match query(expr).await {
                Err(e) => Some(format!("error {e}")),
                Ok(data) if data["resultType"] != "vector" => {
                    Some(format!("result type {}", data["resultType"]))
                }
                Ok(data) if data["result"].as_array().is_none_or(|r| r.is_empty()) => {
                    Some("no data".to_owned())
                }
                Ok(_) => None,
            };
            if let Some(v) = verdict {
                failing.insert(format!("{} ({}): {}", q.panel, q.ref_id, q.expr), v);
            }
        }
        let done = failing.is_empty();
        *outcome.borrow_mut() = failing;
        done
    })
    .await;
    prometheus.assert_alive();
    assert!(
        all_answer,
        "queries of the dashboard that Prometheus does not answer with data:\n  {}",
        outcome
            .borrow()
            .iter()
            .map(|(q, v)| format!("{q} -> {v}"))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    println!(
        "prometheus: the {} queries of the dashboard answer with data",
        queries.len()
    );
}
