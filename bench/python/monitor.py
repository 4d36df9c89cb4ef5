"""The seed's monitor for the benchmark: every PING_INTERVAL_MS send `obtener_estado` to queue
`inventario` with Celery's client and wait for the result up to PING_TIMEOUT_MS; print one line
per state change (flushed), the same rule as ours: CAIDO when a ping gets no answer in time,
OK when one answers again. Usage: CELERY_URL=redis://... python monitor.py"""
import os
import sys
import time

from celery.exceptions import TimeoutError as CeleryTimeout

from app import app

interval = int(os.environ.get("PING_INTERVAL_MS", "250")) / 1000
timeout = int(os.environ.get("PING_TIMEOUT_MS", "750")) / 1000
estado = None
while True:
    start = time.perf_counter()
    try:
        app.send_task("obtener_estado", queue="inventario").get(timeout=timeout)
        nuevo = "OK"
    except CeleryTimeout:
        nuevo = "CAIDO"
    if nuevo != estado:
        etiqueta = "[RECUPERADO]" if nuevo == "OK" else "[ALERTA]"
        print(f"{etiqueta} InventarioService {nuevo}", flush=True)
        estado = nuevo
    time.sleep(max(0.0, interval - (time.perf_counter() - start)))
