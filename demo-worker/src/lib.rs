//! # demo-worker: the queue's demonstration tasks
//!
//! Generic tasks (`noop`, `add`, `xsum`, `sleep`, `fail`, `panic`, `reintentar`,
//! `obtener_estado`) for trying the queue by hand (the `demo-worker` binary), for tests that
//! need a worker to run or a process to kill, and for benchmarks. They mirror the Python app in
//! `tests/python/celery_app.py`, so the same scenario can run against either worker: `sleep`
//! stops at its soft time limit with `SoftTimeLimitExceeded`, and `reintentar` retries itself
//! as a Celery task does with `self.retry(countdown=0.2)`.
//!
//! Chains, groups, chords and `link`/`link_error` callbacks that a Python client builds from
//! these tasks run on this worker as on Celery's (`shared::worker::canvas`); `xsum` (the sum
//! of a list) is the body of the chords in those tests.

use std::time::Duration;

use serde_json::{json, Value};

use shared::worker::{Registry, Task, TaskError, TaskResult};

/// A registry with every demonstration task.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register("noop", noop)
        .register("add", add)
        .register("xsum", xsum)
        .register("sleep", sleep)
        .register("fail", fail)
        .register("panic", panics)
        .register("reintentar", reintentar)
        .register("obtener_estado", obtener_estado);
    registry
}

/// Returns its first argument.
pub async fn noop(task: Task) -> TaskResult {
    Ok(task.args.first().cloned().unwrap_or(Value::Null))
}

/// The sum of two integers.
pub async fn add(task: Task) -> TaskResult {
    let n = |i: usize, name: &str| {
        task.arg(i, name)
            .and_then(Value::as_i64)
            .ok_or_else(|| TaskError::value_error(format!("argument {name} must be an integer")))
    };
    Ok(json!(n(0, "x")? + n(1, "y")?))
}

/// The sum of a list of integers: the body of a chord of `add`s, which receives the header's
/// results as one list.
pub async fn xsum(task: Task) -> TaskResult {
    let numbers = task
        .arg(0, "numbers")
        .and_then(Value::as_array)
        .ok_or_else(|| TaskError::value_error("argument numbers must be a list"))?;
    let mut sum: i64 = 0;
    for n in numbers {
        let n = n
            .as_i64()
            .ok_or_else(|| TaskError::value_error(format!("{n} is not an integer")))?;
        sum = sum
            .checked_add(n)
            .ok_or_else(|| TaskError::value_error("the sum overflows"))?;
    }
    Ok(json!(sum))
}

/// Sleeps `ms` milliseconds (default 100) and returns them; at the soft time limit it stops
/// and fails with `SoftTimeLimitExceeded`, as the Python task is interrupted there.
pub async fn sleep(task: Task) -> TaskResult {
    let ms = task.arg(0, "ms").and_then(Value::as_u64).unwrap_or(100);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(json!(ms)),
        _ = task.soft_limit_reached() => Err(TaskError::soft_time_limit_exceeded()),
    }
}

/// Retries itself with a 0.2 s countdown until it has been retried `veces` times, then
/// returns the number of retries. Past Celery's default `max_retries` (3), the worker fails it
/// with `MaxRetriesExceededError`, as Celery does.
pub async fn reintentar(task: Task) -> TaskResult {
    let veces = task
        .arg(0, "veces")
        .and_then(Value::as_u64)
        .ok_or_else(|| TaskError::value_error("argument veces must be a non-negative integer"))?;
    if u64::from(task.retries) < veces {
        return Err(task.retry().countdown(Duration::from_millis(200)).into());
    }
    Ok(json!(task.retries))
}

/// Fails with `ValueError(message)`.
pub async fn fail(task: Task) -> TaskResult {
    // Any value, as Python's `ValueError(message)`: in a chain it is the previous result.
    let why = match task.arg(0, "message") {
        None | Some(Value::Null) => "fallo solicitado".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    Err(TaskError::value_error(why))
}

/// Panics (the worker must store a FAILURE and live on).
pub async fn panics(_task: Task) -> TaskResult {
    panic!("boom")
}

/// The health task, answered as the inventory worker answers it.
pub async fn obtener_estado(task: Task) -> TaskResult {
    Ok(json!({
        "estado": "OK",
        "mensaje": "InventarioService responde correctamente - OK",
        "hostname": task.hostname,
    }))
}
