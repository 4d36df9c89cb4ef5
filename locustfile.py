"""Load for the availability experiment: the monitor's ping-echo under load, inventory reads and
writes, and stock movements through the queue. Hosts come from MONITOR_URL and INVENTARIO_URL
(defaults: the compose ports on localhost). Run it with ./run-locust.sh.

The inventory's writes need a bearer token: INVENTARIO_TOKEN if set (say, from
`inventario-service token --sub locust`), else one this file signs with JWT_SECRET, whose
default is docker-compose.yml's and scripts/run.sh's DEVELOPMENT secret."""
import base64
import hashlib
import hmac
import json
import os
import random
import time
import uuid

from locust import HttpUser, between, task

MONITOR_URL = os.environ.get("MONITOR_URL", "http://localhost:3002")
INVENTARIO_URL = os.environ.get("INVENTARIO_URL", "http://localhost:3001")
INVENTARIO_TOKEN = os.environ.get("INVENTARIO_TOKEN")
JWT_SECRET = os.environ.get("JWT_SECRET") or "dev-secret-change-me"
TOKEN_TTL_S = 3600


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_token(secret, sub, ttl_s):
    """An HS256 JWT with `sub`, `iat` and `exp`, as `inventario-service token` makes (RFC 7519;
    the standard library only, so Locust needs nothing more installed)."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = _b64(json.dumps({"sub": sub, "iat": now, "exp": now + ttl_s}, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


_signed = {"token": None, "renew_at": 0.0}


def auth_headers():
    """The Authorization header for a write; a signed token is renewed well before it expires,
    so a long run in the web UI keeps writing."""
    if INVENTARIO_TOKEN:
        return {"Authorization": f"Bearer {INVENTARIO_TOKEN}"}
    if time.time() >= _signed["renew_at"]:
        _signed["token"] = sign_token(JWT_SECRET, "locust", TOKEN_TTL_S)
        _signed["renew_at"] = time.time() + TOKEN_TTL_S / 2
    return {"Authorization": f"Bearer {_signed['token']}"}


class MonitorUser(HttpUser):
    """Asks the monitor for a live ping-echo: a 503 (worker not answering) counts as a failure."""

    host = MONITOR_URL
    weight = 3
    wait_time = between(0.1, 0.5)

    @task
    def monitor(self):
        with self.client.get("/monitor", name="/monitor", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")
            elif r.json().get("estado") not in ("OK", "DEGRADADO"):
                r.failure(f"estado {r.json().get('estado')}")


class InventarioUser(HttpUser):
    """Reads the inventory and keeps a producto of its own that it creates, updates and deletes."""

    host = INVENTARIO_URL
    weight = 3
    wait_time = between(0.1, 0.5)

    def on_start(self):
        self.mine = None
        self.etag = None

    @task(6)
    def list_all(self):
        self.client.get("/inventario", name="/inventario")

    @task(3)
    def read_one(self):
        self.client.get(f"/inventario/{random.randint(1, 20)}", name="/inventario/{id}")

    @task(1)
    def write(self):
        """Setting a stock by hand (a stocktake) names the version it was decided on: If-Match
        with the ETag of the last answer. A 412 means the producto changed since (nothing else
        writes this one, so it should not happen); its ETag is the one to use next."""
        nombre = f"locust-{uuid.uuid4().hex[:8]}"
        if self.mine is None:
            r = self.client.post("/inventario", json={"nombre": nombre, "cantidad": 5, "precio": 1.5}, headers=auth_headers(), name="POST /inventario")
            if r.status_code == 201:
                self.mine = r.json()["id"]
                self.etag = r.headers.get("ETag")
        elif random.random() < 0.7:
            headers = {**auth_headers(), "If-Match": self.etag}
            with self.client.put(f"/inventario/{self.mine}", json={"nombre": nombre, "cantidad": random.randint(0, 50), "precio": 2.0}, headers=headers, name="PUT /inventario/{id}", catch_response=True) as r:
                self.etag = r.headers.get("ETag", self.etag)
                if r.status_code != 200:
                    r.failure(f"{r.status_code}: {r.text[:200]}")
        else:
            headers = {**auth_headers(), "If-Match": self.etag}
            self.client.delete(f"/inventario/{self.mine}", headers=headers, name="DELETE /inventario/{id}")
            self.mine = None


class MovimientosUser(HttpUser):
    """Stock movements go through the queue (202 + task id); then the task's state is read."""

    host = INVENTARIO_URL
    weight = 2
    wait_time = between(0.2, 1.0)

    @task
    def entrada(self):
        producto = random.randint(1, 20)
        r = self.client.post(f"/inventario/{producto}/movimientos", json={"tipo": "entrada", "cantidad": 1}, headers=auth_headers(), name="POST /inventario/{id}/movimientos")
        if r.status_code == 202:
            self.client.get(f"/tareas/{r.json()['tarea_id']}", name="/tareas/{id}")
