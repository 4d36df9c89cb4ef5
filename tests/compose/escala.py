"""Checks the running escala profile (started by scripts/compose-e2e.sh) from outside, as a user
would: through the balancer, the monitor and HAProxy's stats page on 127.0.0.1, and `docker
compose` for what an operator does (kill a container, read a log). Every wait is bounded.

1. The balancer spreads requests over the three instances (X-Instancia) in equal shares under
   roundrobin, in the weights' proportion under weighted; leastconn is selectable; a value of
   ESCALA_BALANCE it does not take stops it at start with a message.
2. Under a steady load of authenticated stock movements (each with an Idempotency-Key) and
   reads, one instance killed (SIGKILL) and another stopped (`docker stop`) cost no failed
   request, and the stock ends exactly where the 202'd movements put it.
3. Under the same load, the Redis master killed (SIGKILL): Sentinel promotes the replica, the
   programs follow by themselves, every 202'd movement is applied, the monitor logs [ALERTA] and
   [RECUPERADO]; the time to recover is printed.

ESCALA_SKIP_REDIS_FAILOVER=1 leaves out part 3 (for a stack whose programs reach Redis directly)."""
import csv
import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

from checks import fail, ok, wait_until

HOST = "127.0.0.1"
BALANCER = int(os.environ["ESCALA_HOST_PORT"])
MONITOR = int(os.environ["ESCALA_MONITOR_HOST_PORT"])
STATS = int(os.environ["ESCALA_STATS_HOST_PORT"])
APIS = ["escala-api-1", "escala-api-2", "escala-api-3"]
# The steady load: requests a second in all, from this many threads, half of them movements.
RATE = float(os.environ.get("ESCALA_LOAD_RPS", "240"))
THREADS = int(os.environ.get("ESCALA_LOAD_THREADS", "12"))


def compose(*args, env=None, check=True):
    run = subprocess.run(["docker", "compose", *args], capture_output=True, text=True, env=env)
    if check and run.returncode != 0:
        sys.exit(f"FAILED: docker compose {' '.join(args)}: {run.stderr.strip()}")
    return run


def request(port, method, path, body=None, headers=None, timeout=10.0):
    """One request on a connection of its own: (status, headers, parsed body), or (None, error)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return response.status, response.headers, parsed
    except (OSError, http.client.HTTPException) as error:
        return None, None, str(error)
    finally:
        conn.close()


def cantidad(producto):
    status, _, body = request(BALANCER, "GET", f"/inventario/{producto}")
    assert status == 200, (status, body)
    return body["cantidad"]


def stats():
    """HAProxy's stats as CSV rows keyed by (proxy, server)."""
    status, _, body = request(STATS, "GET", "/;csv")
    assert status == 200 and isinstance(body, str), (status, body)
    rows = csv.DictReader(io.StringIO(body.lstrip("# ")))
    return {(r["pxname"], r["svname"]): r for r in rows}


def instances(n):
    """Who served n reads, each on a fresh connection."""
    seen = Counter()
    for _ in range(n):
        status, headers, body = request(BALANCER, "GET", "/health")
        assert status == 200, (status, body)
        seen[headers["X-Instancia"]] += 1
    return seen


def balancer_with(algorithm):
    env = {**os.environ, "ESCALA_BALANCE": algorithm}
    compose("up", "-d", "--no-deps", "--wait", "--wait-timeout", "60", "escala-balancer", env=env)
    wait_until(f"the balancer ({algorithm}) sees the three instances up",
               lambda: all(stats()[("apis", s)]["status"] == "UP" for s in ("api-1", "api-2", "api-3")))
    return stats()


# 0. Published on loopback only (PUBLISH_ADDR unset); the stats page always on loopback.
for service, port in (("escala-balancer", 3001), ("escala-balancer", 8404), ("escala-monitor", 3002)):
    published = compose("port", service, str(port)).stdout.strip()
    assert published.startswith("127.0.0.1:"), (service, port, published)
ok("the balancer (3001), its stats page (8404) and the monitor published on 127.0.0.1 only")

