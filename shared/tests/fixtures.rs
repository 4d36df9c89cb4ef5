//! The protocol layer against real Celery 5.5.3 / kombu 5.5.4 traffic.
//!
//! The fixtures in `tests/fixtures/` (their README says where they came from) are
//! `redis-cli MONITOR` captures of a Python client and worker. Everything Celery wrote there must decode in ours, and what our
//! encoder writes for the same inputs must match what Celery wrote. No Redis is needed: the
//! captures are read as files.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use shared::keys;
use shared::protocol::result::ExceptionInfo;
use shared::protocol::task::NewTask;
use shared::protocol::{
    parse_datetime, to_python_json, Envelope, ProtocolError, ResultMeta, TaskMessage, TaskState,
    TimeLimit, WorkerEvent,
};
use shared::worker::canvas;

// ---------------------------------------------------------------------------------------------
// Reading the captures
// ---------------------------------------------------------------------------------------------

/// One command as MONITOR printed it.
#[derive(Debug, Clone)]
struct MonitorLine {
    db: u32,
    client: String,
    /// Upper-cased, since commands run from Lua are printed in lower case.
    command: String,
    args: Vec<Vec<u8>>,
}

impl MonitorLine {
    fn arg_str(&self, i: usize) -> &str {
        std::str::from_utf8(&self.args[i]).expect("argument is UTF-8")
    }
}

/// Parses one MONITOR line: `[<ts> ][<db> <client>] "CMD" "arg" ...`. Blank lines give `None`.
/// Arguments are in Redis's `sdscatrepr` form, so the escapes undone here are exactly the ones
/// it produces: `\\ \" \n \r \t \a \b \xHH`.
fn parse_monitor_line(line: &str) -> Result<Option<MonitorLine>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let mut rest = line;
    // The wire capture keeps the leading unix timestamp; the lifecycle one dropped it.
    if rest.starts_with(|c: char| c.is_ascii_digit()) {
        let (ts, tail) = rest
            .split_once(' ')
            .ok_or_else(|| format!("timestamp without anything after it: {line:?}"))?;
        ts.parse::<f64>()
            .map_err(|_| format!("bad timestamp {ts:?} in {line:?}"))?;
        rest = tail;
    }
    let rest = rest
        .strip_prefix('[')
        .ok_or_else(|| format!("expected '[db client]': {line:?}"))?;
    let (origin, rest) = rest
        .split_once("] ")
        .ok_or_else(|| format!("unterminated '[db client]': {line:?}"))?;
    let (db, client) = origin
        .split_once(' ')
        .ok_or_else(|| format!("expected 'db client' in brackets: {line:?}"))?;
    let db = db
        .parse::<u32>()
        .map_err(|_| format!("bad db {db:?}: {line:?}"))?;

    let bytes = rest.as_bytes();
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            return Err(format!("expected '\"' at byte {i} of {rest:?}"));
        }
        i += 1;
        let mut word = Vec::new();
        loop {
            let Some(&b) = bytes.get(i) else {
                return Err(format!("unterminated string in {line:?}"));
            };
            i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let esc = *bytes
                        .get(i)
                        .ok_or_else(|| format!("dangling backslash in {line:?}"))?;
                    i += 1;
                    word.push(match esc {
                        b'\\' => b'\\',
                        b'"' => b'"',
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'a' => 0x07,
                        b'b' => 0x08,
                        b'x' => {
                            let hex = bytes
                                .get(i..i + 2)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                                .ok_or_else(|| format!("bad \\x escape in {line:?}"))?;
                            i += 2;
                            hex
                        }
                        other => {
                            return Err(format!("unknown escape \\{} in {line:?}", other as char))
                        }
                    });
                }
                other => word.push(other),
            }
        }
        words.push(word);
        match bytes.get(i) {
            None => {}
            Some(b' ') => i += 1,
            Some(_) => return Err(format!("expected a space after an argument in {line:?}")),
        }
    }
    let mut words = words.into_iter();
    let command = words
        .next()
        .ok_or_else(|| format!("no command in {line:?}"))?;
    let command = String::from_utf8(command)
        .map_err(|_| format!("command is not UTF-8 in {line:?}"))?
        .to_ascii_uppercase();
    Ok(Some(MonitorLine {
        db,
        client: client.to_owned(),
        command,
        args: words.collect(),
    }))
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

const WIRE: &str = "celery-5.5-redis-wire.txt";
const LIFECYCLE: &str = "celery-5.5-redis-worker-lifecycle.txt";

/// All commands of a capture. A missing file is a hard failure, not a skipped test: without
/// the captures these tests would prove nothing.
fn capture(name: &str) -> Vec<MonitorLine> {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} cannot be read ({e}); the captures live in shared/tests/fixtures",
            path.display()
        )
    });
    let lines: Vec<MonitorLine> = text
        .lines()
        .enumerate()
        .filter_map(|(n, l)| {
            parse_monitor_line(l).unwrap_or_else(|e| panic!("{name}:{}: {e}", n + 1))
        })
        .collect();
    assert!(!lines.is_empty(), "fixture {name} has no commands");
    lines
}

/// Whether an LPUSH key is a task queue list (not a pidbox reply list or an event queue).
fn is_task_queue_list(key: &str) -> bool {
    let queue = keys::queue_of_list(key);
    !queue.ends_with(".pidbox") && !queue.starts_with("celeryev.")
}

/// Every task message LPUSHed in a capture: (list key, raw message).
fn task_pushes(lines: &[MonitorLine]) -> Vec<(String, Vec<u8>)> {
    lines
        .iter()
        .filter(|l| l.command == "LPUSH" && is_task_queue_list(l.arg_str(0)))
        .flat_map(|l| {
            let key = l.arg_str(0).to_owned();
            l.args[1..].iter().map(move |m| (key.clone(), m.clone()))
        })
        .collect()
}

fn all_task_pushes() -> Vec<(String, Vec<u8>)> {
    let mut out = task_pushes(&capture(WIRE));
    out.extend(task_pushes(&capture(LIFECYCLE)));
    out
}

/// Every stored or published result: (command, key or channel, raw JSON).
fn result_writes(lines: &[MonitorLine]) -> Vec<(String, String, Vec<u8>)> {
    lines
        .iter()
        .filter_map(|l| {
            let (key, raw) = match l.command.as_str() {
                "SETEX" => (l.arg_str(0), &l.args[2]),
                "PUBLISH" => (l.arg_str(0), &l.args[1]),
                _ => return None,
            };
            key.starts_with(keys::RESULT_KEY_PREFIX)
                .then(|| (l.command.clone(), key.to_owned(), raw.clone()))
        })
        .collect()
}

/// Every worker event published: (channel, raw envelope).
fn worker_event_publishes(lines: &[MonitorLine]) -> Vec<(String, Vec<u8>)> {
    lines
        .iter()
        .filter(|l| l.command == "PUBLISH" && l.arg_str(0).starts_with("/0.celeryev/worker."))
        .map(|l| (l.arg_str(0).to_owned(), l.args[1].clone()))
        .collect()
}

fn json_of(raw: &[u8]) -> Value {
    serde_json::from_slice(raw).expect("captured JSON parses")
}

fn key_set(m: &Map<String, Value>) -> BTreeSet<String> {
    m.keys().cloned().collect()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    parse_datetime(s).unwrap_or_else(|| panic!("{s:?} is a valid time"))
}

// ---------------------------------------------------------------------------------------------
// What the captures are known to contain
// ---------------------------------------------------------------------------------------------

struct ExpectedTask {
    id: &'static str,
    task: &'static str,
    args: Value,
    kwargs: Value,
    priority: u8,
    delivery_tag: &'static str,
    eta: Option<&'static str>,
    expires: Option<&'static str>,
    expiration: Option<&'static str>,
    origin: &'static str,
    reply_to: &'static str,
}

