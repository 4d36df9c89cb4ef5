"""Python Celery client side of the interoperability tests: sends tasks to queue `inventario`
with `send_task(...).get()` and prints one JSON line per outcome, for the Rust test to check.
Usage: send_and_get.py URL"""
import json
import sys

from celery import Celery

app = Celery("client", broker=sys.argv[1], backend=sys.argv[1])


def outcome(name, *args, **options):
    try:
        value = app.send_task(name, args=list(args), queue="inventario", **options).get(timeout=10)
        return {"task": name, "ok": True, "value": value}
    except Exception as exc:  # the test checks the exception type Celery rebuilt
        return {"task": name, "ok": False, "exc_type": type(exc).__name__, "exc_module": type(exc).__module__, "message": str(exc)}


cases = [
    outcome("obtener_estado"),
    outcome("add", 2, 3),
    outcome("add", 20, 22, priority=7),
    outcome("noop", {"nested": [1, "dos", None]}, countdown=1, expires=60),
    outcome("fail", "sin stock"),
    outcome("no_such_task", 1),
    outcome("panic"),
]
for case in cases:
    print(json.dumps(case))
