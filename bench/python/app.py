"""The seed's Python design, minimal, for the benchmark: a Celery 5.5 app with `obtener_estado`
(returns the seed's string) and `noop` on queue `inventario`, Redis as broker and result backend
(URL from CELERY_URL). Run as the bench does: celery -A app worker -Q inventario -c 2 -P prefork"""
import os

from celery import Celery

URL = os.environ.get("CELERY_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=URL, backend=URL)
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