# 1. The algorithms.
table = balancer_with("roundrobin")
assert table[("apis", "BACKEND")]["algo"] == "roundrobin", table[("apis", "BACKEND")]
seen = instances(60)
assert set(seen) == set(APIS) and all(19 <= c <= 21 for c in seen.values()), seen
ok(f"roundrobin: 60 reads served by {dict(sorted(seen.items()))}")

table = balancer_with("weighted")
weights = {s: int(table[("apis", s)]["weight"]) for s in ("api-1", "api-2", "api-3")}
assert table[("apis", "BACKEND")]["algo"] == "roundrobin" and weights == {"api-1": 3, "api-2": 2, "api-3": 1}, weights
seen = instances(60)
expected = {"escala-api-1": 30, "escala-api-2": 20, "escala-api-3": 10}
assert all(abs(seen[k] - v) <= 2 for k, v in expected.items()), seen
ok(f"weighted (3/2/1): 60 reads served by {dict(sorted(seen.items()))}")

table = balancer_with("leastconn")
assert table[("apis", "BACKEND")]["algo"] == "leastconn", table[("apis", "BACKEND")]
assert {int(table[("apis", s)]["weight"]) for s in ("api-1", "api-2", "api-3")} == {1}, table
seen = instances(30)
assert set(seen) == set(APIS), seen
ok(f"leastconn selected (stats: algo leastconn, weights 1): 30 reads served by {dict(sorted(seen.items()))}")

bad = compose("run", "--rm", "--no-deps", "-T", "-e", "BALANCE=fastest", "escala-balancer",
              "haproxy", "-c", "-f", "/usr/local/etc/haproxy/haproxy.cfg", check=False)
said = bad.stdout + bad.stderr
assert bad.returncode != 0 and "roundrobin, weighted or leastconn" in said, (bad.returncode, said)
bad = compose("run", "--rm", "--no-deps", "-T", "-e", "BALANCE=weighted", "-e", "WEIGHT_2=dos", "escala-balancer", check=False)
assert bad.returncode != 0 and "WEIGHT_2='dos' (ESCALA_WEIGHT_2)" in bad.stderr, (bad.returncode, bad.stderr)
ok("ESCALA_BALANCE=fastest, ESCALA_WEIGHT_2=dos: the balancer refuses to start, saying what it takes")

balancer_with("roundrobin")

# The writes need a token signed with the stack's JWT_SECRET.
TOKEN = compose("exec", "-T", "escala-api-1", "inventario-service", "token", "--sub", "escala-e2e", "--ttl", "1h").stdout.strip()
assert TOKEN.count(".") == 2, TOKEN
status, _, body = request(BALANCER, "POST", "/inventario", {"nombre": f"escala {uuid.uuid4().hex[:8]}", "cantidad": 0, "precio": 1},
                          headers={"Authorization": f"Bearer {TOKEN}"})
assert status == 201, (status, body)
PRODUCTO = body["id"]


