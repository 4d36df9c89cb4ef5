"""Celery's remote control from a Python client, against whichever worker serves queue
`inventario` under the node name given: inspect (ping, stats, registered, active, reserved,
scheduled, active_queues, revoked, destination filtering), control (revoke of a scheduled and
of a running task, rate_limit, time_limit, add_consumer/cancel_consumer, enable/disable
events). Prints one JSON line per step, `{"step": name, "reply": ...}`, for the Rust test to
compare with the captures of a Python worker. The worker must run with one slot and a prefetch
of two (so that a second long task is *reserved*). Usage: control.py URL NODE"""
import json
import os
import sys
import time

from celery.result import AsyncResult

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["CELERY_URL"] = sys.argv[1]
from celery_app import app  # noqa: E402

NODE = sys.argv[2]
TIMEOUT = 1.0


def out(step, reply, **more):
    print(json.dumps({"step": step, "reply": reply, **more}, sort_keys=True), flush=True)


def inspect(method, destination=None):
    i = app.control.inspect(timeout=TIMEOUT, destination=destination)
    return getattr(i, method)()


def until(what, check, limit=10.0):
    """Polls `what()` until `check` holds of it (a worker's state seen from outside)."""
    deadline = time.monotonic() + limit
    while True:
        got = what()
        if check(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def state(task_id):
    return app.backend.get_task_meta(task_id, cache=False)


for method in ["ping", "stats", "registered", "active_queues"]:
    out(method, inspect(method))
out("ping_destination_match", inspect("ping", destination=[NODE]))
out("ping_destination_other", inspect("ping", destination=["nobody@x"]))

# A countdown task waits for its eta (first: it gives its place in the prefetch back); with one
# slot, the first sleep runs and the second waits in the prefetch.
later = app.send_task("noop", args=[1], queue="inventario", countdown=30)
until(lambda: inspect("scheduled"), lambda r: r and r.get(NODE))


def holds(task):
    return lambda r: any(t.get("id", t.get("request", {}).get("id")) == task.id
                         for t in (r or {}).get(NODE) or [])


running = app.send_task("sleep", args=[20000], queue="inventario")
out("active", until(lambda: inspect("active"), holds(running)), running=running.id)
waiting = app.send_task("sleep", args=[50], queue="inventario")
out("reserved", until(lambda: inspect("reserved"), holds(waiting)), waiting=waiting.id)
out("scheduled", until(lambda: inspect("scheduled"), lambda r: r and r.get(NODE)), later=later.id)

# Revoke the countdown task: it is stored REVOKED (ours at once; Celery's at its eta).
out("revoke", app.control.revoke(later.id, reply=True, timeout=TIMEOUT))
out("revoked", inspect("revoked"))
meta = until(lambda: state(later.id), lambda m: m["status"] == "REVOKED", limit=3.0)
out("revoked_scheduled_state", meta["status"])

# Terminate the running task: stored REVOKED ("terminated"); the reserved one then runs.
out("revoke_terminate",
    app.control.revoke(running.id, terminate=True, reply=True, timeout=TIMEOUT))
meta = until(lambda: state(running.id), lambda m: m["status"] == "REVOKED", limit=5.0)
out("terminated_state", meta["status"], result=str(meta["result"]))
out("reserved_ran", waiting.get(timeout=10))

out("rate_limit", app.control.rate_limit("noop", "10/s", reply=True, timeout=TIMEOUT))
out("rate_limit_unknown", app.control.rate_limit("no_such_task", "1/s", reply=True,
                                                 timeout=TIMEOUT))
out("time_limit", app.control.time_limit("sleep", soft=1, hard=2, reply=True, timeout=TIMEOUT))
out("add_consumer", app.control.add_consumer("extra", reply=True, timeout=TIMEOUT))
out("extra_queue_served", app.send_task("noop", args=[5], queue="extra").get(timeout=10))
out("cancel_consumer", app.control.cancel_consumer("extra", reply=True, timeout=TIMEOUT))
out("enable_events", app.control.enable_events(reply=True, timeout=TIMEOUT))
out("disable_events", app.control.disable_events(reply=True, timeout=TIMEOUT))
