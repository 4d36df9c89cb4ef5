"""Python Celery client side of the retry and time-limit interoperability tests: sends
`reintentar` and `sleep` to queue `inventario` with `send_task(...).get()` and prints one JSON
line per outcome (with the task id, which MaxRetriesExceededError's text names), for the Rust
test to compare between a Python worker and ours. Usage: retry_and_limits.py URL"""
import json
import sys

from celery import Celery

app = Celery("client", broker=sys.argv[1], backend=sys.argv[1])


def outcome(case, name, *args, **options):
    result = app.send_task(name, args=list(args), queue="inventario", **options)
    try:
        value = result.get(timeout=20)
        return {"case": case, "id": result.id, "ok": True, "value": value}
    except Exception as exc:  # the test checks the exception type Celery rebuilt
        return {"case": case, "id": result.id, "ok": False, "exc_type": type(exc).__name__,
                "exc_module": type(exc).__module__, "message": str(exc)}


cases = [
    outcome("retried", "reintentar", 3),
    outcome("exhausted", "reintentar", 5),
    outcome("soft_limit", "sleep", 2000, soft_time_limit=0.3),
    outcome("within_limit", "sleep", 50, soft_time_limit=5),
]
for case in cases:
    print(json.dumps(case))