class Load:
    """A steady load through the balancer: each thread on a kept-alive connection of its own,
    alternating an `entrada` of 1 on PRODUCTO (with a fresh Idempotency-Key) and a read of it.
    With `retry` a movement answered 503 (Redis unavailable) or not answered at all is sent again
    with the same key until it gets its 202, as a client should; otherwise any answer but 202/200
    counts as a failure."""

    def __init__(self, retry=False):
        self.retry = retry
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.failures = []
        self.accepted = []  # the keys of movements answered 202
        self.unavailable = []  # (time, status): 503s and dropped answers, each retried
        self.served_by = Counter()
        self.last_accepted = 0.0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(THREADS)]
        self.started = time.monotonic()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        self.elapsed = time.monotonic() - self.started

    def _send(self, conn, method, path, body, headers):
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            return conn, response.status, response.headers.get("X-Instancia"), raw
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            return http.client.HTTPConnection(HOST, BALANCER, timeout=20), None, None, str(error).encode()

    def _run(self, i):
        conn = http.client.HTTPConnection(HOST, BALANCER, timeout=20)
        period = THREADS / RATE
        next_at = time.monotonic() + period * i / THREADS
        n = 0
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        while not self.stop.is_set():
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            next_at = max(next_at + period, time.monotonic() - period)
            n += 1
            if n % 2:
                key = f"escala-{uuid.uuid4()}"
                body = json.dumps({"tipo": "entrada", "cantidad": 1})
                while True:
                    conn, status, who, raw = self._send(conn, "POST", f"/inventario/{PRODUCTO}/movimientos", body,
                                                        {**auth, "Idempotency-Key": key})
                    with self.lock:
                        self.requests += 1
                        if status == 202:
                            self.accepted.append(key)
                            self.last_accepted = time.monotonic()
                            self.served_by[who] += 1
                        elif self.retry and status in (None, 503):
                            self.unavailable.append((time.monotonic(), status))
                        else:
                            self.failures.append((time.monotonic(), "POST", status, raw[:200]))
                    if status == 202 or not (self.retry and status in (None, 503)):
                        break
                    time.sleep(0.1)
            else:
                conn, status, who, raw = self._send(conn, "GET", f"/inventario/{PRODUCTO}", None, {})
                with self.lock:
                    self.requests += 1
                    if status == 200:
                        self.served_by[who] += 1
                    else:
                        self.failures.append((time.monotonic(), "GET", status, raw[:200]))

    def summary(self):
        return (f"{self.requests} requests in {self.elapsed:.1f} s ({self.requests / self.elapsed:.0f}/s), "
                f"{len(self.accepted)} movements accepted, {len(self.failures)} failed")


def queue_idle():
    status, _, body = request(MONITOR, "GET", "/monitor/colas")
    if status != 200 or body.get("obsoleto"):
        return False
    colas = body.get("colas") or []
    return all(c.get("pendientes", 0) == 0 for c in colas) and not body.get("retenidos")


def applied_exactly(expected):
    """The stock reaches `expected` with nothing left queued or held; past it is a failure."""
    def reached():
        now = cantidad(PRODUCTO)
        if now > expected:
            fail(f"producto {PRODUCTO}: cantidad {now}, more than the {expected} the 202'd movements imply")
        return now == expected and queue_idle()
    wait_until(f"producto {PRODUCTO} reaches cantidad {expected}", reached, limit=120, step=0.5)
    assert cantidad(PRODUCTO) == expected


def up(service):
    compose("up", "-d", "--no-recreate", "--wait", "--wait-timeout", "60", service)


def server_up(name):
    return stats()[("apis", name)]["status"] == "UP"


# 2. An instance killed, then one stopped, under load.
with Load() as load:
    time.sleep(4)
    killed_at = time.monotonic()
    compose("kill", "-s", "SIGKILL", "escala-api-2")
    wait_until("HAProxy marks api-2 down", lambda: not server_up("api-2"), limit=15)
    down_after = time.monotonic() - killed_at
    time.sleep(3)
    up("escala-api-2")
    wait_until("HAProxy marks api-2 up again", lambda: server_up("api-2"), limit=30)
    time.sleep(2)
    stopped_at = time.monotonic()
    compose("stop", "escala-api-3")
    stop_took = time.monotonic() - stopped_at
    time.sleep(3)
    up("escala-api-3")
    wait_until("HAProxy marks api-3 up again", lambda: server_up("api-3"), limit=30)
    time.sleep(2)
print(f"  load: {load.summary()}; served by {dict(sorted(load.served_by.items()))}")
print(f"  api-2 SIGKILLed: marked down after {down_after:.1f} s; api-3 `docker stop`: took {stop_took:.1f} s")
if load.failures:
    fail(f"{len(load.failures)} failed requests, first ones: {load.failures[:5]}")
retried = sum(int(stats()[("apis", s)]["wretr"]) for s in ("api-1", "api-2", "api-3"))
redispatched = sum(int(stats()[("apis", s)]["wredis"]) for s in ("api-1", "api-2", "api-3"))
ok(f"an instance SIGKILLed and one stopped under load: 0 failed requests "
   f"(HAProxy retried {retried}, redispatched {redispatched})")
expected = len(load.accepted)
applied_exactly(expected)
ok(f"cantidad of producto {PRODUCTO} is exactly the {expected} movements answered 202")

