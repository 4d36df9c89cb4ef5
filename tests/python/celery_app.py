"""A Python Celery 5.5 app that stands in for the seed's Python worker in interoperability
tests: tasks `obtener_estado` (returns the seed's string), `noop` (returns its argument),
`add`, `fail` and `progreso` (stores a custom state), on queue `inventario`. The broker and backend URL come from CELERY_URL."""
import os

from celery import Celery

URL = os.environ.get("CELERY_URL", "redis://127.0.0.1:6379/0")
app = Celery("interop", broker=URL, backend=URL)
app.conf.update(
    task_default_queue="inventario",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="obtener_estado")
def obtener_estado():
    return "InventarioService responde correctamente - OK"


@app.task(name="noop")
def noop(x=None):
    return x


@app.task(name="add")
def add(x, y):
    return x + y


@app.task(name="fail")
def fail(message="fallo solicitado"):
    raise ValueError(message)


@app.task(name="progreso", bind=True)
def progreso(self, target, hecho):
    """Stores task `target` in the custom state PROGRESS, as a long task reports its progress
    with Celery's update_state."""
    self.update_state(task_id=target, state="PROGRESS", meta={"hecho": hecho})
    return hecho
