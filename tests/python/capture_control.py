"""Retakes `shared/tests/fixtures/celery-5.5-redis-control.txt` and
`celery-5.5-control-replies.json`: a Python Celery 5.5 worker's remote control traffic over Redis.

It starts a private redis-server on a free port (never the machine's own Redis), runs
`redis-cli MONITOR` into a file, starts a Celery worker on `celery_app.py` (queue `inventario`,
`-c 2 -P prefork --without-mingle --without-gossip -n py@capture`, no `-E`), and then, from a
Python client and from the `celery` command line, in this order: `inspect ping` (client, CLI),
`status` (CLI), `stats`, `registered`, `active` while `sleep` tasks run, `reserved`, `scheduled`
with a `countdown=30` task, `active_queues`, pings filtered by destination (ours, and a node that
does not exist), `revoke` of the countdown task (once without a reply, once with one), `revoke`
with `terminate=True` of a running task, `rate_limit`, `time_limit`, `add_consumer` /
`cancel_consumer`, `enable_events` / `disable_events`, and last `celery control shutdown` (CLI).
The client's control calls ask for replies (`reply=True`, 1 s) so that each has one to compare.

The capture keeps MONITOR's timestamps and every command, less the `OK` MONITOR prints first.
The JSON holds, keyed by call name, the decoded reply the client got (for the command-line calls
their output, and the worker's replies decoded from the capture), and under "requests" each
call's pidbox request body, decoded from the capture.

Run it with the project's venv Python (Celery 5.5.3, kombu 5.5.4, redis), from anywhere:

    .venv/bin/python tests/python/capture_control.py [OUT_DIR]

OUT_DIR defaults to `shared/tests/fixtures`. `capture_events.py` reuses the helpers below.
"""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent.parent / "shared" / "tests" / "fixtures"
CELERY = Path(sys.executable).with_name("celery")  # the celery command of the venv running us
WORKER = "py@capture"
WORKER_ARGS = ["-c", "2", "-P", "prefork", "--without-mingle", "--without-gossip",
               "-n", WORKER, "-Q", "inventario", "-l", "info"]
TIMEOUT = 1.0  # seconds a client waits for replies


