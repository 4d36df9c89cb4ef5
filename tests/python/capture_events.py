"""Retakes `shared/tests/fixtures/celery-5.5-redis-task-events.txt` and
`celery-5.5-task-events.json`: the events a Python Celery 5.5 worker started with `-E` publishes
over Redis.

Like `capture_control.py` (whose helpers it uses) it starts a private redis-server on a free
port, `redis-cli MONITOR` into a file, and a worker on `celery_app.py` (queue `inventario`,
`-c 2 -P prefork --without-mingle --without-gossip -n py@capture`), here with `-E`. Before the
worker starts, a Celery event receiver (`app.events.Receiver` with `handlers={'*': ...}`,
capturing without waking the workers) runs in a thread and keeps every event it is handed.
The client then sends, waiting for each outcome and the task's last event before the next:

- `noop(7)`: a success;
- `fail("sin stock")`: a failure (ValueError);
- `reintentar(1)`: one retry, then a success;
- `noop(30)` with `countdown=30`, revoked with `control.revoke(id)` while it waits for its
  countdown; the worker only announces the revocation (task-revoked) when the countdown ends,
  so the capture waits for that event;
- `no_such_task(1)`: a task the worker does not know. Celery 5.5 rejects the message and stores
  FAILURE NotRegistered; its event is task-failed (no task-received, no task-rejected):
  celery_app.py has no task that raises Reject, the one thing that sends task-rejected.

Last, the worker gets SIGTERM (warm shutdown, worker-offline), and the capture stops once the
receiver has seen worker-offline. The capture keeps MONITOR's timestamps and every command, less
the `OK` MONITOR prints first; the JSON is the list of events in the order the receiver got
them, with all their fields (the receiver adds `local_received`).

Run it with the project's venv Python (Celery 5.5.3, kombu 5.5.4, redis), from anywhere:

    .venv/bin/python tests/python/capture_events.py [OUT_DIR]

OUT_DIR defaults to `shared/tests/fixtures`.
"""
import signal
import sys
import threading
from pathlib import Path

from capture_control import FIXTURES, Capture, write_json


class EventLog:
    """An event receiver in a thread, keeping the events it is handed in order."""

    def __init__(self, app):
        self.app, self.events = app, []
        self.ready, self.changed = threading.Event(), threading.Condition()
        self.receiver = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the event receiver did not start")

    def _on_event(self, event):
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def _run(self):
        with self.app.connection_for_read() as conn:
            self.receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            consume_ready = self.receiver.on_consume_ready

            def on_consume_ready(*args, **kwargs):
                consume_ready(*args, **kwargs)
                self.ready.set()

            self.receiver.on_consume_ready = on_consume_ready
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def wait_for(self, kind, uuid=None, timeout=10):
        """Waits until an event of type `kind` (for task `uuid`, if given) has arrived."""
        def seen():
            return any(e["type"] == kind and (uuid is None or e.get("uuid") == uuid)
                       for e in self.events)
        with self.changed:
            if not self.changed.wait_for(seen, timeout):
                raise RuntimeError(f"no {kind} event for {uuid} within {timeout} s")

    def stop(self):
        self.receiver.should_stop = True
        self.thread.join(10)


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES
    out.mkdir(parents=True, exist_ok=True)
    from celery import Celery

    with Capture() as cap:
        app = Celery("client", broker=cap.url, backend=cap.url)
        log = EventLog(app)
        cap.start_worker("-E")

        def send(name, *args, **options):
            return app.send_task(name, args=list(args), queue="inventario", **options)

        # The worker publishes task-succeeded / task-failed just after storing the result, so a
        # client that sent the next task as soon as it had the result would interleave the two
        # tasks' events: each task's last event is awaited too.
        def run(last, name, *args):
            result = send(name, *args)
            print(f"{name}:", repr(result.get(timeout=10, propagate=False)), file=sys.stderr)
            log.wait_for(last, result.id)

        run("task-succeeded", "noop", 7)
        run("task-failed", "fail", "sin stock")
        run("task-succeeded", "reintentar", 1)

        later = send("noop", 30, countdown=30).id
        log.wait_for("task-received", later)
        app.control.revoke(later)
        log.wait_for("task-revoked", later, timeout=40)
        print("revoked:", later, file=sys.stderr)

        run("task-failed", "no_such_task", 1)

        cap.worker.send_signal(signal.SIGTERM)
        cap.wait_worker_exit()
        log.wait_for("worker-offline")
        log.stop()
        cap.finish(out / "celery-5.5-redis-task-events.txt")

    kinds = [e["type"] for e in log.events]
    print("events:", ", ".join(kinds), file=sys.stderr)
    write_json(out / "celery-5.5-task-events.json", log.events)


if __name__ == "__main__":
    main()
