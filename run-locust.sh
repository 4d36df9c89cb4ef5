#!/usr/bin/env bash
# Loads the running system with Locust (locustfile.py).
#   ./run-locust.sh                      web UI on http://localhost:8089
#   ./run-locust.sh --headless [USERS] [SECONDS]
#                                        no UI: USERS users (default 50) for SECONDS (default 15),
#                                        a summary at the end, exit status 1 on any failed request
# Hosts: MONITOR_URL (default http://localhost:3002), INVENTARIO_URL (default http://localhost:3001).
# Installs Locust into .venv if it is missing.
set -euo pipefail
cd "$(dirname "$0")"
venv=.venv
if ! "$venv/bin/python" -c 'import locust' 2>/dev/null; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check locust
fi
if [ "${1:-}" = "--headless" ]; then
  users=${2:-50} seconds=${3:-15}
  exec "$venv/bin/locust" -f locustfile.py --headless --users "$users" --spawn-rate "$users" \
    --run-time "${seconds}s" --only-summary --exit-code-on-error 1
fi
exec "$venv/bin/locust" -f locustfile.py --web-host 127.0.0.1 --web-port 8089