# --- the private Redis, MONITOR and the worker -------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Capture:
    """A private redis-server with `redis-cli MONITOR` writing to a file, and the Celery worker
    under capture. Use as a context manager; `finish(path)` writes the capture to `path`."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="celery-capture-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.env = dict(os.environ, CELERY_URL=self.url)
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL)
        self._wait_for_redis()
        self.monitor_path = self.tmp / "monitor.txt"
        self.monitor = subprocess.Popen(["redis-cli", "-p", str(self.port), "MONITOR"],
                                        stdout=open(self.monitor_path, "wb"))
        while self.monitor_path.stat().st_size == 0:  # MONITOR's "OK": it is listening
            time.sleep(0.05)
        self.worker = None

    def _wait_for_redis(self):
        for _ in range(100):
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "PING"],
                                  capture_output=True, text=True)
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def start_worker(self, *extra):
        """Starts the worker and returns once it logged `ready.`; its log goes to the temp dir."""
        self.worker = subprocess.Popen(
            [str(CELERY), "-A", "celery_app", "worker", *WORKER_ARGS, *extra],
            cwd=HERE, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()

        def tee():
            with open(self.tmp / "worker.log", "w") as log:
                for line in self.worker.stdout:
                    log.write(line)
                    log.flush()
                    if f"{WORKER} ready." in line:
                        ready.set()

        threading.Thread(target=tee, daemon=True).start()
        if not ready.wait(30):
            raise RuntimeError(f"worker not ready; see {self.tmp / 'worker.log'}")
        time.sleep(0.5)  # let its first BRPOPs and the pidbox subscription go out

    def cli(self, *args):
        """Runs `celery -A celery_app ARGS...` as a client; returns (returncode, stdout)."""
        done = subprocess.run([str(CELERY), "-A", "celery_app", *args], cwd=HERE, env=self.env,
                              capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout + done.stderr

    def wait_worker_exit(self, timeout=30):
        self.worker.wait(timeout)

    def finish(self, path):
        """Stops MONITOR and writes its capture, without the first `OK` line, to `path`."""
        time.sleep(0.5)
        self.monitor.send_signal(signal.SIGTERM)
        self.monitor.wait(10)
        lines = self.monitor_path.read_bytes().splitlines(keepends=True)
        if lines and lines[0].strip() == b"OK":
            lines = lines[1:]
        Path(path).write_bytes(b"".join(lines))
        return lines

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for proc in (self.worker, self.monitor):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.redis.send_signal(signal.SIGTERM)
        self.redis.wait(10)


# --- reading a MONITOR capture -----------------------------------------------------------------

LINE = re.compile(rb'^(\d+\.\d+) \[(\d+) ([^\]]+)\] (.*)$')
ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("a"): b"\a", ord("b"): b"\b",
           ord('"'): b'"', ord("\\"): b"\\"}


def parse_args(text):
    """The quoted arguments of one MONITOR line (redis-cli's C-style escapes) as bytes."""
    args, i = [], 0
    while i < len(text):
        if text[i] != ord('"'):
            i += 1
            continue
        arg, i = bytearray(), i + 1
        while text[i] != ord('"'):
            if text[i] == ord("\\"):
                if text[i + 1] == ord("x"):
                    arg.append(int(text[i + 2:i + 4], 16))
                    i += 4
                else:
                    arg += ESCAPES[text[i + 1]]
                    i += 2
            else:
                arg.append(text[i])
                i += 1
        args.append(bytes(arg))
        i += 1
    return args


def commands(lines):
    """(timestamp, client, [command, args...]) for each line of a capture."""
    for line in lines:
        m = LINE.match(line.rstrip(b"\n"))
        if m:
            yield float(m.group(1)), m.group(3).decode(), parse_args(m.group(4))


def decode_message(payload):
    """A kombu message as Redis holds it: the envelope, with its body decoded from base64/JSON."""
    envelope = json.loads(payload)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    envelope["body"] = json.loads(body)
    return envelope


def pidbox_traffic(lines, start, end):
    """The pidbox requests PUBLISHed and the replies LPUSHed between two instants."""
    requests, replies = [], []
    for ts, _client, args in commands(lines):
        if not start <= ts <= end:
            continue
        if args[0].upper() == b"PUBLISH" and args[1].endswith(b".celery.pidbox"):
            requests.append(decode_message(args[2])["body"])
        elif args[0].upper() == b"LPUSH" and b".reply.celery.pidbox" in args[1]:
            replies.append(decode_message(args[2])["body"])
    return requests, replies


def write_json(path, value):
    Path(path).write_text(json.dumps(value, indent=2, ensure_ascii=False, default=repr) + "\n")


# --- the control capture -----------------------------------------------------------------------

def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES
    out.mkdir(parents=True, exist_ok=True)
    from celery import Celery

    calls = []  # (name, start, end, reply, is_cli)
    ids = {}
    with Capture() as cap:
        cap.start_worker()
        app = Celery("client", broker=cap.url, backend=cap.url)
        control = app.control

        def call(name, fn):
            start = time.time()
            reply = fn()
            calls.append((name, start, time.time(), reply, False))
            print(f"{name}: {json.dumps(reply, default=repr)[:200]}", file=sys.stderr)
            return reply

        def cli(name, *args):
            start = time.time()
            code, output = cap.cli(*args)
            calls.append((name, start, time.time(), {"returncode": code, "output": output}, True))
            print(f"{name}: exit {code}\n{output}", file=sys.stderr)

        def inspect(**options):
            return control.inspect(timeout=TIMEOUT, **options)

        call("inspect.ping", lambda: inspect().ping())
        cli("cli.inspect.ping", "inspect", "ping")
        cli("cli.status", "status")
        call("inspect.stats", lambda: inspect().stats())
        call("inspect.registered", lambda: inspect().registered())

        # Two sleeps run (-c 2) and a third waits its turn in the worker: active, then reserved.
        # (Only ids are kept: a dropped AsyncResult unsubscribes while Redis is still there.)
        sleeps = [app.send_task("sleep", args=[3000], queue="inventario").id for _ in range(3)]
        ids["active"], ids["reserved"] = sleeps[:2], sleeps[2]
        time.sleep(0.5)
        call("inspect.active", lambda: inspect().active())
        call("inspect.reserved", lambda: inspect().reserved())

        later = app.send_task("noop", args=[30], queue="inventario", countdown=30).id
        ids["scheduled"] = later
        time.sleep(0.3)
        call("inspect.scheduled", lambda: inspect().scheduled())
        call("inspect.active_queues", lambda: inspect().active_queues())
        call("inspect.ping.destination_match", lambda: inspect(destination=[WORKER]).ping())
        call("inspect.ping.destination_other", lambda: inspect(destination=["nobody@x"]).ping())

        call("control.revoke.no_reply", lambda: control.revoke(later))
        call("control.revoke", lambda: control.revoke(later, reply=True, timeout=TIMEOUT))
        running = app.send_task("sleep", args=[10000], queue="inventario").id
        ids["terminated"] = running
        time.sleep(0.5)
        call("control.revoke.terminate", lambda: control.revoke(
            running, terminate=True, reply=True, timeout=TIMEOUT))
        call("control.rate_limit", lambda: control.rate_limit(
            "noop", "10/s", reply=True, timeout=TIMEOUT))
        call("control.time_limit", lambda: control.time_limit(
            "sleep", soft=1, hard=2, reply=True, timeout=TIMEOUT))
        call("control.add_consumer", lambda: control.add_consumer(
            "extra", reply=True, timeout=TIMEOUT))
        call("control.cancel_consumer", lambda: control.cancel_consumer(
            "extra", reply=True, timeout=TIMEOUT))
        call("control.enable_events", lambda: control.enable_events(reply=True, timeout=TIMEOUT))
        call("control.disable_events", lambda: control.disable_events(reply=True, timeout=TIMEOUT))
        cli("cli.control.shutdown", "control", "shutdown")
        cap.wait_worker_exit()
        lines = cap.finish(out / "celery-5.5-redis-control.txt")

    import celery
    import kombu
    redis_version = re.search(r"v=(\S+)", subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True).stdout).group(1)
    replies = {"about": {
        "celery": celery.__version__, "kombu": kombu.__version__, "redis-server": redis_version,
        "worker": WORKER,
        "task_ids": ids,
        "note": "control calls were made with reply=True and a 1 s timeout, except "
                "control.revoke.no_reply (the default, reply=False); cli.* are the celery "
                "command's output, with the worker's replies decoded from the capture",
    }}
    requests = {}
    for name, start, end, reply, is_cli in calls:
        sent, got = pidbox_traffic(lines, start, end)
        if len(sent) != 1:
            print(f"warning: {name}: {len(sent)} pidbox requests in its window", file=sys.stderr)
        requests[name] = sent[0] if len(sent) == 1 else sent
        replies[name] = dict(reply, wire_replies=got) if is_cli else reply
    replies["requests"] = requests
    write_json(out / "celery-5.5-control-replies.json", replies)


if __name__ == "__main__":
    main()
