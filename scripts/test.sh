#!/usr/bin/env bash
# The test command. On a fresh machine it first installs what the tests need (redis-server,
# and a Python venv with Celery 5.5 for the interoperability tests), then checks formatting
# and lints, then runs every test against private redis-server instances it starts itself,
# then (in CI, or wherever Docker runs) the docker-compose end-to-end test with a Locust smoke.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says how long it took: CI has 30 minutes, and these lines show where they go.
step_started=$SECONDS
took() { echo "test.sh: $1 took $((SECONDS - step_started)) s (total $SECONDS s)" >&2; step_started=$SECONDS; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# A full run needs room: the test build's target directory (about 3.5 GB) and, with Docker, the
# images and their build cache. A disk that fills mid-build fails with linker errors that do not
# say why, so say it up front.
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
free_gb=$(df -Pk "$target_dir" | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
if [ "$free_gb" -lt 8 ]; then
  echo "test.sh: warning: only ${free_gb} GB free where cargo builds ($target_dir); a full run needs about 8 GB" >&2
fi

command -v openssl >/dev/null || apt_install openssl
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "test.sh: installing redis-server" >&2
  apt_install redis-server
fi

# The monitor's clock-skew test runs a worker under libfaketime.
command -v faketime >/dev/null || apt_install faketime

# The Grafana dashboard's test checks its queries with a real Prometheus (promtool, prometheus).
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "test.sh: installing prometheus" >&2
  apt_install --no-install-recommends prometheus
fi

# The inventory runs on PostgreSQL too: tests start private servers with Debian's binaries
# (initdb, pg_ctl), never the machine's own cluster.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  echo "test.sh: installing postgresql" >&2
  apt_install postgresql
fi

# The dashboard's end-to-end test drives Debian's Chromium through ChromeDriver (WebDriver).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "test.sh: installing chromium and chromium-driver" >&2
  apt_install chromium chromium-driver
fi

venv=.venv
if ! "$venv/bin/python" -c 'import celery, redis, flask, flask_sqlalchemy, gunicorn, jsonschema, yaml, locust, flower, openapi_spec_validator' 2>/dev/null; then
  echo "test.sh: preparing $venv (celery 5.5, redis, the bench's Flask app, jsonschema, pyyaml, locust, flower, openapi-spec-validator)" >&2
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check -r bench/python/requirements.txt jsonschema pyyaml locust 'flower>=2.2,<3' \
    'openapi-spec-validator>=0.7,<0.10'
fi
export CELERY_PYTHON="$PWD/$venv/bin/python"
took "setting up the machine"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
took "fmt and clippy"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
took "the workspace's tests"
# The inventory tests that are about behaviour once more, on PostgreSQL (a private server per
# test): the service's routes, movements, hostile input and start-up, and the worker's tasks.
TEST_DATABASE=postgres cargo test --locked -p inventario-service --test api --test movimientos --test hostil --test arranque -p inventario-worker --test tareas 2>&1 | tee -a "$log"
cargo run --locked -q -p bench -- --quick # the queue benchmark as a smoke (tiny N, seconds; no timing asserted)
took "the PostgreSQL pass and the bench smoke"

# The compose file is checked against the Compose schema everywhere (fast); the stack itself is
# built and exercised in CI and wherever a Docker engine answers (COMPOSE_E2E=0 skips it).
"$CELERY_PYTHON" tests/compose/validate.py docker-compose.yml tests/compose/compose-spec.json
if [ "${COMPOSE_E2E:-}" != 0 ] && { [ -n "${CI:-}" ] || docker info >/dev/null 2>&1; }; then
  bash scripts/compose-e2e.sh 2>&1 | tee -a "$log"
  took "the compose end-to-end test"
else
  echo "test.sh: no Docker engine here: compose end-to-end test skipped"
fi

# One closing line for the whole run (cargo prints one per test binary; the compose test one).
awk '/^test result:/ { p += $4; f += $6 } /^compose e2e:/ { p += $3; f += $5 } END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
