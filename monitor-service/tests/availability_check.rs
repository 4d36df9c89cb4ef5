//! The availability-check binary against a tiny local server whose answers are known: `/`
//! fails exactly one request in ten with a 503, `/mixto` also makes one in ten wait past the
//! client's timeout, `/lento` answers after 300 ms; a port with nothing listening refuses, and a
//! listener that hangs up at once gives "other connection errors". The tool must count each
//! kind, print the summary, the per-second timeline and the progress, send at the rate asked
//! for, write a CSV and an SVG that read back, refuse bad usage with status 2 before sending
//! anything, and exit 1 when the ASR does not hold, 0 when it does.

use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// The test server: its base URL, how many requests it has had, and when each arrived.
struct Server {
    url: String,
    hits: Arc<AtomicU64>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

/// Serves on a free port: `/` fails every tenth request with a 503; `/mixto` the same, and
/// makes every tenth (the fifth of each ten) wait 2 s; `/lento` answers after 300 ms.
async fn flaky_server() -> Server {
    let hits = Arc::new(AtomicU64::new(0));
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let count = {
        let (hits, arrivals) = (hits.clone(), arrivals.clone());
        move || {
            arrivals.lock().unwrap().push(Instant::now());
            hits.fetch_add(1, Ordering::Relaxed) + 1
        }
    };
    let (plain, mixed, slow) = (count.clone(), count.clone(), count);
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let n = plain();
                async move {
                    if n.is_multiple_of(10) {
                        (StatusCode::SERVICE_UNAVAILABLE, "no")
                    } else {
                        (StatusCode::OK, "si")
                    }
                }
            }),
        )
        .route(
            "/mixto",
            get(move || {
                let n = mixed();
                async move {
                    match n % 10 {
                        0 => (StatusCode::SERVICE_UNAVAILABLE, "no"),
                        5 => {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            (StatusCode::OK, "tarde")
                        }
                        _ => (StatusCode::OK, "si"),
                    }
                }
            }),
        )
        .route(
            "/lento",
            get(move || {
                slow();
                async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "si"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        url: format!("http://{addr}/"),
        hits,
        arrivals,
    }
}

/// Accepts connections and closes them without a word.
async fn hang_up_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    format!("http://{addr}/")
}

async fn run(args: &[&str]) -> Output {
    run_with_env(args, &[]).await
}

async fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_availability-check"));
    cmd.args(args);
    for var in [
        "CHECK_URL",
        "CHECK_CLIENTS",
        "CHECK_REQUESTS",
        "CHECK_DURATION",
        "CHECK_RATE",
        "CHECK_MAX_IN_FLIGHT",
        "CHECK_CSV",
        "CHECK_SVG",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().await.expect("run availability-check")
}

async fn check(url: &str, asr: &str) -> Output {
    run(&["--url", url, "-c", "10", "-n", "20", "--asr", asr]).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            text.lines().any(|l| l == *line),
            "{line:?} not a line of:\n{text}"
        );
    }
}

/// The timeline's rows, each split into its columns.
fn timeline_rows(text: &str) -> Vec<Vec<String>> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("Línea de tiempo"));
    lines.next().expect("a timeline");
    let header = lines.next().expect("the timeline's header");
    assert!(header.split_whitespace().eq([
        "seg",
        "enviadas",
        "ok",
        "agotado",
        "503",
        "otro_http",
        "rechazada",
        "conexion",
        "p50",
        "máx"
    ]));
    lines
        .take_while(|l| !l.starts_with("Solicitudes:"))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// A number printed after `prefix` on a line of its own, up to the next space.
