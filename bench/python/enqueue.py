"""Enqueue throughput of Celery's own client: `app.send_task("noop", [i])` N times in a loop on
QUEUE (one producer, as a Flask view would send), printing {"n": N, "seconds": S} as JSON.
Usage: CELERY_URL=redis://... python enqueue.py N QUEUE"""
import json
import sys
import time

from app import app

n, queue = int(sys.argv[1]), sys.argv[2]
app.send_task("noop", args=[-1], queue=queue)  # connect first: time the sends, not the connect
start = time.perf_counter()
for i in range(n):
    app.send_task("noop", args=[i], queue=queue)
print(json.dumps({"n": n, "seconds": time.perf_counter() - start}))
