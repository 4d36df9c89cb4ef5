#!/usr/bin/env bash
# Runs the whole system on this machine without Docker, with the settings of docker-compose.yml:
# builds the release binaries, starts a redis-server if none answers at REDIS_URL (a local one,
# data under .data/), then inventario-service (:3001), inventario-worker and monitor-service
# (:3002), each log line prefixed with its program's name. Ctrl-C stops everything cleanly:
# the services first (they finish what they hold), Redis last. The service's writes need a bearer
# token: without JWT_SECRET in the environment a development secret is used, and the command
# that prints a token is shown at start.
set -euo pipefail
cd "$(dirname "$0")/.."
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export QUEUE=${QUEUE:-inventario}
export DATABASE_URL=${DATABASE_URL:-sqlite://$PWD/.data/inventario.db}
export PING_INTERVAL_MS=${PING_INTERVAL_MS:-250} PING_TIMEOUT_MS=${PING_TIMEOUT_MS:-750}
# The same DEVELOPMENT secret as docker-compose.yml's default: give JWT_SECRET a long random value
# for anything else.
jwt_secret=${JWT_SECRET:-} dev_secret=
if [ -z "$jwt_secret" ]; then
  jwt_secret=dev-secret-change-me dev_secret=1
fi
mkdir -p .data

cargo build --release -p inventario-service -p inventario-worker -p monitor-service

services=()
redis_pid=
# Ctrl-C: the services stop first (they finish what they hold), Redis last.
stop() {
  trap - EXIT INT TERM
  [ ${#services[@]} -eq 0 ] || kill -TERM "${services[@]}" 2>/dev/null || true
  for pid in "${services[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$redis_pid" ]; then kill -TERM "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
}
trap 'stop; exit 130' INT TERM
trap stop EXIT

# Starts "$@" in the background, its output prefixed by [name]; the prefixer ignores Ctrl-C so
# the last lines a program writes while stopping are still shown. Sets $started.
start() {
  local name=$1; shift
  "$@" > >(trap '' INT TERM; exec sed -u "s/^/[$name] /") 2>&1 &
  started=$!
}

if ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  host=$(sed -E 's#^[a-z+]+://([^@/]*@)?([^:/]+).*#\2#' <<<"$REDIS_URL")
  port=$(sed -nE 's#^[a-z+]+://([^@/]*@)?[^:/]+:([0-9]+).*#\2#p' <<<"$REDIS_URL")
  case "$host" in
    127.0.0.1|localhost) ;;
    *) echo "run.sh: no Redis answers at $REDIS_URL" >&2; exit 1 ;;
  esac
  command -v redis-server >/dev/null || { echo "run.sh: install redis-server (apt-get install -y redis-server)" >&2; exit 1; }
  # In a session of its own, so Ctrl-C reaches it only through stop(), after the services.
  start redis setsid redis-server --port "${port:-6379}" --bind 127.0.0.1 --dir "$PWD/.data" --appendonly yes --save ""
  redis_pid=$started
  for _ in $(seq 50); do redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

start inventario-service env HTTP_ADDR="${INVENTARIO_ADDR:-0.0.0.0:3001}" JWT_SECRET="$jwt_secret" ./target/release/inventario-service
services+=("$started")
start inventario-worker ./target/release/inventario-worker
services+=("$started")
start monitor-service env HTTP_ADDR="${MONITOR_ADDR:-0.0.0.0:3002}" ./target/release/monitor-service
services+=("$started")

# How to write: a token from the service's own subcommand, with the secret it runs with.
if [ -n "$dev_secret" ]; then
  echo "run.sh: JWT_SECRET is not set: the service uses the DEVELOPMENT secret dev-secret-change-me"
  secret_env="JWT_SECRET=dev-secret-change-me "
else
  echo "run.sh: the service checks tokens with your JWT_SECRET (have it in the shell you get a token from)"
  secret_env=
fi
cat <<EOF
run.sh: writes (POST, PUT, DELETE) need a bearer token; in another shell:
  TOKEN=\$(${secret_env}./target/release/inventario-service token --sub \$USER --ttl 1h)
  curl -s -X POST localhost:3001/inventario -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -d '{"nombre": "Miel de azahar 500 g", "cantidad": 12, "precio": 7.25}'
EOF

# Runs until Ctrl-C. A program that dies (say, the worker killed for an availability
# experiment) does not stop the others; start it again by hand with the same environment.
wait
