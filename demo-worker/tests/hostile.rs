//! Malformed and hostile messages on the queue, against a real `demo-worker` process with the
//! default settings (`MAX_MESSAGE_BYTES` 1 MiB): text that is not JSON, JSON that is not an
//! envelope, missing and mistyped fields, bad base64, content types we do not read, messages
//! over the size limit, JSON nested 100 000 levels deep (in the envelope, the body, the
//! kwargs), invalid UTF-8, unknown task names, out-of-range numbers.
//!
//! What it proves, batch by batch, with every message pushed onto both the plain list (Celery's
//! default priority, where the health pings go) and the business list:
//!
//! - the worker process neither dies nor stalls: a health ping (`obtener_estado`), sent behind
//!   each batch, is answered;
//! - nothing vanishes: every injected message ends in `rcelery:quarantine` (with the reason,
//!   and the message as it was received) or with a stored result (unknown names fail with
//!   `NotRegistered`, as Celery stores them; a few odd but valid messages simply run), and
//!   `quarantined + failed + ran == injected`; no message stays queued or held;
//! - every quarantine record is UTF-8 JSON that [`shared::Broker::quarantined`] can read.
//!
//! The broker-level quarantine at fetch time is tested in `broker.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Map, Value};
use shared::broker::{QuarantineEntry, DEFAULT_MAX_MESSAGE_BYTES};
use shared::protocol::task::NewTask;
use shared::protocol::{TaskMessage, TaskState};
use shared::worker::BUSINESS_PRIORITY;
use shared::{keys, SendOptions};
use testkit::demo::spawn_demo_worker;
use testkit::queue::{cmd, held_anywhere, Stack, QUEUE};
use testkit::Process;
use testkit::{eventually, start_redis};

/// What must become of an injected message.
#[derive(Debug, Clone)]
enum Expect {
    /// In quarantine, with a reason containing this text.
    Quarantine(&'static str),
    /// A FAILURE result with this exception type and message.
    Failure {
        id: String,
        exc_type: &'static str,
        message: String,
    },
    /// Odd but valid: it runs, and its SUCCESS result holds this value.
    Success { id: String, value: Value },
}

/// One hostile message.
struct Case {
    name: String,
    raw: Vec<u8>,
    expect: Expect,
}

/// A message that must end in quarantine with a reason containing `reason`.
fn q(name: &str, raw: impl AsRef<[u8]>, reason: &'static str) -> Case {
    Case {
        name: name.to_owned(),
        raw: raw.as_ref().to_vec(),
        expect: Expect::Quarantine(reason),
    }
}

/// A well-formed message, as `send_task` writes it, as JSON to mutate; and its task id.
fn envelope(task: &str, args: Vec<Value>) -> (String, Value) {
    let message = TaskMessage::build(
        task,
        args,
        Map::new(),
        QUEUE,
        "hostile@test",
        "",
        NewTask::default(),
    );
    let value = serde_json::from_str(&message.encode()).expect("our own message is JSON");
    (message.id, value)
}

/// A `noop` message changed by `change`, as bytes.
fn noop_with(change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let (_, mut v) = envelope("noop", vec![json!(1)]);
    change(&mut v);
    serde_json::to_vec(&v).expect("JSON")
}

/// A `noop` message whose body is `payload` (raw bytes, base64-encoded here).
fn noop_body(payload: impl AsRef<[u8]>) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(payload);
    noop_with(|v| v["body"] = json!(body))
}

/// The marker that [`splice`] replaces; set it where raw bytes should go.
const HOLE: &str = "@@hostile@@";

/// `v` as JSON text, with the string `"@@hostile@@"` (quotes included) replaced by `raw`:
/// for what a JSON value cannot hold (invalid UTF-8, numbers out of range, deep nesting).
fn splice(v: &Value, raw: &[u8]) -> Vec<u8> {
    let text = serde_json::to_vec(v).expect("JSON");
    let hole = format!("\"{HOLE}\"");
    let at = text
        .windows(hole.len())
        .position(|w| w == hole.as_bytes())
        .expect("the marker is in the message");
    [&text[..at], raw, &text[at + hole.len()..]].concat()
}

