"""What the compose checks (e2e.py, escala.py) share: reporting a check and waiting, bounded, for
state that lives in other processes."""
import sys
import time


def ok(message):
    print(f"ok - {message}", flush=True)


def fail(message):
    sys.exit(f"FAILED: {message}")


def wait_until(what, condition, limit=30.0, step=0.25, explain=None):
    """For state that lives in other processes and announces nothing we can await. On timeout,
    `explain` (if given) is called first, to print what those processes said about it."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    if explain is not None:
        explain()
    fail(f"{what} (waited {limit:.0f} s)")
