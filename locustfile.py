"""Load for the availability experiment: the monitor's ping-echo under load, inventory reads and
writes, and stock movements through the queue. Hosts come from MONITOR_URL and INVENTARIO_URL
(defaults: the compose ports on localhost). Run it with ./run-locust.sh."""
import os
import random
import uuid

from locust import HttpUser, between, task

MONITOR_URL = os.environ.get("MONITOR_URL", "http://localhost:3002")
INVENTARIO_URL = os.environ.get("INVENTARIO_URL", "http://localhost:3001")


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

    @task(6)
    def list_all(self):
        self.client.get("/inventario", name="/inventario")

    @task(3)
    def read_one(self):
        self.client.get(f"/inventario/{random.randint(1, 20)}", name="/inventario/{id}")

    @task(1)
    def write(self):
        nombre = f"locust-{uuid.uuid4().hex[:8]}"
        if self.mine is None:
            r = self.client.post("/inventario", json={"nombre": nombre, "cantidad": 5, "precio": 1.5}, name="POST /inventario")
            if r.status_code == 201:
                self.mine = r.json()["id"]
        elif random.random() < 0.7:
            self.client.put(f"/inventario/{self.mine}", json={"nombre": nombre, "cantidad": random.randint(0, 50), "precio": 2.0}, name="PUT /inventario/{id}")
        else:
            self.client.delete(f"/inventario/{self.mine}", name="DELETE /inventario/{id}")
            self.mine = None


class MovimientosUser(HttpUser):
    """Stock movements go through the queue (202 + task id); then the task's state is read."""

    host = INVENTARIO_URL
    weight = 2
    wait_time = between(0.2, 1.0)

    @task
    def entrada(self):
        producto = random.randint(1, 20)
        r = self.client.post(f"/inventario/{producto}/movimientos", json={"tipo": "entrada", "cantidad": 1}, name="POST /inventario/{id}/movimientos")
        if r.status_code == 202:
            self.client.get(f"/tareas/{r.json()['tarea_id']}", name="/tareas/{id}")
