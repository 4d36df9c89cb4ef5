"""Retakes `shared/tests/fixtures/celery-5.5-task-sent.json`: the `task-sent` events a Python
Celery 5.5 client publishes with `task_send_sent_event = True` (no worker is needed).

It starts a private redis-server (`capture_control.Capture`), PSUBSCRIBEs `/0.celeryev/*` and
sends two tasks to queue `inventario` with fixed ids: `aplicar_movimiento(21, "entrada", 5,
clave="k-1")` with `countdown=30, expires=600`, and `obtener_estado()` with `priority=0`. Each
event arrives as its own PUBLISH on `/0.celeryev/task.sent` (routing key `task.sent`, the body a
single base64 JSON event, not a list); the JSON is the list of decoded events, in order.

    .venv/bin/python tests/python/capture_sent.py [OUT_DIR]

OUT_DIR defaults to `shared/tests/fixtures`.
"""
import base64
import json
import sys
import threading
from pathlib import Path

import redis
from celery import Celery

from capture_control import FIXTURES, Capture, write_json


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES
    with Capture() as capture:
        pubsub = redis.Redis(port=capture.port).pubsub()
        pubsub.psubscribe("/0.celeryev/*")
        while pubsub.get_message(timeout=1) is None:  # the psubscribe confirmation
            pass
        got = []
        done = threading.Event()

        def listen():
            for m in pubsub.listen():
                if m["type"] == "pmessage":
                    got.append((m["channel"].decode(), json.loads(m["data"])))
                    if len(got) == 2:
                        done.set()
                        return

        threading.Thread(target=listen, daemon=True).start()
        app = Celery("capture", broker=capture.url, backend=capture.url)
        app.conf.task_send_sent_event = True
        app.send_task("aplicar_movimiento", args=[21, "entrada", 5], kwargs={"clave": "k-1"},
                      queue="inventario", task_id="6c0f7a52-8d1e-4f0b-9a57-2f7f1b1c0001",
                      countdown=30, expires=600)
        app.send_task("obtener_estado", args=[], queue="inventario", priority=0,
                      task_id="6c0f7a52-8d1e-4f0b-9a57-2f7f1b1c0002")
        if not done.wait(10):
            sys.exit(f"expected two task-sent events, got {len(got)}")
        events = []
        for channel, envelope in got:
            assert channel == "/0.celeryev/task.sent", channel
            assert envelope["properties"]["delivery_info"]["routing_key"] == "task.sent"
            events.append(json.loads(base64.b64decode(envelope["body"])))
        write_json(out / "celery-5.5-task-sent.json", events)
        print(f"{len(events)} task-sent events written to {out}")


if __name__ == "__main__":
    main()
