#!/usr/bin/env bash
# The test command. On a fresh machine it first installs what the tests need (redis-server,
# and a Python venv with Celery 5.5 for the interoperability tests), then checks formatting
# and lints, then runs every test against private redis-server instances it starts itself.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

command -v openssl >/dev/null || apt_install openssl
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "test.sh: installing redis-server" >&2
  apt_install redis-server
fi

venv=.venv
if ! "$venv/bin/python" -c 'import celery, redis' 2>/dev/null; then
  echo "test.sh: creating $venv with celery 5.5 and redis" >&2
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check 'celery==5.5.3' 'redis>=5,<9'
fi
export CELERY_PYTHON="$PWD/$venv/bin/python"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
