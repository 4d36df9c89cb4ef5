//! CPU cost of the protocol work a worker does for every task: decoding the message it pops
//! and encoding the result it stores. Run with `cargo bench -p shared --bench protocol`.
//!
//! A plain `Instant` loop (no harness): each case runs in several rounds and the best round is
//! printed, since the machine this runs on is usually busy with something else too.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{json, Map};
use shared::protocol::task::NewTask;
use shared::protocol::{Envelope, ResultMeta, TaskMessage};

/// A `noop(1)` task as Celery 5.5.3 / kombu 5.5.4 LPUSHed it (a `redis-cli MONITOR` capture).
const CELERY_NOOP: &str = r#"{"body": "W1sxXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "noop", "id": "bc4cc68c-a085-4179-82e1-fa8dbb6f8e93", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "bc4cc68c-a085-4179-82e1-fa8dbb6f8e93", "parent_id": null, "argsrepr": "[1]", "kwargsrepr": "{}", "origin": "gen23084@vm", "ignore_result": false, "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}}, "properties": {"correlation_id": "bc4cc68c-a085-4179-82e1-fa8dbb6f8e93", "reply_to": "9e5bce56-1624-3568-8719-55316ebd618e", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "inventario"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "c2dbb526-e403-43fa-8307-f85d59035253"}}"#;

const ROUNDS: usize = 7;
const ROUND_TIME: Duration = Duration::from_millis(300);

/// Runs `f` for `ROUNDS` rounds of about `ROUND_TIME` each and prints the best ns per call.
/// Cases whose name does not contain the first command-line argument (if any) are skipped,
/// e.g. `cargo bench -p shared --bench protocol -- result`.
fn bench<T>(name: &str, mut f: impl FnMut() -> T) {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    if filter.is_some_and(|filter| !name.contains(&filter)) {
        return;
    }
    // Calibrate: how many calls fill a round.
    let mut iters = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        if start.elapsed() >= ROUND_TIME / 10 {
            break;
        }
        iters *= 2;
    }
    let iters = iters * 10;
    let best = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min);
    println!("{name:<40} {best:>9.0} ns/op");
}

fn main() {
    let built = TaskMessage::build(
        "noop",
        vec![json!(1)],
        Map::new(),
        "inventario",
        "gen1@host",
        "reply",
        NewTask::default(),
    )
    .encode();
    // A capture at /tmp/msg.json, when there is one, is measured as well.
    let extra = std::fs::read("/tmp/msg.json").ok();

    bench("decode: built by us (Celery 5.5 shape)", || {
        TaskMessage::decode(black_box(built.as_bytes())).expect("decodes")
    });
    bench("decode: captured from Celery 5.5", || {
        TaskMessage::decode(black_box(CELERY_NOOP.as_bytes())).expect("decodes")
    });
    if let Some(raw) = &extra {
        bench("decode: /tmp/msg.json", || {
            TaskMessage::decode(black_box(raw)).expect("decodes")
        });
    }
    bench("envelope parse only", || {
        Envelope::parse(black_box(CELERY_NOOP.as_bytes())).expect("parses")
    });

    // What the worker does for a finished noop: `ResultMeta::success` in `execute`, then
    // `to_json` in `finish`.
    let id = "bc4cc68c-a085-4179-82e1-fa8dbb6f8e93";
    bench("result: success(..).to_json()", || {
        ResultMeta::success(black_box(id), json!(1)).to_json()
    });
    let meta = ResultMeta::success(id, json!(1));
    bench("result: to_json() only", || black_box(&meta).to_json());
}
