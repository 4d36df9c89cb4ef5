"""Checks a running compose stack (started by scripts/compose-e2e.sh) the way a user would:
through the ports published on 127.0.0.1 and `docker compose logs`. Every wait is bounded.
Writes carry a bearer token from the service's own `token` subcommand, run in its container."""
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import redis

from checks import ok, wait_until

INVENTARIO = f"http://127.0.0.1:{os.environ['INVENTARIO_HOST_PORT']}"
MONITOR = f"http://127.0.0.1:{os.environ['MONITOR_HOST_PORT']}"
REDIS = redis.Redis(host="127.0.0.1", port=int(os.environ["REDIS_HOST_PORT"]))


def http(method, url, body=None, timeout=5.0, token=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return None, str(error)


def compose(*args):
    return subprocess.run(["docker", "compose", *args], check=True, capture_output=True, text=True).stdout


def logs(service):
    return compose("logs", "--no-color", service)


def movement(producto, cantidad):
    status, body = http("POST", f"{INVENTARIO}/inventario/{producto}/movimientos", {"tipo": "entrada", "cantidad": cantidad}, token=TOKEN)
    assert status == 202, (status, body)
    return body["tarea_id"]


def task_state(task_id):
    status, body = http("GET", f"{INVENTARIO}/tareas/{task_id}")
    assert status == 200, (status, body)
    return body


def state_of(body):
    return body.get("estado") or body.get("status")


def all_succeeded(ids):
    states = [state_of(task_state(i)) for i in ids]
    bad = [s for s in states if s in ("FAILURE", "REVOKED")]
    assert not bad, states
    return all(s == "SUCCESS" for s in states)


def cantidad(producto):
    status, body = http("GET", f"{INVENTARIO}/inventario/{producto}")
    assert status == 200, (status, body)
    return body["cantidad"]


# 0. Published on loopback only (PUBLISH_ADDR unset).
for service, port in (("inventario-service", 3001), ("monitor-service", 3002), ("redis", 6379)):
    published = compose("port", service, str(port)).strip()
    assert published.startswith("127.0.0.1:"), (service, published)
ok("3001, 3002 and Redis published on 127.0.0.1 only")

# 1. Seeded data.
status, productos = http("GET", f"{INVENTARIO}/inventario")
assert status == 200 and len(productos) == 20, (status, productos)
ok("/inventario has the 20 seeded productos")

# 1b. Writes need a token signed with the stack's JWT_SECRET; the service's subcommand makes one.
TOKEN = compose("exec", "-T", "inventario-service", "inventario-service", "token", "--sub", "compose-e2e", "--ttl", "1h").strip()
assert TOKEN.count(".") == 2, TOKEN
before = cantidad(1)
status, body = http("POST", f"{INVENTARIO}/inventario/1/movimientos", {"tipo": "entrada", "cantidad": 1})
assert status == 401 and body["error"] == "no_autenticado", (status, body)
forged = TOKEN.rsplit(".", 1)[0] + "." + base64.urlsafe_b64encode(b"\0" * 32).rstrip(b"=").decode()
status, body = http("POST", f"{INVENTARIO}/inventario/1/movimientos", {"tipo": "entrada", "cantidad": 1}, token=forged)
assert status == 401 and body["error"] == "token_invalido", (status, body)
status, body = http("POST", f"{INVENTARIO}/inventario", {"nombre": "e2e", "cantidad": 1, "precio": 1}, token=TOKEN)
assert status == 201, (status, body)
status, _ = http("DELETE", f"{INVENTARIO}/inventario/{body['id']}", token=TOKEN)
assert status == 204, status
assert cantidad(1) == before
wait_until("the writes' log lines name the token's sub", lambda: 'sub="compose-e2e"' in logs("inventario-service"))
assert os.environ["JWT_SECRET"] not in logs("inventario-service")
ok("writes: 401 without a token or with a forged one; the subcommand's token works; sub logged, secret not")

# 2. The monitor sees the worker.
wait_until("/monitor answers OK", lambda: (lambda r: r[0] == 200 and r[1].get("estado") == "OK")(http("GET", f"{MONITOR}/monitor")))
ok("/monitor answers OK")
wait_until("[OK] Ping recibido lines in the monitor's log", lambda: "[OK] Ping recibido en" in logs("monitor-service"))
ok("monitor log shows [OK] Ping recibido en ...")

# 3. Failure detected, then recovery.
compose("kill", "inventario-worker")
alert = wait_until("[ALERTA] ... CAIDO in the monitor's log", lambda: [l for l in logs("monitor-service").splitlines() if "[ALERTA]" in l and "CAIDO" in l], limit=15)
ok(f"worker killed -> {alert[0].split('|', 1)[-1].strip()}")
compose("start", "inventario-worker")
back = wait_until("[RECUPERADO] in the monitor's log", lambda: [l for l in logs("monitor-service").splitlines() if "[RECUPERADO]" in l], limit=30)
ok(f"worker restarted -> {back[-1].split('|', 1)[-1].strip()}")

# 4. Three workers share the stock movements.
compose("up", "-d", "--no-recreate", "--wait", "--scale", "inventario-worker=3", "inventario-worker")
before = cantidad(1)
ids = [movement(1, 1) for _ in range(90)]
wait_until("90 movements SUCCESS", lambda: all_succeeded(ids), limit=60)
assert cantidad(1) == before + 90, (before, cantidad(1))
workers = {task_state(i).get("resultado", {}).get("worker") for i in ids}
assert len(workers) == 3, f"expected the 3 workers to share the movements, saw {workers}"
ok(f"3 workers processed the 90 movements ({', '.join(sorted(workers))}); cantidad exact")

# 4b. What the monitor shows of the queue (issue 22): the three workers connected, a movement
# looked up through its task events (TASK_EVENTS is on in the compose file) and its stored
# result, the queue's length under celery-exporter's name, and both API documents.
wait_until("/monitor/colas counts the 3 workers", lambda: http("GET", f"{MONITOR}/monitor/colas")[1].get("trabajadores_conectados") == 3)
tarea = wait_until("the movement's events reach the monitor", lambda: (lambda r: r[1] if r[0] == 200 and "eventos" in r[1].get("fuentes", []) else None)(http("GET", f"{MONITOR}/monitor/tareas/{ids[0]}")))
assert tarea["estado"] == "SUCCESS" and tarea["nombre"] == "inventario.aplicar_movimiento" and tarea["trabajador"], tarea
with urllib.request.urlopen(f"{MONITOR}/metrics", timeout=5) as response:
    metrics = response.read().decode()
assert 'celery_queue_length{queue_name="inventario"}' in metrics, metrics[:2000]
assert 'celery_task_succeeded_total{hostname=' in metrics, metrics[:2000]
# The service announces what it sends (TASK_SENT_EVENTS is on in the compose file too).
sent = [line for line in metrics.splitlines() if line.startswith("celery_task_sent_total{")
        and 'name="inventario.aplicar_movimiento"' in line and 'queue_name="inventario"' in line]
assert sent and float(sent[0].rsplit(" ", 1)[1]) >= 90, sent or metrics[:2000]
for base in (INVENTARIO, MONITOR):
    status, document = http("GET", f"{base}/openapi.json")
    assert status == 200 and document["openapi"].startswith("3."), (base, status)
ok("monitor: 3 workers connected, a movement looked up by its events, queue and task metrics (task-sent included); both OpenAPI documents")

# 5. Redis restart: everyone reconnects, tasks queued before it survive.
compose("stop", "inventario-worker")
before = cantidad(2)
queued = [movement(2, 2) for _ in range(10)]
assert REDIS.llen("inventario") + sum(REDIS.llen(f"inventario\x06\x16{s}") for s in (3, 6, 9)) >= 10
compose("restart", "redis")
compose("start", "inventario-worker")
wait_until("movements queued before the Redis restart done", lambda: all_succeeded(queued), limit=60)
assert cantidad(2) == before + 20
ok("tasks queued before `docker compose restart redis` were processed after it")
wait_until("/ready is 200 again", lambda: http("GET", f"{INVENTARIO}/ready")[0] == 200)
wait_until("/monitor OK again", lambda: (lambda r: r[0] == 200 and r[1].get("estado") == "OK")(http("GET", f"{MONITOR}/monitor")))
ok("services reconnected by themselves after the Redis restart")
print("compose e2e: 10 passed, 0 failed")