/// A `noop` message with `field` (a JSON pointer's parent object and key) set to raw bytes.
fn noop_raw(parent: &str, key: &str, raw: &[u8]) -> Vec<u8> {
    let (_, mut v) = envelope("noop", vec![json!(1)]);
    v.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent object")
        .insert(key.to_owned(), json!(HOLE));
    splice(&v, raw)
}

/// `[[[...]]]`, `depth` levels.
fn nested_arrays(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

/// `{"a": {"a": ... {}}}`, `depth` levels.
fn nested_objects(depth: usize) -> String {
    "{\"a\": ".repeat(depth - 1) + "{}" + &"}".repeat(depth - 1)
}

/// A message of exactly `size` bytes (`size` > a few hundred): a valid `noop` padded with a
/// header.
fn of_size(size: usize) -> Vec<u8> {
    let bare = noop_with(|v| v["headers"]["pad"] = json!(""));
    let raw = noop_with(|v| v["headers"]["pad"] = json!("p".repeat(size - bare.len())));
    assert_eq!(raw.len(), size);
    raw
}

/// Unknown task names: stored as FAILURE `NotRegistered(name)`, as Celery stores them.
fn not_registered(name: &str, task: &str) -> Case {
    let (id, v) = envelope(task, vec![]);
    Case {
        name: name.to_owned(),
        raw: serde_json::to_vec(&v).expect("JSON"),
        expect: Expect::Failure {
            id,
            exc_type: "NotRegistered",
            message: task.to_owned(),
        },
    }
}

/// The batches, in the order they are sent. `copy` tells the two copies of a batch apart
/// (one per list), so that every injected message is unique where it can be.
fn batch(name: &str, copy: usize) -> Vec<Case> {
    match name {
        "not JSON" => vec![
            q("garbage", format!("{{{{{{ not json {copy}"), "not JSON"),
            q("empty", "", "not JSON"),
            q("bare word", format!("hostile-{copy}"), "not JSON"),
            q("control bytes", format!("\0\x01\x02 {copy}"), "not JSON"),
            q("truncated", {
                let mut raw = noop_with(|_| {});
                raw.truncate(raw.len() / 2);
                raw
            }, "not JSON"),
            q("array", format!("[1, 2, \"hostile-{copy}\"]"), "delivery_tag"),
            q("string", format!("\"hostile-{copy}\""), "not a JSON object"),
            q("number", format!("{copy}"), "not a JSON object"),
            q("null", "null", "not a JSON object"),
        ],
        "envelope fields" => vec![
            q("no delivery_tag", noop_with(|v| {
                v["properties"].as_object_mut().unwrap().remove("delivery_tag");
            }), "delivery_tag"),
            // The fetch script reads a plainly written tag without decoding; the worker's
            // decoder catches a tag that was not properties.delivery_tag.
            q("delivery_tag only in the headers", noop_with(|v| {
                v["properties"].as_object_mut().unwrap().remove("delivery_tag");
                v["headers"]["delivery_tag"] = json!(format!("decoy-only-{copy}"));
            }), "delivery_tag"),
            q("the real delivery_tag escaped, a decoy in the headers", {
                let raw = noop_with(|v| v["headers"]["delivery_tag"] = json!(format!("decoy-escaped-{copy}")));
                let raw = String::from_utf8(raw).unwrap();
                let at = raw.rfind("\"delivery_tag\"").unwrap();
                format!("{}\"delivery\\u005ftag\"{}", &raw[..at], &raw[at + 14..])
            }, "not the tag"),
            q("delivery_tag a number", noop_with(|v| v["properties"]["delivery_tag"] = json!(7)), "delivery_tag"),
            q("delivery_tag empty", noop_with(|v| v["properties"]["delivery_tag"] = json!("")), "delivery_tag"),
            q("properties a string", noop_with(|v| v["properties"] = json!("hostile")), "delivery_tag"),
            q("empty object", format!("{{\"hostile\": {copy}}}"), "delivery_tag"),
            q("no headers", noop_with(|v| {
                v.as_object_mut().unwrap().remove("headers");
            }), "headers.task"),
            q("headers a string", noop_with(|v| v["headers"] = json!("hostile")), "field headers"),
            q("no task", noop_with(|v| {
                v["headers"].as_object_mut().unwrap().remove("task");
            }), "headers.task"),
            q("no id", noop_with(|v| {
                v["headers"].as_object_mut().unwrap().remove("id");
            }), "headers.id"),
            q("task a number", noop_with(|v| v["headers"]["task"] = json!(12)), "headers.task"),
            q("task empty", noop_with(|v| v["headers"]["task"] = json!("")), "headers.task"),
            q("id a list", noop_with(|v| v["headers"]["id"] = json!([1])), "headers.id"),
            q("no body", noop_with(|v| {
                v.as_object_mut().unwrap().remove("body");
            }), "body"),
            q("body a number", noop_with(|v| v["body"] = json!(12)), "body"),
            q("pickle", noop_with(|v| v["content-type"] = json!("application/x-python-serialize")), "content-type"),
            q("yaml", noop_with(|v| v["content-type"] = json!("application/x-yaml")), "content-type"),
            q("eta not a date", noop_with(|v| v["headers"]["eta"] = json!("not a date")), "headers.eta"),
            q("expires a number", noop_with(|v| v["headers"]["expires"] = json!(42)), "headers.expires"),
            q("retries negative", noop_with(|v| v["headers"]["retries"] = json!(-1)), "headers.retries"),
            q("retries 1e400", noop_raw("/headers", "retries", b"1e400"), "out of range"),
            q("timelimit a string", noop_with(|v| v["headers"]["timelimit"] = json!("x")), "headers.timelimit"),
            q("timelimit negative", noop_with(|v| v["headers"]["timelimit"] = json!([-1, null])), "headers.timelimit"),
            q("lone surrogate escape", noop_raw("/headers", "task", br#""\ud800""#), "JSON"),
        ],
        "body" => vec![
            q("bad base64", noop_with(|v| v["body"] = json!("%%% not base64 %%%")), "base64"),
            q("body not JSON", noop_body("not json"), "body is not a JSON array"),
            q("body an object", noop_body(r#"{"a": 1}"#), "expected an array"),
            q("body of 2", noop_body("[[], {}]"), "expected 3 elements"),
            q("args a string", noop_body(r#"["hostile", {}, {}]"#), "args"),
            q("kwargs an array", noop_body("[[], [], {}]"), "kwargs"),
            q("embed a number", noop_body("[[], {}, 5]"), "embed"),
            q("body invalid UTF-8", noop_body(b"[[\"\xff\xfe\"], {}, {}]"), "body"),
            q("body lone surrogate", noop_body(r#"[["\ud800"], {}, {}]"#), "body"),
        ],
        "size" => vec![
            q("5 MB", noop_with(|v| {
                let args = format!("[[\"{}\"], {{}}, {{}}]", "A".repeat(5 << 20));
                v["body"] = json!(base64::engine::general_purpose::STANDARD.encode(args));
            }), "over the limit"),
            q("limit + 1 byte", of_size(DEFAULT_MAX_MESSAGE_BYTES + 1), "over the limit"),
            q("limit + 1 byte, invalid UTF-8", noop_raw("/headers", "pad", &[b"\"".as_slice(), &b"\xff".repeat(DEFAULT_MAX_MESSAGE_BYTES), b"\""].concat()), "over the limit"),
        ],
        "nesting" => vec![
            q("100 000 levels", nested_arrays(100_000), "not JSON"),
            // Its tag reads plainly, so the fetch script takes it without decoding it (as it
            // takes every well-formed message) and the worker's decoder rejects it.
            q("100 000 levels in a field", noop_raw("", "hostile", nested_arrays(100_000).as_bytes()), "recursion limit"),
            q("500 levels in a field", noop_raw("", "hostile", nested_arrays(500).as_bytes()), "recursion limit"),
            q("500 levels in a header", noop_raw("/headers", "kwargsrepr", nested_objects(500).as_bytes()), "recursion limit"),
            q("body of 100 000 levels", noop_body(nested_arrays(100_000)), "recursion limit"),
            q("args of 100 000 levels", noop_body(format!("[[{}], {{}}, {{}}]", nested_arrays(100_000))), "recursion limit"),
            q("kwargs of 100 000 levels", noop_body(format!("[[], {{\"k\": {}}}, {{}}]", nested_arrays(100_000))), "recursion limit"),
            q("kwargs of 100 000 objects", noop_body(format!("[[], {}, {{}}]", nested_objects(100_000))), "recursion limit"),
        ],
        "invalid UTF-8" => vec![
            // Every kind of bad sequence, between good ones: the record shows each maximal
            // bad sequence as one U+FFFD, exactly as Rust's from_utf8_lossy does.
            q("raw bytes", [
                b"\xff\xfe \xe0\x80 \xf4\x90\x80\x80 \xc3\xa9\x80 \xf0\x9f\x92\xa5 \x80\x80 \xe2\x82 ".as_slice(),
                copy.to_string().as_bytes(),
            ].concat(), "UTF-8"),
            q("in the task name", noop_raw("/headers", "task", b"\"no\xff\xfeop\""), "UTF-8"),
            q("overlong in the tag", noop_raw("/properties", "delivery_tag", b"\"tag-\xc0\xaf\""), "UTF-8"),
            q("surrogate in argsrepr", noop_raw("/headers", "argsrepr", b"\"[\xed\xa0\x80]\""), "UTF-8"),
            q("truncated sequence", noop_raw("/headers", "kwargsrepr", b"\"{\xf0\x9f\x92}\""), "UTF-8"),
        ],
        "unknown tasks" => vec![
            not_registered("unknown", "no_such_task"),
            not_registered("a Celery built-in", "celery.backend_cleanup"),
            not_registered("a path", "../../etc/passwd"),
            not_registered("not ASCII", "tarea_ñ_💥"),
            not_registered("10 000 characters", &"x".repeat(10_000)),
            // Two messages sharing one delivery tag: the first runs (a second long, so it is
            // still held when the second is fetched); the second would share its records, and
            // be dropped when either is settled, so it goes to quarantine.
            {
                let (id, mut v) = envelope("sleep", vec![json!(1000)]);
                v["properties"]["delivery_tag"] = json!(format!("shared-tag-{copy}"));
                Case {
                    name: "shared tag, first".into(),
                    raw: serde_json::to_vec(&v).unwrap(),
                    expect: Expect::Success { id, value: json!(1000) },
                }
            },
            {
                let mut second = not_registered("shared tag, second", "no_such_task");
                let mut v: Value = serde_json::from_slice(&second.raw).unwrap();
                v["properties"]["delivery_tag"] = json!(format!("shared-tag-{copy}"));
                second.raw = serde_json::to_vec(&v).unwrap();
                second.expect = Expect::Quarantine("already held");
                second
            },
        ],
        "odd but valid" => {
            // Time limits too large for any clock, an eta long past, unknown fields: they run.
            let mut cases = Vec::new();
            for (name, change) in [
                ("hard time limit 1e300", json!([1e300, null])),
                ("time limits 1e20", json!([1e20, 1e20])),
            ] {
                let (id, mut v) = envelope("noop", vec![json!(name)]);
                v["headers"]["timelimit"] = change;
                cases.push(Case {
                    name: name.to_owned(),
                    raw: serde_json::to_vec(&v).unwrap(),
                    expect: Expect::Success { id, value: json!(name) },
                });
            }
            let (id, mut v) = envelope("noop", vec![json!("eta in 1970")]);
            v["headers"]["eta"] = json!("1970-01-01T00:00:00+00:00");
            v["headers"]["hostile"] = json!({"unknown": [1, 2, 3]});
            v["hostile"] = json!(copy);
            cases.push(Case {
                name: "eta in 1970, unknown fields".into(),
                raw: serde_json::to_vec(&v).unwrap(),
                expect: Expect::Success { id, value: json!("eta in 1970") },
            });
            cases
        }
        other => panic!("no batch {other}"),
    }
}

const BATCHES: [&str; 8] = [
    "not JSON",
    "envelope fields",
    "body",
    "size",
    "nesting",
    "invalid UTF-8",
    "unknown tasks",
    "odd but valid",
];

/// Sends a health ping on the plain list (behind whatever hostile messages wait there) and
/// returns how long its answer took.
async fn ping(stack: &Stack, worker: &mut Process) -> Duration {
    let sent = Instant::now();
    let answer = stack
        .client
        .apply("obtener_estado", vec![], Map::new(), SendOptions::default())
        .await
        .expect("send the ping")
        .wait(Duration::from_secs(30))
        .await;
    let meta = answer.unwrap_or_else(|e| {
        worker.assert_alive();
        panic!(
            "the ping was not answered within 30 s ({e}); worker log ends with:\n{}",
            worker.log_tail(10)
        )
    });
    assert_eq!(meta.status, TaskState::Success, "{meta:?}");
    assert_eq!(meta.result["estado"], "OK", "{meta:?}");
    sent.elapsed()
}

/// The quarantine list, oldest first, each record parsed (and required to be UTF-8 JSON).
async fn quarantine_records(stack: &Stack) -> Vec<QuarantineEntry> {
    let raw: Vec<Vec<u8>> = cmd(
        &stack.redis,
        redis::cmd("LRANGE")
            .arg(keys::QUARANTINE)
            .arg(0)
            .arg(-1)
            .clone(),
    )
    .await;
    raw.iter()
        .rev()
        .map(|r| {
            let text = std::str::from_utf8(r).unwrap_or_else(|e| {
                panic!(
                    "a quarantine record is not UTF-8 ({e}): {}",
                    String::from_utf8_lossy(&r[..r.len().min(300)])
                )
            });
            serde_json::from_str(text).unwrap_or_else(|e| {
                panic!(
                    "a quarantine record is not a record ({e}): {}",
                    &text[..text.len().min(300)]
                )
            })
        })
        .collect()
}

/// Whether every message of the batches sent so far has settled: nothing queued or held,
/// `quarantined` records, and a result for every id in `results`.
async fn settled(stack: &Stack, quarantined: usize, results: &[String]) -> bool {
    let queued = stack.client.broker().queue_len(QUEUE).await.expect("LLEN");
    let (unacked, index, inflight, in_quarantine) = held_anywhere(&stack.redis).await;
    if queued > 0 || unacked > 0 || index > 0 || !inflight.is_empty() {
        return false;
    }
    if in_quarantine != quarantined {
        return false;
    }
    let mut exists = redis::cmd("EXISTS");
    for id in results {
        exists.arg(keys::result_key(id));
    }
    results.is_empty() || cmd::<usize>(&stack.redis, exists).await == results.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_messages_are_quarantined_or_failed_and_pings_are_answered_throughout() {
    tokio::time::timeout(Duration::from_secs(300), hostile_messages())
        .await
        .expect("the test takes under 300 s");
}

async fn hostile_messages() {
    let stack = Stack::on(start_redis(false).await);
    let logs = tempfile::tempdir().expect("log directory");
    // The defaults: MAX_MESSAGE_BYTES 1 MiB, the main lane and the health slots.
    let mut worker = spawn_demo_worker(&stack.server.url(), "hostile@test", &[], logs.path());
    let first = ping(&stack, &mut worker).await;
    println!("hostile: worker up, first ping answered in {first:.1?}");

    let started = Instant::now();
    let lists = [
        keys::queue_list(QUEUE, 0),
        keys::queue_list(QUEUE, BUSINESS_PRIORITY),
    ];
    let mut injected: Vec<(String, Case)> = Vec::new();
    let mut expected_quarantined = 0;
    let mut expected_results: Vec<String> = Vec::new();
    let mut pings = Vec::new();
    for name in BATCHES {
        let mut in_batch = 0;
        for (copy, list) in lists.iter().enumerate() {
            for case in batch(name, copy) {
                let _: usize = cmd(
                    &stack.redis,
                    redis::cmd("LPUSH").arg(list).arg(&case.raw).clone(),
                )
                .await;
                match &case.expect {
                    Expect::Quarantine(_) => expected_quarantined += 1,
                    Expect::Failure { id, .. } | Expect::Success { id, .. } => {
                        expected_results.push(id.clone())
                    }
                }
                in_batch += 1;
                injected.push((format!("{name} / {} (list {copy})", case.name), case));
            }
        }
        let answered = ping(&stack, &mut worker).await;
        pings.push(answered);
        let done = eventually(Duration::from_secs(60), Duration::from_millis(20), || {
            settled(&stack, expected_quarantined, &expected_results)
        })
        .await;
        if !done {
            let records = quarantine_records(&stack).await;
            panic!(
                "batch {name:?} did not settle within 60 s: queued {}, held {:?}, {} of {expected_quarantined} \
                 quarantined (last reasons: {:?}); worker log ends with:\n{}",
                stack.client.broker().queue_len(QUEUE).await.unwrap_or(0),
                held_anywhere(&stack.redis).await,
                records.len(),
                records.iter().rev().take(3).map(|r| &r.reason).collect::<Vec<_>>(),
                worker.log_tail(10),
            );
        }
        worker.assert_alive();
        println!(
            "hostile: batch {name:?}: {in_batch} messages settled; ping behind them answered in {answered:.1?}"
        );
    }
    let seconds = started.elapsed().as_secs_f64();

    // Account for every message: its quarantine record (matched by content, as received;
    // invalid UTF-8 shown as U+FFFD) or its result.
    let records = quarantine_records(&stack).await;
    let mut by_message: HashMap<String, Vec<String>> = HashMap::new();
    for r in &records {
        by_message
            .entry(r.message.clone())
            .or_default()
            .push(r.reason.clone());
    }
    let mut problems = Vec::new();
    let (mut quarantined, mut failed, mut ran) = (0, 0, 0);
    for (name, case) in &injected {
        match &case.expect {
            Expect::Quarantine(needle) => {
                let text = String::from_utf8_lossy(&case.raw).into_owned();
                match by_message.get_mut(&text).and_then(Vec::pop) {
                    Some(reason) if reason.contains(needle) => quarantined += 1,
                    Some(reason) => {
                        quarantined += 1;
                        problems.push(format!("{name}: reason {reason:?} lacks {needle:?}"))
                    }
                    None => problems.push(format!("{name}: not in quarantine")),
                }
            }
            Expect::Failure {
                id,
                exc_type,
                message,
            } => {
                let meta = stack.client.backend().get(id).await.expect("GET result");
                let exc = meta.exception();
                if meta.status == TaskState::Failure
                    && exc
                        .as_ref()
                        .is_some_and(|e| e.exc_type == *exc_type && e.message() == *message)
                {
                    failed += 1;
                } else {
                    problems.push(format!("{name}: expected {exc_type}, stored {meta:?}"));
                }
            }
            Expect::Success { id, value } => {
                let meta = stack.client.backend().get(id).await.expect("GET result");
                if meta.status == TaskState::Success && meta.result == *value {
                    ran += 1;
                } else {
                    problems.push(format!("{name}: expected SUCCESS {value}, stored {meta:?}"));
                }
            }
        }
    }
    let unexpected: Vec<&String> = by_message
        .iter()
        .filter(|(_, reasons)| !reasons.is_empty())
        .map(|(message, _)| message)
        .collect();
    for message in &unexpected {
        problems.push(format!(
            "unexpected quarantine record: {}",
            &message[..message.len().min(200)]
        ));
    }
    // The worker logged each quarantine it made (at fetch, or when decoding).
    let logged = worker
        .json_log()
        .iter()
        .filter(|v| v["message"] == "malformed message moved to quarantine")
        .count();
    let read_back = stack
        .client
        .broker()
        .quarantined(records.len() + 1)
        .await
        .map(|r| r.len());
    let slowest = pings.iter().max().copied().unwrap_or_default();
    println!(
        "hostile: injected={} quarantined={quarantined} failed={failed} ran={ran} lost={} \
         pings={} slowest_ping_ms={:.1} quarantine_logged={logged} seconds={seconds:.1}",
        injected.len(),
        injected.len() - quarantined - failed - ran,
        pings.len() + 1,
        slowest.as_secs_f64() * 1000.0,
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        quarantined + failed + ran,
        injected.len(),
        "nothing vanishes"
    );
    assert_eq!(records.len(), quarantined, "no other quarantine record");
    assert_eq!(logged, quarantined, "the worker logged every quarantine");
    assert_eq!(
        read_back.as_ref().ok(),
        Some(&quarantined),
        "Broker::quarantined reads every record: {read_back:?}"
    );

    // Still the same healthy process: it stops cleanly, and nothing made it panic.
    worker.signal(libc::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit 0 after SIGTERM"
    );
    let log = worker.log();
    assert!(!log.contains("panicked"), "the worker panicked:\n{log}");
}