fn expected_tasks() -> Vec<ExpectedTask> {
    vec![
        ExpectedTask {
            id: "93a93263-c6f4-46e9-b1a6-b87aeee557bd",
            task: "noop",
            args: json!([7]),
            kwargs: json!({}),
            priority: 5,
            delivery_tag: "caf40eb4-f446-413f-b84c-e701ae801481",
            eta: None,
            expires: None,
            expiration: None,
            origin: "gen4067@vm",
            reply_to: "1dcf9b75-ba15-31e6-9328-361593520c9b",
        },
        ExpectedTask {
            id: "cae93c57-9e9f-4337-9f50-288d772f51ff",
            task: "no_such_task",
            args: json!([1, "a"]),
            kwargs: json!({"k": [1, 2]}),
            priority: 0,
            delivery_tag: "fb1a6c69-70fb-47d9-8078-714329e6615b",
            eta: None,
            expires: None,
            expiration: None,
            origin: "gen4067@vm",
            reply_to: "1dcf9b75-ba15-31e6-9328-361593520c9b",
        },
        ExpectedTask {
            id: "57d2cd08-979b-4527-95db-7f9a213cbf42",
            task: "obtener_estado",
            args: json!([]),
            kwargs: json!({}),
            priority: 0,
            delivery_tag: "397fbe0e-0a16-4c1c-a407-65c521da4296",
            eta: Some("2026-11-23T04:49:25.690447+00:00"),
            expires: Some("2026-11-23T04:50:24.690447+00:00"),
            expiration: Some("60000"),
            origin: "gen10144@vm",
            reply_to: "b647a78d-4806-36e4-be54-4df76aecd716",
        },
    ]
}

fn expected_task(id: &str) -> ExpectedTask {
    expected_tasks()
        .into_iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("captured task {id} is not in the expectation table"))
}

/// The captured message of `id`, raw.
fn captured_task(id: &str) -> Vec<u8> {
    all_task_pushes()
        .into_iter()
        .map(|(_, raw)| raw)
        .find(|raw| json_of(raw)["headers"]["id"] == id)
        .unwrap_or_else(|| panic!("task {id} not found in the captures"))
}

const NOOP_ID: &str = "93a93263-c6f4-46e9-b1a6-b87aeee557bd";

// ---------------------------------------------------------------------------------------------
// The MONITOR parser itself
// ---------------------------------------------------------------------------------------------

