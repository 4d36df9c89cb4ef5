"""Celery's canvas through whichever worker serves queue `inventario`: chain, group, chord,
link and link_error, each run with Python's own API and printed as one JSON line, with ids
replaced by what they stand for, so that the lines from a Python worker and from the Rust
worker can be compared as they are. Usage: canvas.py URL [scenario ...]"""
import json
import os
import re
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

from celery import chain, chord, group
from celery.result import AsyncResult

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["CELERY_URL"] = sys.argv[1]
from celery_app import add, app, fail, noop, reintentar, sleep, xsum  # noqa: E402

TIMEOUT = 15


def meta(task_id):
    """The stored result of a task, the parts compared: which keys it has, and children's shape."""
    # Read until stored (the task may still be running). Not with AsyncResult.get: after a
    # get() that raised a parent's error, the client's pub/sub consumer may already have
    # swallowed this task's announcement, and a second get() then waits for nothing.
    deadline = time.monotonic() + TIMEOUT
    while True:
        m = app.backend.get_task_meta(task_id, cache=False)
        if m["status"] in ("SUCCESS", "FAILURE", "REVOKED") or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    exc = m["result"] if isinstance(m["result"], BaseException) else None
    return {
        "exception": error(exc) if exc is not None else None,
        "status": m["status"],
        "keys": sorted(k for k in m if k not in ("date_done",)),
        "children": shape(m.get("children")),
        "has_parent_id": m.get("parent_id") is not None,
        "has_group_id": m.get("group_id") is not None,
    }


def shape(v):
    """Ids (strings that are UUIDs) become "<id>", so two runs compare equal."""
    if isinstance(v, list):
        return [shape(x) for x in v]
    if isinstance(v, str):
        try:
            uuid.UUID(v)
            return "<id>"
        except ValueError:
            return v
    return v


def error(exc):
    return {"exc_type": type(exc).__name__, "message": shape_message(str(exc))}


def shape_message(text):
    """Ids anywhere in an error's text ("reintentar[<id>]") become "<id>"."""
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", text)


def run_split():
    """Two chords whose header is split between a Python worker (queue `solo_python`) and
    whichever worker serves `inventario`: in the first the `inventario` part finishes last, in
    the second the Python part. Each body runs once, wherever its last part ran."""
    py = "solo_python"
    first = chord([sleep.s(50).set(queue=py), sleep.s(400)])(xsum.s())
    second = chord([sleep.s(400).set(queue=py), sleep.s(50)])(xsum.s())
    return {"values": [first.get(timeout=TIMEOUT), second.get(timeout=TIMEOUT)],
            "bodies": [meta(first.id), meta(second.id)]}


def run_chain():
    r = chain(add.s(1, 2), add.s(3), add.s(4)).apply_async()
    value = r.get(timeout=TIMEOUT)
    first = r.parent.parent
    return {"value": value, "first": meta(first.id), "middle": meta(r.parent.id), "last": meta(r.id),
            "root_is_first": AsyncResult(r.id).get(timeout=TIMEOUT) == value}


def run_chain_failure():
    r = chain(add.s(1, 1), fail.s(), add.s(1)).apply_async()
    try:
        r.get(timeout=TIMEOUT)
        return {"value": "no error"}
    except Exception as exc:  # the failure propagated to the chain's last task
        return {"error": error(exc), "last": meta(r.id), "failed": meta(r.parent.id)}


def run_group():
    r = group(add.s(i, i) for i in range(4)).apply_async()
    value = r.get(timeout=TIMEOUT)
    return {"value": value, "member": meta(r.results[0].id)}


def run_chord():
    r = chord([add.s(i, i) for i in range(5)])(xsum.s())
    value = r.get(timeout=TIMEOUT)
    return {"value": value, "body": meta(r.id)}


def run_chord_failure():
    r = chord([add.s(1, 1), fail.s("mal")])(xsum.s())
    try:
        r.get(timeout=TIMEOUT)
        return {"value": "no error"}
    except Exception as exc:
        return {"error": error(exc), "body": meta(r.id)}


def run_chord_expired_part():
    """A header part that expired before it ran counts as revoked: the chord fails."""
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    r = chord([add.s(1, 1), add.s(2, 2).set(expires=past)])(xsum.s())
    try:
        r.get(timeout=TIMEOUT)
        return {"value": "no error"}
    except Exception as exc:
        return {"error": error(exc), "body": meta(r.id)}


def run_link():
    r = add.apply_async((2, 2), link=add.s(10))
    value = r.get(timeout=TIMEOUT)
    child = r.children[0]
    return {"value": value, "callback": child.get(timeout=TIMEOUT), "task": meta(r.id),
            "child": meta(child.id)}


def run_links():
    r = add.apply_async((1, 1), link=[add.s(1), add.si(5, 5)])
    value = r.get(timeout=TIMEOUT)
    callbacks = r.children[0]
    return {"value": value, "callbacks": callbacks.get(timeout=TIMEOUT), "task": meta(r.id),
            "child": meta(callbacks.results[0].id)}


def with_errback(send):
    """Sends a task with a `noop` errback (`send(errback)` returns its AsyncResult); the task
    must fail, and the errback receive the failed task's id."""
    errback = noop.s().set(task_id=str(uuid.uuid4()))
    r = send(errback)
    try:
        r.get(timeout=TIMEOUT)
        return {"value": "no error"}
    except Exception as exc:
        got = AsyncResult(errback.id).get(timeout=TIMEOUT)
        return {"error": error(exc), "errback_got_the_task_id": got == r.id, "task": meta(r.id),
                "errback": meta(errback.id)}


def run_link_error():
    return with_errback(lambda e: fail.apply_async(("sin stock",), link_error=e, link=add.s(1)))


def run_exhausted_errback():
    """A task that runs out of retries fails like any other: its errback runs."""
    return with_errback(lambda e: reintentar.apply_async((5,), link_error=e))


SCENARIOS = {name[4:]: f for name, f in sorted(globals().items()) if name.startswith("run_")}
# Needs a Python worker on queue solo_python besides the worker under test: only when named.
ONLY_NAMED = {"split"}

for name in sys.argv[2:] or [n for n in SCENARIOS if n not in ONLY_NAMED]:
    try:
        out = SCENARIOS[name]()
    except Exception as exc:  # a scenario that breaks is a line too, for the test to show
        out = {"broken": error(exc)}
    print(json.dumps({"scenario": name, **out}, sort_keys=True), flush=True)
