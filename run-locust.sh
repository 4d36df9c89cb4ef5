#!/usr/bin/env bash
# Loads the running system with Locust (locustfile.py).
#   ./run-locust.sh                      web UI on http://localhost:8089 (Ctrl-C ends it)
#   ./run-locust.sh --headless [USERS] [SECONDS]
#                                        no UI: USERS users (default 50) for SECONDS (default 15),
#                                        a summary at the end, exit status 1 on any failed request
# Either way Locust's reports are written into one directory per run, LOCUST_REPORT_DIR
# (default target/locust/<date-time>/), and the script says where at the end:
#   report.html                          the HTML report (charts, tables, failures)
#   locust_stats.csv                     per-endpoint totals and percentiles
#   locust_stats_history.csv             every few seconds, per endpoint and in aggregate
#   locust_failures.csv, locust_exceptions.csv
# Hosts: MONITOR_URL (default http://localhost:3002), INVENTARIO_URL (default http://localhost:3001).
# Installs Locust into .venv if it is missing.
set -euo pipefail
cd "$(dirname "$0")"
venv=.venv
if ! "$venv/bin/python" -c 'import locust' 2>/dev/null; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check locust
fi

reports=${LOCUST_REPORT_DIR:-target/locust/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$reports"
# --csv-full-history: the history file gets a row per endpoint, not only the aggregate, so one
# endpoint's failures can be followed through a worker kill.
report_flags=(--csv "$reports/locust" --csv-full-history --html "$reports/report.html")

if [ "${1:-}" = "--headless" ]; then
  users=${2:-50} seconds=${3:-15}
  mode=(--headless --users "$users" --spawn-rate "$users" --run-time "${seconds}s" --only-summary
    --exit-code-on-error 1)
else
  mode=(--web-host 127.0.0.1 --web-port 8089)
fi

# Locust writes its reports when it stops, Ctrl-C included; this shell waits for that and then
# says where they are, passing Locust's exit status on.
trap ':' INT
status=0
"$venv/bin/locust" -f locustfile.py "${mode[@]}" "${report_flags[@]}" || status=$?
echo "run-locust.sh: reports in $reports/ (report.html, locust_*.csv)" >&2
exit "$status"
