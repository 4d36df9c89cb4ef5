"""Instructions one task costs a worker binary, counted by callgrind (instructions, not
seconds: the figure repeats whatever else the machine is doing). The worker drains N noop
messages of Celery's default priority, written as a Python client writes them, from a private
redis-server, under `valgrind --tool=callgrind`; run for two N, the difference divided by the
difference in N leaves start-up and shutdown out.

Usage: instructions_per_task.py BINARY [--events]   (needs valgrind, redis-server, redis-py)
Example: .venv/bin/python bench/python/instructions_per_task.py target/release/demo-worker
"""
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import redis

SMALL, LARGE = 2000, 12000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def message(i):
    task_id = str(uuid.uuid4())
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = base64.b64encode(json.dumps([[i], {}, embed]).encode()).decode()
    return json.dumps({
        "body": body, "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"lang": "py", "task": "noop", "id": task_id, "shadow": None, "eta": None,
                    "expires": None, "group": None, "group_index": None, "retries": 0,
                    "timelimit": [None, None], "root_id": task_id, "parent_id": None,
                    "argsrepr": f"[{i}]", "kwargsrepr": "{}", "origin": "gen@vm",
                    "ignore_result": False, "replaced_task_nesting": 0,
                    "stamped_headers": None, "stamps": {}},
        "properties": {"correlation_id": task_id, "reply_to": "r", "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": "inventario"},
                       "priority": 0, "body_encoding": "base64",
                       "delivery_tag": str(uuid.uuid4())}})


def instructions(binary, n, events):
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    r = redis.Redis(port=port)
    while True:
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.lpush("inventario", message(i))
    pipe.execute()
    out = os.path.join(tempfile.mkdtemp(), "callgrind.out")
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{port}/0", RUST_LOG="warn",
               TASK_EVENTS="true" if events else "false")
    worker = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                               binary], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while r.llen("inventario") > 0 or r.hlen("unacked") > 0:
        time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    worker.wait()
    server.terminate()
    server.wait()
    with open(out) as f:
        total = next(int(line.split()[1]) for line in f
                     if line.startswith(("summary:", "totals:")))
    os.remove(out)
    return total


def main():
    binary = sys.argv[1]
    events = "--events" in sys.argv[2:]
    small, large = instructions(binary, SMALL, events), instructions(binary, LARGE, events)
    per_task = (large - small) / (LARGE - SMALL)
    print(f"{binary}: {per_task:.0f} instructions per task"
          f" ({small} for {SMALL} tasks, {large} for {LARGE}; events {'on' if events else 'off'})")


if __name__ == "__main__":
    main()
