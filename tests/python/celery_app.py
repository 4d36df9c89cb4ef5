"""A Python Celery 5.5 app that stands in for the seed's Python worker in interoperability
tests: tasks `obtener_estado` (returns the seed's string), `noop` (returns its argument),
`add`, `fail`, `progreso` (stores a custom state), `reintentar` (retries itself) and `sleep`
(honours the soft time limit), on queue `inventario`. The broker and backend URL come from CELERY_URL."""
import os
import time

from celery import Celery

URL = os.environ.get("CELERY_URL", "redis://127.0.0.1:6379/0")
app = Celery("interop", broker=URL, backend=URL)
app.conf.update(
    task_default_queue="inventario",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    # What the Rust worker's RESULT_EXTENDED and RATE_LIMITS do, set the same way from the
    # environment, so that a test can run one scenario against either worker.
    result_extended=os.environ.get("RESULT_EXTENDED") == "true",
)
if os.environ.get("NOOP_RATE_LIMIT"):
    app.conf.task_annotations = {"noop": {"rate_limit": os.environ["NOOP_RATE_LIMIT"]}}


@app.task(name="obtener_estado")
def obtener_estado():
    return "InventarioService responde correctamente - OK"


@app.task(name="noop")
def noop(x=None):
    return x


@app.task(name="add")
def add(x, y):
    return x + y


@app.task(name="xsum")
def xsum(numbers):
    """The sum of a list: the body of a chord of `add`s."""
    return sum(numbers)


@app.task(name="fail")
def fail(message="fallo solicitado"):
    raise ValueError(message)


@app.task(name="progreso", bind=True)
def progreso(self, target, hecho):
    """Stores task `target` in the custom state PROGRESS, as a long task reports its progress
    with Celery's update_state."""
    self.update_state(task_id=target, state="PROGRESS", meta={"hecho": hecho})
    return hecho


@app.task(name="reintentar", bind=True)
def reintentar(self, veces):
    """Retries itself with a 0.2 s countdown until it has been retried `veces` times, then
    returns the number of retries. Above Celery's default max_retries (3) it fails with
    MaxRetriesExceededError."""
    if self.request.retries < veces:
        raise self.retry(countdown=0.2)
    return self.request.retries


@app.task(name="sleep")
def sleep(ms=100):
    """Sleeps `ms` milliseconds and returns them; a soft time limit interrupts it with
    SoftTimeLimitExceeded (the prefork pool signals it)."""
    time.sleep(ms / 1000)
    return ms