fn number_after(text: &str, prefix: &str) -> f64 {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{text}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fails_below_the_asr_and_passes_above_it() {
    let server = flaky_server().await;

    let out = check(&server.url, "99").await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_lines(
        &text,
        &[
            "Solicitudes: 200",
            "Exitosas: 180",
            "Fallidas: 20",
            "  HTTP 503: 20",
            "Disponibilidad: 90.00 %",
            "ASR (disponibilidad >= 99.00 %): NO CUMPLE",
        ],
    );
    assert!(text.contains("Latencia: p50 "), "{text}");
    assert!(
        text.starts_with(&format!(
            "URL: {} (10 clientes x 20 solicitudes)\n",
            server.url
        )),
        "{text}"
    );
    // The same 200 requests, second by second.
    let rows = timeline_rows(&text);
    assert!(!rows.is_empty(), "{text}");
    let sent: u64 = rows.iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
    let unavailable: u64 = rows.iter().map(|r| r[4].parse::<u64>().unwrap()).sum();
    assert_eq!((sent, unavailable), (200, 20), "{text}");

    // The same server, the next 200 requests, judged against 90 %: holds.
    let out = check(&server.url, "90").await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Exitosas: 180"), "{text}");
    assert!(
        text.contains("ASR (disponibilidad >= 90.00 %): CUMPLE"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_listening_is_zero_availability() {
    let port = testkit::free_port();
    let out = check(&format!("http://127.0.0.1:{port}/"), "1").await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_lines(
        &text,
        &[
            "Fallidas: 200",
            "  conexión rechazada: 200",
            "Disponibilidad: 0.00 %",
        ],
    );
    let rows = timeline_rows(&text);
    let refused: u64 = rows.iter().map(|r| r[6].parse::<u64>().unwrap()).sum();
    assert_eq!(refused, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_503s_and_dropped_connections_are_told_apart() {
    let server = flaky_server().await;
    let url = format!("{}mixto", server.url);
    // A second of timeout: half the slow answers' 2 s, far above what the others take even
    // on a busy machine, so exactly the slow ones time out.
    let out = run(&[
        "--url",
        &url,
        "-c",
        "10",
        "-n",
        "10",
        "--timeout-ms",
        "1000",
    ])
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_lines(
        &text,
        &[
            "Solicitudes: 100",
            "Exitosas: 80",
            "Fallidas: 20",
            "  tiempo agotado: 10",
            "  HTTP 503: 10",
        ],
    );
    let rows = timeline_rows(&text);
    let column = |i: usize| -> u64 { rows.iter().map(|r| r[i].parse::<u64>().unwrap()).sum() };
    assert_eq!((column(3), column(4)), (10, 10), "{text}");

    let url = hang_up_server().await;
    let out = run(&["--url", &url, "-c", "2", "-n", "5"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_lines(&text, &["Fallidas: 10", "  otro error de conexión: 10"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn open_loop_sends_at_the_rate_and_records_every_sample() {
    let server = flaky_server().await;
    let dir = tempfile::tempdir().unwrap();
    let (csv_path, svg_path) = (dir.path().join("run.csv"), dir.path().join("run.svg"));
    let out = run_with_env(
        &[
            "--url",
            &server.url,
            "--duration",
            "2s",
            "--rate",
            "50",
            "--csv",
            csv_path.to_str().unwrap(),
            "--svg",
            svg_path.to_str().unwrap(),
        ],
        // A clients setting in the environment does not clash with --rate.
        &[("CHECK_CLIENTS", "7")],
    )
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert!(
        text.starts_with(&format!(
            "URL: {} (50 solicitudes/s durante 2s)\n",
            server.url
        )),
        "{text}"
    );
    assert_lines(
        &text,
        &["Solicitudes: 100", "Fallidas: 10", "  HTTP 503: 10"],
    );

    // Sent on a schedule: the server saw them spread over the two seconds, not in a burst.
    let arrivals = server.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 100);
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        spread >= Duration::from_millis(1500) && spread <= Duration::from_secs(3),
        "100 requests at 50/s arrived over {spread:?}"
    );

    // One timeline row per second, each with that second's 50 requests.
    let rows = timeline_rows(&text);
    assert_eq!(rows.len(), 2, "{text}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], i.to_string(), "{text}");
        assert_eq!(row[1], "50", "{text}");
    }

    // The progress line, one a second since stderr is not a terminal.
    let progress = stderr(&out);
    assert!(
        progress
            .lines()
            .any(|l| l.contains(" s | enviadas ") && l.contains("p50 último segundo")),
        "{progress}"
    );

    // The CSV: the header and one parseable row per sample, due every 20 ms.
    assert_lines(
        &text,
        &[
            &format!("CSV: {}", csv_path.display()),
            &format!("SVG: {}", svg_path.display()),
        ],
    );
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "desfase_ms",
            "hora",
            "latencia_ms",
            "resultado",
            "estado_http"
        ]
    );
    let mut failures = 0;
    let mut rows = 0;
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap();
        let offset: f64 = record[0].parse().unwrap();
        assert!((offset - i as f64 * 20.0).abs() < 0.01, "row {i}: {offset}");
        chrono::DateTime::parse_from_rfc3339(&record[1]).unwrap();
        let latency: f64 = record[2].parse().unwrap();
        assert!(latency > 0.0 && latency < 5000.0, "{latency}");
        match (&record[3], &record[4]) {
            ("ok", "") => {}
            ("http", "503") => failures += 1,
            other => panic!("row {i}: {other:?}"),
        }
        rows += 1;
    }
    assert_eq!((rows, failures), (100, 10));

    // The SVG: XML with the ASR line and one mark per failure.
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let asr = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("asr"))
        .expect("the ASR line");
    assert_eq!(asr.tag_name().name(), "line");
    let marks = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("fallo fallo-503"))
        .count();
    assert_eq!(marks, 10);
    assert!(svg.contains(&server.url), "the URL in the title");
    assert!(svg.contains("NO CUMPLE"), "the verdict in the title");
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_loop_for_a_duration() {
    let server = flaky_server().await;
    let out = run(&["--url", &server.url, "-c", "2", "--duration", "1s"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with(&format!("URL: {} (2 clientes durante 1s)\n", server.url)),
        "{text}"
    );
    let total = number_after(&text, "Solicitudes: ") as u64;
    assert_eq!(total, server.hits.load(Ordering::Relaxed), "{text}");
    assert!(total >= 20, "two clients kept sending for a second: {text}");
    assert_eq!(timeline_rows(&text).len(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_in_flight_bound_delays_sends_says_so_and_loses_none() {
    let server = flaky_server().await;
    let url = format!("{}lento", server.url);
    let out = run(&[
        "--url",
        &url,
        "--duration",
        "1s",
        "--rate",
        "20",
        "--max-in-flight",
        "2",
    ])
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_lines(&text, &["Solicitudes: 20", "Exitosas: 20"]);
    assert!(
        stderr(&out).contains("aviso: 2 solicitudes esperan respuesta (--max-in-flight)"),
        "{}",
        stderr(&out)
    );
    let delayed = number_after(&text, "Envíos retrasados por --max-in-flight 2: ");
    assert!(delayed >= 10.0, "{text}");
    // Two at a time, 300 ms each: the last of 20 leaves about 2.7 s in, due at 0.95 s. The wait
    // counts in its latency.
    let max = number_after(&text, "Latencia máxima: ");
    assert!(max > 1000.0, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_usage_exits_2_before_sending_anything() {
    let server = flaky_server().await;
    let url = server.url.as_str();
    let cases: &[&[&str]] = &[
        &["--rate", "10"],
        &["--rate", "0", "--duration", "1s"],
        &["--rate", "-3", "--duration", "1s"],
        &["--duration", "0s"],
        &["--duration", "soon"],
        &["-n", "5", "--duration", "1s"],
        &["-c", "3", "--rate", "5", "--duration", "1s"],
        &["-c", "0"],
        &["--max-in-flight", "0", "--rate", "5", "--duration", "1s"],
        &["--csv", "/nonexistent/dir/run.csv"],
        &["--svg", "/nonexistent/dir/run.svg"],
    ];
    for args in cases {
        let mut all = vec!["--url", url];
        all.extend_from_slice(args);
        let out = run(&all).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("error"), "{args:?}: {}", stderr(&out));
    }
    let out = run(&["--url", "no es una url"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(server.hits.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_the_run_and_still_reports_and_records_it() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let server = flaky_server().await;
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("run.csv");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_availability-check"))
        .args(["--url", &server.url, "--duration", "60s", "--rate", "20"])
        .arg("--csv")
        .arg(&csv_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first progress line is out, the run is under way.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(" | enviadas ") {
                return;
            }
        }
        panic!("availability-check ended before its first progress line");
    })
    .await
    .expect("a progress line within 10 s");
    let pid = child.id().unwrap() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("stops after Ctrl-C")
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("\nInterrumpida con Ctrl-C a los "), "{text}");
    let total = number_after(&text, "Solicitudes: ") as usize;
    assert!((20..600).contains(&total), "{text}");
    // Everything sent was answered and counted, and the CSV has every one of them.
    assert_eq!(total as u64, server.hits.load(Ordering::Relaxed), "{text}");
    let rows = csv::Reader::from_path(&csv_path).unwrap().records().count();
    assert_eq!(rows, total);
    // The timeline ends where the run did, not at the planned minute.
    assert!(timeline_rows(&text).len() < 30, "{text}");
}
