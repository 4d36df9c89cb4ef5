"""Python Celery client side of the result_extended and rate-limit interoperability test.
With `result_extended` on, it sends `add(2, y=3)` and prints what `AsyncResult` reads back
(name, args, kwargs, worker, retries, queue); then it sends four `noop`s at once to a worker
that limits `noop` to a few a second, and prints when each was done, for the Rust test to
check their spacing with a Python worker and with ours. Usage: extended_and_rates.py URL"""
import json
import sys
from datetime import datetime

from celery import Celery

app = Celery("client", broker=sys.argv[1], backend=sys.argv[1])
app.conf.result_extended = True

sent = app.send_task("add", args=[2], kwargs={"y": 3}, queue="inventario")
value = sent.get(timeout=20)
read = app.AsyncResult(sent.id)
print(json.dumps({
    "case": "extended", "id": sent.id, "value": value, "name": read.name, "args": read.args,
    "kwargs": read.kwargs, "worker": read.worker, "retries": read.retries, "queue": read.queue,
}))


def seconds(done):
    if isinstance(done, str):
        done = datetime.fromisoformat(done)
    return done.timestamp()


noops = [app.send_task("noop", args=[i], queue="inventario") for i in range(4)]
values = [r.get(timeout=20) for r in noops]
done = sorted(seconds(app.AsyncResult(r.id).date_done) for r in noops)
print(json.dumps({"case": "rate_limited", "values": values, "done": done}))