#[test]
fn monitor_parser_undoes_redis_escapes() {
    let line = r#"1795406755.356361 [3 127.0.0.1:41748] "lpush" "q\x06\x163" "{\"a\": \"b\\\\c\"}\n\r\t\a\b" """#;
    let l = parse_monitor_line(line).unwrap().unwrap();
    assert_eq!(l.db, 3);
    assert_eq!(l.client, "127.0.0.1:41748");
    assert_eq!(l.command, "LPUSH");
    assert_eq!(l.args.len(), 3);
    assert_eq!(l.args[0], b"q\x06\x163");
    assert_eq!(l.args[1], b"{\"a\": \"b\\\\c\"}\n\r\t\x07\x08");
    assert_eq!(l.args[2], b"");

    let lua = parse_monitor_line(r#"[0 lua] "get" "unacked_mutex""#)
        .unwrap()
        .unwrap();
    assert_eq!((lua.client.as_str(), lua.command.as_str()), ("lua", "GET"));

    assert!(parse_monitor_line("").unwrap().is_none());
    assert!(parse_monitor_line(r#"[0 x] "GET" "open"#).is_err());
    assert!(parse_monitor_line(r#"[0 x] "GET" "\q""#).is_err());
    assert!(parse_monitor_line(r#"[0 x] "GET" "\x4""#).is_err());
    assert!(parse_monitor_line(r#"no brackets "GET""#).is_err());
}

#[test]
fn captures_parse_completely() {
    let wire = capture(WIRE);
    let life = capture(LIFECYCLE);
    assert_eq!(wire.len(), 4);
    assert!(
        life.len() > 100,
        "lifecycle capture has {} lines",
        life.len()
    );
    assert!(wire.iter().chain(&life).all(|l| l.db == 0));
    // The priority separator comes out as the raw bytes 0x06 0x16.
    assert_eq!(wire[0].args[0], b"inventario\x06\x163");
    // The consumer polls all four priority lists in kombu's order.
    let brpop = life
        .iter()
        .find(|l| l.command == "BRPOP" && l.arg_str(0) == "inventario")
        .expect("worker BRPOP on inventario");
    let polled: Vec<&str> = (0..4).map(|i| brpop.arg_str(i)).collect();
    assert_eq!(polled, keys::queue_lists("inventario"));
    // kombu's binding is what keys::binding produces.
    let (set, member) = keys::binding("inventario");
    assert!(life
        .iter()
        .any(|l| l.command == "SADD" && l.arg_str(0) == set && l.args[1] == member.as_bytes()));
}

// ---------------------------------------------------------------------------------------------
// Task messages
// ---------------------------------------------------------------------------------------------

#[test]
fn every_captured_task_message_decodes() {
    let pushes = all_task_pushes();
    assert_eq!(
        pushes.len(),
        3,
        "two tasks in the wire capture, one in the lifecycle"
    );
    let mut seen = BTreeSet::new();
    for (key, raw) in &pushes {
        let msg = TaskMessage::decode(raw)
            .unwrap_or_else(|e| panic!("captured task on {key:?} does not decode: {e}"));
        let exp = expected_task(&msg.id);
        seen.insert(msg.id.clone());

        assert_eq!(msg.task, exp.task);
        assert_eq!(Value::Array(msg.args.clone()), exp.args, "{}", exp.task);
        assert_eq!(
            Value::Object(msg.kwargs.clone()),
            exp.kwargs,
            "{}",
            exp.task
        );
        assert_eq!(msg.priority, Some(exp.priority), "{}", exp.task);
        assert_eq!(msg.delivery_tag, exp.delivery_tag);
        assert_eq!(msg.delivery_info.exchange, "");
        assert_eq!(msg.delivery_info.routing_key, "inventario");
        assert_eq!(msg.eta, exp.eta.map(utc), "{}", exp.task);
        assert_eq!(msg.expires, exp.expires.map(utc), "{}", exp.task);
        assert_eq!(
            msg.envelope.property_str("expiration"),
            exp.expiration,
            "{}",
            exp.task
        );
        assert_eq!(msg.timelimit, TimeLimit::default());
        assert_eq!(msg.retries, 0);
        assert_eq!(msg.root_id.as_deref(), Some(exp.id));
        assert_eq!(msg.parent_id, None);
        assert_eq!(msg.group, None);
        assert!(!msg.ignore_result);
        assert!(!msg.redelivered);
        assert_eq!(msg.embed.callbacks, Value::Null);
        assert_eq!(msg.embed.errbacks, Value::Null);
        assert_eq!(msg.embed.chain, Value::Null);
        assert_eq!(msg.embed.chord, Value::Null);
        assert_eq!(msg.envelope.header_str("origin"), Some(exp.origin));
        assert_eq!(msg.envelope.property_str("reply_to"), Some(exp.reply_to));
        assert_eq!(msg.envelope.property_str("correlation_id"), Some(exp.id));

        // The list it was pushed on is the one our producer would pick.
        let queue = &msg.delivery_info.routing_key;
        assert_eq!(
            key,
            &keys::queue_list(queue, msg.priority.unwrap_or(0)),
            "{}",
            exp.task
        );
        assert_eq!(keys::queue_of_list(key), queue);
    }
    let all: BTreeSet<String> = expected_tasks().iter().map(|e| e.id.to_owned()).collect();
    assert_eq!(seen, all, "every expected task was captured");
}

#[test]
fn eta_message_carries_countdown_and_expiry() {
    let msg = TaskMessage::decode(&captured_task("57d2cd08-979b-4527-95db-7f9a213cbf42")).unwrap();
    let (eta, expires) = (msg.eta.unwrap(), msg.expires.unwrap());
    // countdown=1, expires=60 from the same "now": 59 s apart.
    assert_eq!((expires - eta).num_seconds(), 59);
    assert_eq!(eta.timestamp_subsec_micros(), 690_447);
}

#[test]
fn unacked_record_holds_the_delivered_message() {
    // kombu's HSET unacked <tag> [message, exchange, routing_key] for the delivered task.
    let life = capture(LIFECYCLE);
    let hset = life
        .iter()
        .find(|l| l.command == "HSET" && l.arg_str(0) == keys::UNACKED)
        .expect("HSET unacked in the lifecycle capture");
    let record = json_of(&hset.args[2]);
    let parts = record.as_array().expect("unacked record is an array");
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[1], "");
    assert_eq!(parts[2], "inventario");
    let inner = TaskMessage::decode(&serde_json::to_vec(&parts[0]).unwrap()).unwrap();
    assert_eq!(hset.arg_str(1), inner.delivery_tag);
    let pushed = TaskMessage::decode(&captured_task(&inner.id)).unwrap();
    assert_eq!(inner.task, pushed.task);
    assert_eq!(inner.eta, pushed.eta);
    assert_eq!(inner.expires, pushed.expires);
    assert_eq!(inner.delivery_tag, pushed.delivery_tag);
    assert_eq!(inner.args, pushed.args);
}

#[test]
fn pidbox_traffic_is_not_mistaken_for_a_task() {
    // The `pong` reply is an LPUSH too; it has no task header and must be refused as such.
    let life = capture(LIFECYCLE);
    let reply = life
        .iter()
        .find(|l| l.command == "LPUSH" && l.arg_str(0).ends_with(".reply.celery.pidbox"))
        .expect("pidbox reply in the lifecycle capture");
    assert!(!is_task_queue_list(reply.arg_str(0)));
    assert_eq!(
        TaskMessage::decode(&reply.args[1]).unwrap_err(),
        ProtocolError::Missing("headers.task")
    );
    let env = Envelope::parse(&reply.args[1]).unwrap();
    assert_eq!(env.payload().unwrap(), json!({"peer@vm": {"ok": "pong"}}));
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

#[test]
fn every_captured_result_parses_and_round_trips() {
    let mut writes = result_writes(&capture(WIRE));
    writes.extend(result_writes(&capture(LIFECYCLE)));
    // SUCCESS noop, FAILURE no_such_task, SUCCESS obtener_estado (SETEX and PUBLISH).
    assert_eq!(writes.len(), 4);
    let mut by_id: HashMap<String, Vec<ResultMeta>> = HashMap::new();
    for (cmd, key, raw) in &writes {
        let meta = ResultMeta::parse(raw)
            .unwrap_or_else(|e| panic!("{cmd} {key}: result does not parse: {e}"));
        assert_eq!(key, &keys::result_key(&meta.task_id));
        let date = meta.date_done.as_deref().expect("date_done is set");
        assert!(parse_datetime(date).is_some(), "date_done {date:?}");
        assert_eq!(meta.traceback, None);
        assert!(meta.children.is_empty());
        assert!(
            meta.extra.is_empty(),
            "no unexpected fields: {:?}",
            meta.extra
        );
        assert!(meta.status.is_ready());

        // Our serialization reads back as the same document and as the same JSON value.
        let ours = meta.to_json();
        assert_eq!(ResultMeta::parse(ours.as_bytes()).unwrap(), meta);
        assert_eq!(json_of(ours.as_bytes()), json_of(raw));
        by_id.entry(meta.task_id.clone()).or_default().push(meta);
    }

    let noop = &by_id[NOOP_ID][0];
    assert_eq!(noop.status, TaskState::Success);
    assert_eq!(noop.result, json!(7));
    assert_eq!(noop.exception(), None);

    let fail = &by_id["cae93c57-9e9f-4337-9f50-288d772f51ff"][0];
    assert_eq!(fail.status, TaskState::Failure);
    assert_eq!(
        fail.result,
        json!({"exc_type": "NotRegistered", "exc_message": ["no_such_task"],
               "exc_module": "celery.exceptions"})
    );
    let exc = fail.exception().expect("FAILURE carries an exception");
    assert_eq!(exc.exc_type, "NotRegistered");
    assert_eq!(exc.exc_message, json!(["no_such_task"]));
    assert_eq!(exc.exc_module.as_deref(), Some("celery.exceptions"));
    assert_eq!(exc.message(), "no_such_task");
    assert_eq!(exc, ExceptionInfo::not_registered("no_such_task"));

    let estado = &by_id["57d2cd08-979b-4527-95db-7f9a213cbf42"];
    assert_eq!(
        estado.len(),
        2,
        "stored with SETEX and announced with PUBLISH"
    );
    assert_eq!(estado[0], estado[1]);
    assert_eq!(estado[0].status, TaskState::Success);
    assert_eq!(
        estado[0].result,
        json!("InventarioService responde correctamente - OK")
    );
}

#[test]
fn results_we_write_are_byte_identical_to_celery() {
    // Same document built by our constructors, with Celery's date_done: the same bytes.
    let wire = capture(WIRE);
    let writes = result_writes(&wire);
    for (_, _, raw) in writes {
        let celery = ResultMeta::parse(&raw).unwrap();
        let mut ours = match celery.status {
            TaskState::Success => ResultMeta::success(&celery.task_id, celery.result.clone()),
            TaskState::Failure => ResultMeta::failure(
                &celery.task_id,
                &ExceptionInfo::not_registered("no_such_task"),
                None,
            ),
            other => panic!("unexpected state {other}"),
        };
        ours.date_done = celery.date_done.clone();
        assert_eq!(ours.to_json().as_bytes(), raw.as_slice());
    }
    let setex = wire.iter().find(|l| l.command == "SETEX").unwrap();
    assert_eq!(setex.arg_str(1), "86400");
}

// ---------------------------------------------------------------------------------------------
// Worker events
// ---------------------------------------------------------------------------------------------

#[test]
fn every_captured_worker_event_decodes() {
    let life = capture(LIFECYCLE);
    let events = worker_event_publishes(&life);
    let kinds: Vec<String> = events
        .iter()
        .map(|(_, raw)| WorkerEvent::decode(raw).unwrap().kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "worker-online",
            "worker-heartbeat",
            "worker-heartbeat",
            "worker-heartbeat",
            "worker-heartbeat",
            "worker-offline"
        ]
    );
    let mut last_clock = 0;
    for (channel, raw) in &events {
        let ev = WorkerEvent::decode(raw).unwrap();
        assert_eq!(ev.hostname, "peer@vm");
        assert_eq!(ev.freq, 2.0);
        assert_eq!(ev.sw_ident, "py-celery");
        assert_eq!(ev.sw_ver, "5.5.3");
        assert_eq!(ev.sw_sys, "Linux");
        assert_eq!(ev.pid, 10138);
        assert_eq!(ev.utcoffset, 0);
        assert_eq!(ev.active, 0);
        assert_eq!(ev.loadavg.len(), 3);
        assert!(ev.timestamp > 1.7e9);
        assert!(ev.extra.is_empty(), "{:?}", ev.extra);
        assert!(ev.clock > last_clock, "Lamport clock goes up");
        last_clock = ev.clock;
        assert_eq!(channel, &keys::event_channel(0, &ev.routing_key()));
        assert!(channel.starts_with(&keys::worker_events_pattern(0).replace('*', "")));

        let env = Envelope::parse(raw).unwrap();
        assert_eq!(env.header_str("hostname"), Some("peer@vm"));
        let di = env.delivery_info().expect("delivery_info");
        assert_eq!(di.exchange, "celeryev");
        assert_eq!(di.routing_key, ev.routing_key());
    }
    let offline = WorkerEvent::decode(&events.last().unwrap().1).unwrap();
    assert_eq!(
        offline.processed, 1,
        "the worker ran one task before stopping"
    );
    // The pidbox broadcast on /0.celery.pidbox is not a worker event.
    assert!(life
        .iter()
        .any(|l| l.command == "PUBLISH" && l.arg_str(0) == "/0.celery.pidbox"));
}

#[test]
fn events_we_publish_match_celery() {
    for (_, raw) in worker_event_publishes(&capture(LIFECYCLE)) {
        let ev = WorkerEvent::decode(&raw).unwrap();
        let celery = Envelope::parse(&raw).unwrap();
        let ours = ev.to_envelope();
        // Same fields in the same order; the timestamp's exactness is checked on its own in
        // `floats_survive_decoding_exactly`.
        let (mut ours_body, mut celery_body) = (ours.payload().unwrap(), celery.payload().unwrap());
        let close = ours_body["timestamp"].as_f64().unwrap() - ev.timestamp;
        assert!(close.abs() < 1e-3);
        ours_body["timestamp"] = Value::Null;
        celery_body["timestamp"] = Value::Null;
        assert_eq!(
            to_python_json(&ours_body),
            to_python_json(&celery_body),
            "event {} body",
            ev.kind
        );
        assert_eq!(ours.headers, celery.headers);
        assert_eq!(key_set(&ours.properties), key_set(&celery.properties));
        assert_eq!(ours.delivery_info(), celery.delivery_info());
        assert_eq!(ours.content_type, celery.content_type);
        assert_eq!(ours.content_encoding, celery.content_encoding);
        assert_eq!(
            ours.properties["delivery_mode"],
            celery.properties["delivery_mode"]
        );
        assert_eq!(WorkerEvent::decode(ours.to_json().as_bytes()).unwrap(), ev);
    }
}

/// The number literal after `"key": ` in a JSON text, as written.
fn number_literal<'a>(json_text: &'a str, key: &str) -> &'a str {
    let start = json_text
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("{key} in {json_text}"))
        + key.len()
        + 4;
    let rest = &json_text[start..];
    let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn floats_survive_decoding_exactly() {
    // Python writes floats as the shortest text that reads back to the same double. A correctly
    // rounded reader (Rust's `str::parse::<f64>`) gets that double back; anything else changes
    // the value Celery sent, and our re-encoding no longer matches Celery's bytes.
    let mut wrong = Vec::new();
    for (_, raw) in worker_event_publishes(&capture(LIFECYCLE)) {
        let env = Envelope::parse(&raw).unwrap();
        let text = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&env.body)
                .unwrap(),
        )
        .unwrap();
        let literal = number_literal(&text, "timestamp");
        let exact: f64 = literal.parse().unwrap();
        let ev = WorkerEvent::decode(&raw).unwrap();
        if ev.timestamp != exact {
            wrong.push(format!(
                "WorkerEvent::decode {} timestamp {literal}: got {:?}, expected {exact:?}",
                ev.kind, ev.timestamp
            ));
        } else {
            assert_eq!(ev.to_envelope().body, env.body, "byte-identical event body");
        }
    }
    let literals = [
        "1795409363.3925095",
        "1795409357.3802824",
        "0.1",
        "0.30000000000000004",
        "2.2250738585072014e-308",
        "1.7976931348623157e+308",
        "5e-324",
        "123456789.12345679",
        "9007199254740993.0",
        "3.141592653589793",
    ];
    let payload = format!("[[{}], {{}}, null]", literals.join(", "));
    let msg = TaskMessage::decode(&noop_with_body_json(&payload)).unwrap();
    for (lit, v) in literals.iter().zip(&msg.args) {
        let exact: f64 = lit.parse().unwrap();
        if v.as_f64() != Some(exact) {
            wrong.push(format!(
                "TaskMessage::decode arg {lit}: got {:?}, expected {exact:?}",
                v.as_f64().unwrap_or(f64::NAN)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "floats changed by decoding:\n{}",
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Encoder fidelity
// ---------------------------------------------------------------------------------------------

/// Our message for the same inputs as the captured one.
fn build_like(exp: &ExpectedTask) -> TaskMessage {
    let args = exp.args.as_array().unwrap().clone();
    let kwargs = exp.kwargs.as_object().unwrap().clone();
    TaskMessage::build(
        exp.task,
        args,
        kwargs,
        "inventario",
        exp.origin,
        exp.reply_to,
        NewTask {
            id: Some(exp.id.to_owned()),
            priority: Some(exp.priority),
            eta: exp.eta.map(utc),
            expires: exp.expires.map(utc),
            ..NewTask::default()
        },
    )
}

fn assert_same_fields(a: &TaskMessage, b: &TaskMessage) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.task, b.task);
    assert_eq!(a.args, b.args);
    assert_eq!(a.kwargs, b.kwargs);
    assert_eq!(a.embed, b.embed);
    assert_eq!(a.eta, b.eta);
    assert_eq!(a.expires, b.expires);
    assert_eq!(a.retries, b.retries);
    assert_eq!(a.timelimit, b.timelimit);
    assert_eq!(a.root_id, b.root_id);
    assert_eq!(a.parent_id, b.parent_id);
    assert_eq!(a.group, b.group);
    assert_eq!(a.ignore_result, b.ignore_result);
    assert_eq!(a.priority, b.priority);
    assert_eq!(a.delivery_tag, b.delivery_tag);
    assert_eq!(a.delivery_info, b.delivery_info);
    assert_eq!(a.redelivered, b.redelivered);
}

#[test]
fn noop_we_build_matches_celery() {
    let exp = expected_task(NOOP_ID);
    let raw = captured_task(NOOP_ID);
    let celery = Envelope::parse(&raw).unwrap();
    let ours = build_like(&exp);

    assert_eq!(ours.envelope.body, celery.body, "base64 body");
    assert_eq!(
        key_set(&ours.envelope.headers),
        key_set(&celery.headers),
        "header names"
    );
    assert_eq!(
        key_set(&ours.envelope.properties),
        key_set(&celery.properties),
        "property names"
    );

    let back = TaskMessage::decode(ours.encode().as_bytes()).unwrap();
    assert_same_fields(&back, &ours);
    assert_eq!(back.priority, Some(5));
    assert_eq!(
        keys::queue_list(&back.delivery_info.routing_key, 5),
        "inventario\x06\x163"
    );

    // Only the delivery tag is random: with Celery's tag, the whole message is Celery's bytes.
    let mut same_tag = ours.envelope.clone();
    same_tag
        .properties
        .insert("delivery_tag".into(), json!(exp.delivery_tag));
    assert_eq!(
        same_tag.to_json(),
        String::from_utf8(raw).unwrap(),
        "full message"
    );
}

#[test]
fn every_captured_task_rebuilt_matches_celery() {
    for exp in expected_tasks() {
        let raw = captured_task(exp.id);
        let celery = Envelope::parse(&raw).unwrap();
        let ours = build_like(&exp);
        assert_eq!(ours.envelope.body, celery.body, "{}: body", exp.task);
        assert_eq!(
            key_set(&ours.envelope.headers),
            key_set(&celery.headers),
            "{}: header names",
            exp.task
        );
        assert_eq!(
            key_set(&ours.envelope.properties),
            key_set(&celery.properties),
            "{}: property names",
            exp.task
        );
        // Times are written in Celery's format, to the microsecond.
        for h in ["eta", "expires"] {
            assert_eq!(
                ours.envelope.headers[h], celery.headers[h],
                "{}: {h}",
                exp.task
            );
        }
        assert_eq!(
            ours.envelope.properties["delivery_info"],
            celery.properties["delivery_info"]
        );
        assert_eq!(
            ours.envelope.properties["priority"],
            celery.properties["priority"]
        );
        let back = TaskMessage::decode(ours.encode().as_bytes()).unwrap();
        assert_same_fields(&back, &ours);
        let theirs = TaskMessage::decode(&raw).unwrap();
        assert_eq!(back.args, theirs.args);
        assert_eq!(back.kwargs, theirs.kwargs);
        assert_eq!(back.eta, theirs.eta);
        assert_eq!(back.expires, theirs.expires);
    }
}

#[test]
fn built_header_values_match_celery() {
    // Every header of ours holds what Celery wrote (the inputs are the same; nothing in the
    // headers is random), including argsrepr/kwargsrepr that Flower displays.
    let mut mismatches = Vec::new();
    for exp in expected_tasks() {
        let celery = Envelope::parse(&captured_task(exp.id)).unwrap();
        let ours = build_like(&exp);
        for (k, v) in &celery.headers {
            if ours.envelope.headers.get(k) != Some(v) {
                mismatches.push(format!(
                    "{} headers.{k}: Celery {v}, ours {}",
                    exp.task,
                    ours.envelope.headers.get(k).unwrap_or(&Value::Null)
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "headers differ from Celery's:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn python_json_formatting() {
    assert_eq!(
        to_python_json(&json!([[7], {}, {"callbacks": null, "errbacks": null}])),
        r#"[[7], {}, {"callbacks": null, "errbacks": null}]"#
    );
    // The captured body, decoded, is exactly Python's dumps of [args, kwargs, embed].
    let env = Envelope::parse(&captured_task(NOOP_ID)).unwrap();
    let body = base64::engine::general_purpose::STANDARD
        .decode(&env.body)
        .unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        to_python_json(&env.payload().unwrap())
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed input: a typed error, never a panic
// ---------------------------------------------------------------------------------------------

/// The captured noop message as JSON, changed by `f`, as bytes.
fn noop_with(f: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
    let mut v = json_of(&captured_task(NOOP_ID));
    f(v.as_object_mut().unwrap());
    serde_json::to_vec(&v).unwrap()
}

fn noop_with_body_json(payload: &str) -> Vec<u8> {
    let body = b64(payload);
    noop_with(|m| {
        m.insert("body".into(), json!(body));
    })
}

fn header(name: &'static str, value: Value) -> Vec<u8> {
    noop_with(|m| {
        m["headers"]
            .as_object_mut()
            .unwrap()
            .insert(name.into(), value);
    })
}

fn without_header(name: &str) -> Vec<u8> {
    noop_with(|m| {
        m["headers"].as_object_mut().unwrap().remove(name);
    })
}

fn decode_err(raw: &[u8]) -> ProtocolError {
    match TaskMessage::decode(raw) {
        Ok(m) => panic!(
            "decoded {:?} as task {} instead of refusing it",
            String::from_utf8_lossy(raw),
            m.task
        ),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

fn wrong_type_field(e: ProtocolError) -> &'static str {
    match e {
        ProtocolError::WrongType { field, .. } => field,
        other => panic!("expected WrongType, got {other:?}"),
    }
}

#[test]
fn malformed_envelopes_are_refused() {
    assert!(matches!(decode_err(b"not json"), ProtocolError::NotJson(_)));
    assert!(matches!(decode_err(b""), ProtocolError::NotJson(_)));
    assert!(matches!(
        decode_err(b"\xff\xfe{}"),
        ProtocolError::NotJson(_)
    ));
    for not_object in ["[1, 2]", "\"text\"", "null", "42", "true"] {
        assert!(
            matches!(decode_err(not_object.as_bytes()), ProtocolError::NotJson(_)),
            "{not_object}"
        );
    }
    assert_eq!(
        decode_err(&noop_with(|m| {
            m.remove("body");
        })),
        ProtocolError::Missing("body")
    );
    assert_eq!(
        wrong_type_field(decode_err(&noop_with(|m| {
            m.insert("body".into(), json!(12));
        }))),
        "body"
    );
    assert_eq!(
        wrong_type_field(decode_err(&noop_with(|m| {
            m.insert("headers".into(), json!("x"));
        }))),
        "headers"
    );
    assert_eq!(
        wrong_type_field(decode_err(&noop_with(|m| {
            m.insert("properties".into(), json!([1]));
        }))),
        "properties"
    );
    assert_eq!(
        decode_err(&noop_with(|m| {
            m.remove("headers");
        })),
        ProtocolError::Missing("headers.task")
    );
    assert_eq!(
        decode_err(&noop_with(|m| {
            m.insert("headers".into(), Value::Null);
        })),
        ProtocolError::Missing("headers.task")
    );
    assert_eq!(
        decode_err(&noop_with(|m| {
            m.insert(
                "content-type".into(),
                json!("application/x-python-serialize"),
            );
        })),
        ProtocolError::ContentType("application/x-python-serialize".into())
    );
}

#[test]
fn malformed_bodies_are_refused() {
    assert!(matches!(
        decode_err(&noop_with(|m| {
            m.insert("body".into(), json!("!!! not base64 !!!"));
        })),
        ProtocolError::Base64(_)
    ));
    for bad in [
        "not json at all",
        "",
        "[[7], {}, ",
        "{\"args\": [7]}",
        "[[7], {}]",
        "[[7], {}, null, null]",
        "[]",
        "7",
        "[7, {}, null]",
        "[{\"a\": 1}, {}, null]",
        "[\"7\", {}, null]",
        "[[7], [1], null]",
        "[[7], \"k\", null]",
        "[[7], {}, [1]]",
        "[[7], {}, \"chain\"]",
    ] {
        assert!(
            matches!(
                decode_err(&noop_with_body_json(bad)),
                ProtocolError::Body(_)
            ),
            "body {bad:?}"
        );
    }
    // Base64 of bytes that are not UTF-8 JSON.
    let garbage = base64::engine::general_purpose::STANDARD.encode([0xff, 0x00, 0x80]);
    assert!(matches!(
        decode_err(&noop_with(|m| {
            m.insert("body".into(), json!(garbage));
        })),
        ProtocolError::Body(_)
    ));
    // Nulls where kombu would write empty containers are tolerated.
    let m = TaskMessage::decode(&noop_with_body_json("[null, null, null]")).unwrap();
    assert!(m.args.is_empty() && m.kwargs.is_empty());
}

#[test]
fn malformed_headers_and_properties_are_refused() {
    assert_eq!(
        decode_err(&without_header("task")),
        ProtocolError::Missing("headers.task")
    );
    assert_eq!(
        decode_err(&header("task", json!(""))),
        ProtocolError::Missing("headers.task")
    );
    assert_eq!(
        wrong_type_field(decode_err(&header("task", json!(["noop"])))),
        "headers.task"
    );
    assert_eq!(
        decode_err(&without_header("id")),
        ProtocolError::Missing("headers.id")
    );
    assert_eq!(
        decode_err(&header("id", Value::Null)),
        ProtocolError::Missing("headers.id")
    );
    assert_eq!(
        wrong_type_field(decode_err(&header("id", json!(123)))),
        "headers.id"
    );
    assert_eq!(
        decode_err(&noop_with(|m| {
            m["properties"]
                .as_object_mut()
                .unwrap()
                .remove("delivery_tag");
        })),
        ProtocolError::Missing("properties.delivery_tag")
    );
    assert_eq!(
        wrong_type_field(decode_err(&noop_with(|m| {
            m["properties"]
                .as_object_mut()
                .unwrap()
                .insert("delivery_tag".into(), json!(5));
        }))),
        "properties.delivery_tag"
    );
    for bad_time in [
        json!("tomorrow"),
        json!("2026-13-45T00:00:00"),
        json!(12345),
    ] {
        assert_eq!(
            wrong_type_field(decode_err(&header("eta", bad_time.clone()))),
            "headers.eta",
            "eta {bad_time}"
        );
        assert_eq!(
            wrong_type_field(decode_err(&header("expires", bad_time.clone()))),
            "headers.expires",
            "expires {bad_time}"
        );
    }
    for bad_limit in [
        json!([1.0]),
        json!([1.0, 2.0, 3.0]),
        json!("10"),
        json!(10),
        json!({"hard": 1}),
        json!([-1.0, null]),
        json!([null, "5"]),
    ] {
        assert_eq!(
            wrong_type_field(decode_err(&header("timelimit", bad_limit.clone()))),
            "headers.timelimit",
            "timelimit {bad_limit}"
        );
    }
    assert_eq!(
        wrong_type_field(decode_err(&header("retries", json!(-1)))),
        "headers.retries"
    );
    // A well-formed time limit is read as [hard, soft].
    let m = TaskMessage::decode(&header("timelimit", json!([30.0, 25]))).unwrap();
    assert_eq!(
        m.timelimit,
        TimeLimit {
            hard: Some(30.0),
            soft: Some(25.0)
        }
    );
}

#[test]
fn malformed_results_and_events_are_refused() {
    assert!(matches!(
        ResultMeta::parse(b"nope"),
        Err(ProtocolError::NotJson(_))
    ));
    assert!(matches!(
        ResultMeta::parse(b"[1]"),
        Err(ProtocolError::NotJson(_))
    ));
    assert!(matches!(
        ResultMeta::parse(br#"{"status": "SUCCESS", "result": 1}"#),
        Err(ProtocolError::NotJson(_))
    ));
    assert!(matches!(
        WorkerEvent::decode(b"{}"),
        Err(ProtocolError::Missing("body"))
    ));
    let no_hostname = serde_json::to_vec(&json!({
        "body": b64(r#"{"type": "worker-heartbeat"}"#),
        "headers": {}, "properties": {"body_encoding": "base64"}
    }))
    .unwrap();
    assert!(matches!(
        WorkerEvent::decode(&no_hostname),
        Err(ProtocolError::Body(_))
    ));
    // An event without freq is read with Celery's own default.
    let minimal = serde_json::to_vec(&json!({
        "body": b64(r#"{"hostname": "w@h", "type": "worker-online"}"#),
    }))
    .unwrap();
    assert_eq!(WorkerEvent::decode(&minimal).unwrap().freq, 60.0);
}

// ---------------------------------------------------------------------------------------------
// Older and newer Celery / kombu
// ---------------------------------------------------------------------------------------------

#[test]
fn naive_times_from_older_celery_are_utc() {
    // Celery <= 5.3 wrote date_done without an offset.
    let raw = result_writes(&capture(WIRE)).remove(0).2;
    let aware = ResultMeta::parse(&raw).unwrap();
    let aware_time = utc(aware.date_done.as_deref().unwrap());
    let naive_text = aware.date_done.as_deref().unwrap().replace("+00:00", "");
    let mut doc = json_of(&raw);
    doc["date_done"] = json!(naive_text);
    let naive = ResultMeta::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(utc(naive.date_done.as_deref().unwrap()), aware_time);
    assert_eq!(
        ResultMeta::parse(naive.to_json().as_bytes()).unwrap(),
        naive
    );

    // Python's isoformat() drops the fraction when it is zero.
    assert_eq!(
        parse_datetime("2026-11-23T04:05:55"),
        parse_datetime("2026-11-23T04:05:55.000000+00:00")
    );
    assert!(parse_datetime("2026-11-23T04:05:55").is_some());

    // Naive eta / expires in a task message, and an aware one in another zone.
    let msg = TaskMessage::decode(&noop_with(|m| {
        let h = m["headers"].as_object_mut().unwrap();
        h.insert("eta".into(), json!("2026-11-23T04:49:25.690447"));
        h.insert("expires".into(), json!("2026-11-23T05:50:24.690447+01:00"));
    }))
    .unwrap();
    assert_eq!(msg.eta, Some(utc("2026-11-23T04:49:25.690447+00:00")));
    assert_eq!(msg.expires, Some(utc("2026-11-23T04:50:24.690447+00:00")));
}

#[test]
fn kombu_typed_values_in_args_stay_json() {
    // kombu >= 5.3 wraps datetimes, UUIDs, decimals and bytes; 5.2 wrote plain strings. We do
    // not interpret them, but they must reach the task unchanged.
    let args = json!([
        {"__type__": "datetime", "__value__": "2026-11-23T04:49:25.690447+00:00"},
        {"__type__": "uuid", "__value__": "57d2cd08-979b-4527-95db-7f9a213cbf42"},
        {"__type__": "decimal", "__value__": "3.14"},
        {"__type__": "bytes", "__value__": "hola"},
        "2026-11-23T04:49:25.690447"
    ]);
    let kwargs = json!({"when": {"__type__": "date", "__value__": "2026-11-23"}});
    let payload = to_python_json(&json!([args, kwargs, null]));
    let msg = TaskMessage::decode(&noop_with_body_json(&payload)).unwrap();
    assert_eq!(Value::Array(msg.args.clone()), args);
    assert_eq!(Value::Object(msg.kwargs.clone()), kwargs);
    assert_eq!(msg.args[0]["__type__"], "datetime");
    let when = msg.args[0]["__value__"].as_str().unwrap();
    assert_eq!(
        parse_datetime(when),
        Some(utc("2026-11-23T04:49:25.690447Z"))
    );
    let plain = msg.args[4].as_str().unwrap();
    assert_eq!(parse_datetime(plain), parse_datetime(when));
    assert_eq!(msg.embed.callbacks, Value::Null);
}

// ---------------------------------------------------------------------------------------------
// Robustness: mutated captures never panic the decoders
// ---------------------------------------------------------------------------------------------

/// xorshift64: deterministic and dependency-free, enough to scatter mutations.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TOKENS: &[&[u8]] = &[
    b"\"", b"\\", b"{", b"}", b"[", b"]", b",", b":", b"null", b"-1", b"1e999", b"0.5", b"\\u0000",
    b"\\ud800", b"\xff", b"\x00", b"true", b"\"\"", b"[]", b"{}", b"=", b"==",
];

fn weird_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(0),
        json!(1.5e308),
        json!(-0.0),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("x"),
        json!("2026-13-45T99:99:99"),
        json!("2026-11-23T04:49:25.690447"),
        json!([]),
        json!({}),
        json!([null]),
        json!([1, 2, 3]),
        json!([-1, -1]),
        json!([1e308, 1e308]),
        json!(["a", "b"]),
        json!({"exchange": 1}),
        json!([[[[[]]]]]),
        json!("application/x-python-serialize"),
        json!("base64"),
        json!("utf-16"),
    ]
}

/// Byte-level damage: flips, overwrites, truncation, insertion, deletion, duplication.
fn mutate_bytes(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 => out.truncate(rng.below(len + 1)),
            3 => {
                let i = rng.below(len + 1);
                let tok = rng.pick(TOKENS).to_vec();
                out.splice(i..i, tok);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let end = (i + 1 + rng.below(16)).min(len);
                out.drain(i..end);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let end = (i + 1 + rng.below(64)).min(len);
                let chunk = out[i..end].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, chunk);
            }
            _ => {
                let i = rng.below(len + 1);
                out.insert(i, rng.next() as u8);
            }
        }
    }
    out
}

/// A random node of a JSON tree, up to `depth` levels down, replaced or removed.
fn mutate_value(rng: &mut XorShift, v: &mut Value, weird: &[Value], depth: usize) {
    if depth > 0 {
        match v {
            Value::Object(m) if !m.is_empty() => {
                let i = rng.below(m.len());
                let child = m.values_mut().nth(i).unwrap();
                return mutate_value(rng, child, weird, depth - 1);
            }
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                return mutate_value(rng, &mut a[i], weird, depth - 1);
            }
            _ => {}
        }
    }
    match v {
        Value::Object(m) if !m.is_empty() && rng.below(3) == 0 => {
            let k = m.keys().nth(rng.below(m.len())).unwrap().clone();
            m.remove(&k);
        }
        Value::Array(a) if !a.is_empty() && rng.below(3) == 0 => {
            a.remove(rng.below(a.len()));
        }
        _ => *v = rng.pick(weird).clone(),
    }
}

/// Damage inside the base64 body, so the args/kwargs/embed paths are reached too.
fn mutate_body(rng: &mut XorShift, doc: &Value, weird: &[Value]) -> Vec<u8> {
    let mut doc = doc.clone();
    let body = doc["body"].as_str().unwrap();
    let inner = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let new_inner = if rng.below(2) == 0 {
        mutate_bytes(rng, &inner)
    } else {
        let mut payload: Value = serde_json::from_slice(&inner).unwrap();
        let depth = rng.below(4);
        mutate_value(rng, &mut payload, weird, depth);
        serde_json::to_vec(&payload).unwrap()
    };
    doc["body"] = json!(base64::engine::general_purpose::STANDARD.encode(new_inner));
    serde_json::to_vec(&doc).unwrap()
}

/// Decodes `input` with every decoder, catching panics; a message that decodes must also
/// survive our re-encoding.
fn decode_all(input: &[u8]) -> std::thread::Result<()> {
    std::panic::catch_unwind(|| {
        if let Ok(msg) = TaskMessage::decode(input) {
            let again = TaskMessage::decode(msg.encode().as_bytes())
                .expect("a decoded message re-encodes to a decodable one");
            assert_eq!((&again.id, &again.task), (&msg.id, &msg.task));
            assert_eq!(again.args, msg.args);
            assert_eq!(again.kwargs, msg.kwargs);
        }
        if let Ok(meta) = ResultMeta::parse(input) {
            let again = ResultMeta::parse(meta.to_json().as_bytes()).expect("result re-parses");
            assert_eq!(again.task_id, meta.task_id);
        }
        if let Ok(ev) = WorkerEvent::decode(input) {
            let _ = ev.to_envelope().to_json();
        }
        let _ = Envelope::parse(input).map(|e| e.payload());
    })
}

#[test]
fn mutated_captures_never_panic() {
    let weird = weird_values();
    let mut seeds: Vec<Vec<u8>> = all_task_pushes().into_iter().map(|(_, raw)| raw).collect();
    assert_eq!(seeds.len(), 3);
    // Results and events too, as all decoders share the envelope and JSON paths.
    let life = capture(LIFECYCLE);
    seeds.extend(
        result_writes(&life)
            .into_iter()
            .map(|(_, _, raw)| raw)
            .take(1),
    );
    seeds.extend(
        worker_event_publishes(&life)
            .into_iter()
            .map(|(_, raw)| raw)
            .take(1),
    );

    let mut panics: Vec<String> = Vec::new();
    let mut panicked = 0usize;
    let mut decoded = 0usize;
    let mut tried = 0usize;
    for (n, seed) in seeds.iter().enumerate() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1).wrapping_mul(0x2545_F491));
        let doc = json_of(seed);
        let has_body = doc.get("body").and_then(Value::as_str).is_some();
        for i in 0..4000 {
            let input = match i % 3 {
                0 => mutate_bytes(&mut rng, seed),
                1 => {
                    let mut d = doc.clone();
                    let depth = rng.below(4);
                    mutate_value(&mut rng, &mut d, &weird, depth);
                    serde_json::to_vec(&d).unwrap()
                }
                _ if has_body => mutate_body(&mut rng, &doc, &weird),
                _ => mutate_bytes(&mut rng, seed),
            };
            tried += 1;
            if TaskMessage::decode(&input).is_ok() {
                decoded += 1;
            }
            if decode_all(&input).is_err() {
                panicked += 1;
                if panics.len() < 5 {
                    panics.push(String::from_utf8_lossy(&input).into_owned());
                }
            }
        }
    }
    assert!(
        panicked == 0,
        "decoders panicked (or a decoded message failed to re-encode) on {panicked} input(s), \
         first ones:\n{}",
        panics.join("\n")
    );
    // The mutations must not all be rejected at the JSON level, or deep paths go untested.
    assert!(
        decoded > tried / 20,
        "only {decoded} of {tried} mutants decoded"
    );
}

// ---------------------------------------------------------------------------------------------
// A retry, as Celery 5.5 sends and stores it (celery-5.5-redis-retry.txt)
// ---------------------------------------------------------------------------------------------

const RETRY_CAPTURE: &str = "celery-5.5-redis-retry.txt";
/// `reintentar(2)`: retried twice, then SUCCESS 2.
const RETRIED_ID: &str = "a27b8b5c-7f9a-4aeb-a32c-e7655459696b";
/// `reintentar(4)`: past the default max_retries of 3, a FAILURE MaxRetriesExceededError.
const EXHAUSTED_ID: &str = "81c5feb2-7e6f-4c0d-bbbc-6e161a51f5e2";

/// The task messages of `id` pushed in the retry capture, in order (the client's, then each
/// one a retry sent).
fn retry_capture_messages(id: &str) -> Vec<Vec<u8>> {
    task_pushes(&capture(RETRY_CAPTURE))
        .into_iter()
        .map(|(_, raw)| raw)
        .filter(|raw| json_of(raw)["headers"]["id"] == id)
        .collect()
}

/// The results stored (SETEX) for `id` in the retry capture, in order.
fn retry_capture_results(id: &str) -> Vec<Vec<u8>> {
    result_writes(&capture(RETRY_CAPTURE))
        .into_iter()
        .filter(|(cmd, key, _)| cmd == "SETEX" && *key == keys::result_key(id))
        .map(|(_, _, raw)| raw)
        .collect()
}

/// Asserts two JSON objects equal, field by field, apart from the fields named in `aside`,
/// which must be present in both.
fn assert_fields_match(what: &str, ours: &Value, celery: &Value, aside: &[&str]) {
    let (ours, celery) = (ours.as_object().unwrap(), celery.as_object().unwrap());
    assert_eq!(key_set(ours), key_set(celery), "{what}: the same fields");
    for (key, value) in celery {
        if !aside.contains(&key.as_str()) {
            assert_eq!(&ours[key], value, "{what}: field {key}");
        }
    }
}

#[test]
fn retried_messages_we_send_match_celery() {
    for id in [RETRIED_ID, EXHAUSTED_ID] {
        let sent = retry_capture_messages(id);
        assert!(
            sent.len() >= 3,
            "{id}: the first message and at least two retries"
        );
        for pair in sent.windows(2) {
            let before = TaskMessage::decode(&pair[0]).unwrap();
            let celery = json_of(&pair[1]);
            // The eta is a timestamp of Celery's clock; everything else must be ours too.
            let eta = utc(celery["headers"]["eta"].as_str().unwrap());
            let ours = json_of(before.retried(eta).as_bytes());
            let what = format!("{id} retry {}", before.retries + 1);
            assert_fields_match(&what, &ours, &celery, &["headers", "properties"]);
            assert_fields_match(&what, &ours["headers"], &celery["headers"], &[]);
            assert_fields_match(
                &what,
                &ours["properties"],
                &celery["properties"],
                &["delivery_tag"],
            );
            // A new delivery, and the properties in Celery's order (origin after reply_to).
            assert_ne!(
                ours["properties"]["delivery_tag"],
                celery["properties"]["delivery_tag"]
            );
            let order = |m: &Value| -> Vec<String> {
                m["properties"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect()
            };
            assert_eq!(order(&ours), order(&celery), "{what}: property order");
        }
    }
}

#[test]
fn retry_results_we_store_match_celery() {
    let stored = retry_capture_results(RETRIED_ID);
    // RETRY after the first and the second attempt, then SUCCESS.
    assert_eq!(stored.len(), 3);
    let sent = retry_capture_messages(RETRIED_ID);
    for (attempt, raw) in stored[..2].iter().enumerate() {
        let celery = json_of(raw);
        let request = TaskMessage::decode(&sent[attempt]).unwrap();
        assert_eq!(request.retries as usize, attempt);
        let ours = ResultMeta::retry(RETRIED_ID, None, request.parent_id.as_deref());
        let ours = json_of(ours.to_json().as_bytes());
        // Celery's traceback is the Python stack of the Retry it raised; we have none.
        assert_fields_match(&format!("RETRY {attempt}"), &ours, &celery, &["traceback"]);
        assert!(celery["traceback"].is_string());
        assert_eq!(ours["traceback"], Value::Null);
        let meta = ResultMeta::parse(raw).unwrap();
        assert_eq!(meta.status, TaskState::Retry);
        assert!(!meta.status.is_ready());
    }

    // Out of retries: Celery's MaxRetriesExceededError, text and all.
    let last = retry_capture_results(EXHAUSTED_ID);
    let failure = ResultMeta::parse(last.last().unwrap()).unwrap();
    assert_eq!(failure.status, TaskState::Failure);
    let first = TaskMessage::decode(&retry_capture_messages(EXHAUSTED_ID)[0]).unwrap();
    assert_eq!(
        failure.exception(),
        Some(ExceptionInfo::max_retries_exceeded(&first))
    );
    assert_eq!(failure.extra["parent_id"], json!(EXHAUSTED_ID));
}

// ---------------------------------------------------------------------------------------------
// Canvas: what a worker sends after a task of a chain or of a chord's header
// ---------------------------------------------------------------------------------------------

const CHAIN: &str = "celery-5.5-redis-chain.txt";
const CHORD: &str = "celery-5.5-redis-chord.txt";

/// The captured task messages of a capture, decoded, in the order they were pushed.
fn pushed_tasks(name: &str) -> Vec<(Vec<u8>, TaskMessage)> {
    task_pushes(&capture(name))
        .into_iter()
        .map(|(_, raw)| {
            let m = TaskMessage::decode(&raw).expect("captured message decodes");
            (raw, m)
        })
        .collect()
}

/// The stored result (the SETEX) of `id` in a capture.
fn stored_result(name: &str, id: &str) -> Vec<u8> {
    result_writes(&capture(name))
        .into_iter()
        .find(|(cmd, key, _)| cmd == "SETEX" && key == &keys::result_key(id))
        .unwrap_or_else(|| panic!("no stored result for {id} in {name}"))
        .2
}

/// `ours`, with the two things that cannot be Celery's (its delivery tag, and the origin
/// `gen<pid>@<host>` of the worker that sent it) taken from `celery`, as bytes.
fn as_sent_by_celery(ours: &TaskMessage, celery: &[u8]) -> String {
    let celery = Envelope::parse(celery).unwrap();
    let mut env = ours.envelope.clone();
    env.properties.insert(
        "delivery_tag".into(),
        celery.properties["delivery_tag"].clone(),
    );
    env.headers
        .insert("origin".into(), celery.headers["origin"].clone());
    env.to_json()
}

fn parent<'a>(m: &'a TaskMessage) -> canvas::Parent<'a> {
    canvas::Parent::of(m, "inventario")
}

#[test]
fn chain_next_message_matches_celery() {
    let pushed = pushed_tasks(CHAIN);
    assert_eq!(pushed.len(), 3, "a chain of three tasks");
    for step in 0..2 {
        let (_, this) = &pushed[step];
        let (celery_raw, celery) = &pushed[step + 1];
        let result = ResultMeta::parse(&stored_result(CHAIN, &this.id)).unwrap();
        let plan = canvas::plan_success(this, &result.result, &parent(this)).unwrap();
        assert_eq!(
            plan.send.len(),
            1,
            "step {step}: only the chain's next task"
        );
        let (queue, ours) = &plan.send[0];
        assert_eq!(queue, "inventario");
        assert_eq!(ours.id, celery.id, "the id the client gave the step");
        assert_eq!(ours.parent_id.as_deref(), Some(this.id.as_str()));
        assert_eq!(ours.root_id, pushed[0].1.root_id);
        // Field by field (body, every header, every property), then byte for byte.
        assert_eq!(
            ours.envelope.body, celery.envelope.body,
            "step {step}: body"
        );
        let same = as_sent_by_celery(ours, celery_raw);
        assert_eq!(
            Envelope::parse(same.as_bytes()).unwrap().headers,
            celery.envelope.headers,
            "step {step}: headers"
        );
        assert_eq!(same, String::from_utf8(celery_raw.clone()).unwrap());
        // The children Celery stored for this step: the next one.
        assert_eq!(plan.children, result.children, "step {step}: children");
    }
    // The last step's chain is empty: it sends nothing.
    let (_, last) = &pushed[2];
    let plan = canvas::plan_success(last, &json!(10), &parent(last)).unwrap();
    assert!(plan.send.is_empty() && plan.children.is_empty());
}

#[test]
fn chain_results_match_celery_with_parent_id() {
    for (_, m) in pushed_tasks(CHAIN) {
        let raw = stored_result(CHAIN, &m.id);
        let celery = ResultMeta::parse(&raw).unwrap();
        let mut ours = ResultMeta::success(&m.id, celery.result.clone());
        ours.children = celery.children.clone();
        ours.date_done = celery.date_done.clone();
        if let Some(p) = &m.parent_id {
            ours.extra.insert("parent_id".into(), json!(p));
        }
        assert_eq!(ours.to_json().into_bytes(), raw, "{}", m.id);
    }
}

#[test]
fn chord_parts_are_counted_as_celery_counts_them() {
    let lines = capture(CHORD);
    let headers: Vec<TaskMessage> = pushed_tasks(CHORD)
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m.task == "add")
        .collect();
    assert_eq!(headers.len(), 3);
    let group = headers[0]
        .group
        .clone()
        .expect("header tasks carry their group");
    let [j, t, s] = keys::chord_keys(&group);
    // The client records the size; each part adds its record, scored by group_index, and reads
    // the count, the adjustment and the size.
    assert!(lines
        .iter()
        .any(|l| l.command == "SETEX" && l.arg_str(0) == s && l.arg_str(2) == "3"));
    for (i, m) in headers.iter().enumerate() {
        assert_eq!(m.group.as_deref(), Some(group.as_str()));
        assert_eq!(m.envelope.headers["group_index"], json!(i));
        let raw = stored_result(CHORD, &m.id);
        let meta = ResultMeta::parse(&raw).unwrap();
        let zadd = lines
            .iter()
            .find(|l| l.command == "ZADD" && l.arg_str(0) == j && l.arg_str(2).contains(&m.id))
            .expect("the part's ZADD");
        assert_eq!(zadd.arg_str(1), i.to_string(), "scored by group_index");
        assert_eq!(zadd.arg_str(2), canvas::chord_record(&m.id, &meta));
        // The part's stored result names its group, before task_id, as Celery writes it.
        let mut ours = ResultMeta::success(&m.id, meta.result.clone());
        ours.date_done = meta.date_done.clone();
        ours.extra.insert("group_id".into(), json!(group));
        assert_eq!(ours.to_json().into_bytes(), raw);
    }
    assert!(lines
        .iter()
        .any(|l| l.command == "GET" && l.arg_str(0) == t));
    // The body's task id is the one every part carries in embed.chord.
    let body = canvas::Signature::parse(&headers[0].embed.chord).unwrap();
    assert!(headers
        .iter()
        .all(|m| canvas::Signature::parse(&m.embed.chord).unwrap() == body));
}

#[test]
fn chord_body_matches_celery() {
    let lines = capture(CHORD);
    let pushed = pushed_tasks(CHORD);
    let (body_raw, celery_body) = pushed
        .iter()
        .find(|(_, m)| m.task == "xsum")
        .expect("the body was sent");
    // The part that completed the header is the body's parent (the last to count itself).
    let last = &pushed
        .iter()
        .find(|(_, m)| Some(&m.id) == celery_body.parent_id.as_ref())
        .expect("the body's parent is a header part")
        .1;
    let [j, _, _] = keys::chord_keys(last.group.as_deref().unwrap());
    // The records as the last part's ZRANGE read them: in group_index order.
    let mut records: Vec<(u64, String)> = lines
        .iter()
        .filter(|l| l.command == "ZADD" && l.arg_str(0) == j)
        .map(|l| (l.arg_str(1).parse().unwrap(), l.arg_str(2).to_owned()))
        .collect();
    records.sort();
    let records: Vec<String> = records.into_iter().map(|(_, r)| r).collect();
    let results = canvas::chord_results(&records).unwrap();
    assert_eq!(results, vec![json!(0), json!(2), json!(4)]);

    let body = canvas::Signature::parse(&last.embed.chord).unwrap();
    let ours = body.message(
        Some(Value::Array(results)),
        &parent(last),
        Value::Null,
        None,
    );
    assert_eq!(ours.id, celery_body.id);
    assert_eq!(ours.envelope.body, celery_body.envelope.body, "body");
    let same = as_sent_by_celery(&ours, body_raw);
    assert_eq!(
        Envelope::parse(same.as_bytes()).unwrap().headers,
        celery_body.envelope.headers,
        "headers"
    );
    assert_eq!(same, String::from_utf8(body_raw.clone()).unwrap());
}