if os.environ.get("ESCALA_SKIP_REDIS_FAILOVER") == "1":
    print("escala: part 3 (Redis failover) skipped")
    sys.exit(0)


# 3. The Redis master killed under load.
# Sentinel knows the data servers by their fixed addresses (docker-compose.yml's escala network).
PREFIX = os.environ.get("ESCALA_NET_PREFIX", "10.203.17")
SERVERS = {f"{PREFIX}.11": "escala-redis", f"{PREFIX}.12": "escala-redis-replica-1",
           f"{PREFIX}.13": "escala-redis-replica-2"}


def sentinel_master():
    """The service Sentinel names as the master, or the address it gives if it is none of ours."""
    out = compose("exec", "-T", "escala-sentinel-1", "redis-cli", "-p", "26379", "sentinel",
                  "get-master-addr-by-name", "inventario", check=False).stdout.split()
    return SERVERS.get(out[0], out[0]) if out else None


def promoted_replica(master, limit):
    """The replica Sentinel promotes after `master` died. A failover whose first attempt finds
    no replica fit (their INFO is refreshed every 10 s while the master is healthy) is retried
    after twice the failover timeout; a failover that does not come is shown with the
    sentinels' own account of it."""
    def sentinels_logs():
        for sentinel in ("escala-sentinel-1", "escala-sentinel-2", "escala-sentinel-3"):
            print(f"--- {sentinel}", compose("logs", "--no-color", "--tail", "40", sentinel, check=False).stdout)
    return wait_until("Sentinel promotes a replica",
                      lambda: (lambda m: m if m not in (None, master) else None)(sentinel_master()),
                      limit=limit, step=0.5, explain=sentinels_logs)


def monitor_lines(marker, since):
    text = compose("logs", "--no-color", "--since", since, "escala-monitor").stdout
    return [line.split("|", 1)[-1].strip() for line in text.splitlines() if marker in line]


master = sentinel_master()
if master not in SERVERS.values():
    fail(f"Sentinel names {master} as the master, none of {sorted(SERVERS.values())}")
base = cantidad(PRODUCTO)
since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
with Load(retry=True) as load:
    time.sleep(4)
    killed_at = time.monotonic()
    compose("kill", "-s", "SIGKILL", master)
    replica = promoted_replica(master, limit=60)
    promoted_after = time.monotonic() - killed_at
    # The system goes on by itself: movements are accepted again, with nobody's help, and
    # for a while none is refused.
    def steady():
        last_refused = max((t for t, _ in load.unavailable), default=killed_at)
        return load.last_accepted > last_refused and time.monotonic() - last_refused > 3
    wait_until("movements accepted again after the promotion", steady, limit=60)
print(f"  load: {load.summary()}; {len(load.unavailable)} answers 503 or none while Redis failed over, each retried with its key")
if load.failures:
    fail(f"{len(load.failures)} failed requests (other than 503 during the failover), first ones: {load.failures[:5]}")
last_unavailable = max((t for t, _ in load.unavailable), default=killed_at)
recovered_after = last_unavailable - killed_at
applied_exactly(base + len(load.accepted))
ok(f"every movement answered 202 across the failover is applied: cantidad {base + len(load.accepted)}")
alert = wait_until("[ALERTA] in the monitor's log", lambda: monitor_lines("[ALERTA]", since), limit=30)
back = wait_until("[RECUPERADO] in the monitor's log", lambda: monitor_lines("[RECUPERADO]", since), limit=30)
ok(f"monitor: {alert[0]} / {back[-1]}")
ok(f"Redis master SIGKILLed: Sentinel promoted {replica} after {promoted_after:.1f} s; "
   f"movements accepted again {recovered_after:.1f} s after the kill")

# The old master, started again, comes back as a replica of the new one.
up(master)
role = wait_until(f"{master} rejoins as a replica", lambda: "role:slave" in compose(
    "exec", "-T", master, "redis-cli", "info", "replication").stdout and "master_link_status:up" in compose(
    "exec", "-T", master, "redis-cli", "info", "replication").stdout, limit=60)
ok(f"{master} restarted: Sentinel made it a replica of {replica}")
