#!/usr/bin/env bash
# Runs the whole system on this machine without Docker, with the settings of docker-compose.yml,
# and gives the availability experiment its loop (kill the worker, watch the monitor, start it
# again) as one command each, from a second shell:
#
#   scripts/run.sh               builds the release binaries, starts a redis-server if none answers
#                                at REDIS_URL (a local one, data under .data/), then
#                                inventario-service (:3001), inventario-worker and monitor-service
#                                (:3002), each log line prefixed with its program's name. Ctrl-C
#                                stops everything cleanly: the services first (they finish what
#                                they hold), Redis last.
#   scripts/run.sh kill-worker   SIGKILLs every inventario-worker that run.sh started, as
#                                `docker compose kill inventario-worker` does.
#   scripts/run.sh worker        starts one more inventario-worker in this shell's foreground
#                                (Ctrl-C stops it), with the environment the running system was
#                                started with: to restart the killed worker, or to add a second.
#                                Variables set on its command line win, e.g.
#                                `FAULT_DELAY_MS=600 scripts/run.sh worker`.
#   scripts/run.sh token [ARGS]  prints a bearer token for the writes (default: --sub $USER
#                                --ttl 1h): `TOKEN=$(scripts/run.sh token)`.
#   scripts/run.sh availability-check ARGS
#                                runs the availability check built with the system, e.g.
#                                `--url http://127.0.0.1:3002/monitor -c 50 -n 20`.
#
# The service's writes need that token: without JWT_SECRET in the environment the service gets a
# DEVELOPMENT secret (the compose file's default), and `token` signs with it. HTTP_ADDRs:
# INVENTARIO_ADDR (0.0.0.0:3001) and MONITOR_ADDR (0.0.0.0:3002). The binaries are found where
# cargo puts them (`cargo metadata`: CARGO_TARGET_DIR, .cargo/config.toml, or ./target). What
# the running system's helpers need (its pid, its workers' pids, the worker environment) is kept
# in .data/run/.
set -euo pipefail
cd "$(dirname "$0")/.."

state=$PWD/.data/run
dev_secret=dev-secret-change-me

# Whether pid $1 is alive and runs a command line containing $2: pid files can outlive their
# process, and a pid can be reused.
is_running() {
  local args
  args=$(ps -o args= -p "$1" 2>/dev/null) || return 1
  [[ $args == *"$2"* ]]
}

# The pid of the running `scripts/run.sh`, or nothing.
system_pid() {
  local pid
  pid=$(cat "$state/run.pid" 2>/dev/null) || return 0
  if is_running "$pid" run.sh; then echo "$pid"; fi
}

require_system() {
  if [ -z "$(system_pid)" ]; then
    echo "run.sh: the system is not running: start it first with scripts/run.sh" >&2
    exit 1
  fi
}

# Starts "$@" in the background, its output prefixed by [name]; the prefixer ignores Ctrl-C so
# the last lines a program writes while stopping are still shown. Sets $started.
start() {
  local name=$1
  shift
  "$@" > >(trap '' INT TERM; exec sed -u "s/^/[$name] /") 2>&1 &
  started=$!
}

# The pids of the workers run.sh started that still run.
live_workers() {
  local f pid
  for f in "$state"/worker.*; do
    [ -e "$f" ] || continue
    pid=${f##*.}
    if is_running "$pid" inventario-worker; then echo "$pid"; else rm -f "$f"; fi
  done
}

kill_workers() {
  local pids
  pids=$(live_workers)
  if [ -z "$pids" ]; then
    echo "run.sh: no inventario-worker started by run.sh is running" >&2
    exit 1
  fi
  for pid in $pids; do
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$state/worker.$pid"
    echo "run.sh: inventario-worker (pid $pid) killed with SIGKILL"
  done
}

# One more worker, in the foreground, with the running system's environment under this shell's.
run_worker() {
  require_system
  local line name bin
  while IFS= read -r line; do
    name=${line%%=*}
    if [ -z "${!name+set}" ]; then eval "export $line"; fi
  done <"$state/env"
  bin=$(cat "$state/bin")
  # Two workers of one name would be one node to Celery's remote control and to the monitor's
  # table of workers: a worker added beside a live one gets a name of its own.
  if [ -z "${WORKER_HOSTNAME:-}" ] && [ -n "$(live_workers)" ]; then
    WORKER_HOSTNAME="inventario-$$@$HOSTNAME"
    export WORKER_HOSTNAME
  fi
  start inventario-worker "$bin/inventario-worker"
  local pid=$started
  echo "$pid" >"$state/worker.$pid"
  trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
  local status=0
  # `wait` returns early when a trapped signal arrives; wait again until the worker has exited.
  while is_running "$pid" inventario-worker; do wait "$pid" 2>/dev/null || status=$?; done
  rm -f "$state/worker.$pid"
  echo "run.sh: inventario-worker (pid $pid) has exited (status $status)" >&2
  exit "$status"
}

print_token() {
  local secret=${JWT_SECRET:-}
  if [ -z "$secret" ]; then
    if [ -n "$(system_pid)" ] && [ ! -e "$state/dev-secret" ]; then
      echo "run.sh: the service checks tokens with your JWT_SECRET: export it in this shell too" >&2
      exit 1
    fi
    secret=$dev_secret
  fi
  if [ $# -eq 0 ]; then set -- --sub "${USER:-dev}" --ttl 1h; fi
  JWT_SECRET=$secret exec "$(built)/inventario-service" token "$@"
}

# The directory of the binaries the running system runs, or else of the last release build.
built() {
  if [ -n "$(system_pid)" ]; then cat "$state/bin"; else binaries; fi
}

# Where cargo puts the release binaries: its own answer, so CARGO_TARGET_DIR and
# .cargo/config.toml's target-dir are honoured.
binaries() {
  local dir
  dir=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
  [ -n "$dir" ] || { echo "run.sh: cargo metadata names no target directory" >&2; exit 1; }
  echo "$dir/release"
}

case "${1:-}" in
  "") ;;
  worker) run_worker ;;
  kill-worker) kill_workers; exit 0 ;;
  token) shift; print_token "$@" ;;
  availability-check) shift; exec "$(built)/availability-check" "$@" ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "run.sh: unknown command '$1' (try --help)" >&2; exit 2 ;;
esac

if pid=$(system_pid) && [ -n "$pid" ]; then
  echo "run.sh: the system already runs (pid $pid); stop it with Ctrl-C there first" >&2
  exit 1
fi

export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export QUEUE=${QUEUE:-inventario}
export DATABASE_URL=${DATABASE_URL:-sqlite://$PWD/.data/inventario.db}
export PING_INTERVAL_MS=${PING_INTERVAL_MS:-250} PING_TIMEOUT_MS=${PING_TIMEOUT_MS:-750}
# Task events on, as in docker-compose.yml: the monitor's task lookup and celery_task_* metrics
# (and Flower) see what the workers do, and what the service sends with its queue (task-sent).
# TASK_EVENTS=false and TASK_SENT_EVENTS=false turn them off.
export TASK_EVENTS=${TASK_EVENTS:-true} TASK_SENT_EVENTS=${TASK_SENT_EVENTS:-true}
# The same DEVELOPMENT secret as docker-compose.yml's default: give JWT_SECRET a long random value
# for anything else.
jwt_secret=${JWT_SECRET:-} using_dev_secret=
if [ -z "$jwt_secret" ]; then
  jwt_secret=$dev_secret using_dev_secret=1
fi

cargo build --release -p inventario-service -p inventario-worker -p monitor-service
bin=$(binaries)

# A fresh state for this run; REDIS_URL may hold a password, so only this user reads it.
rm -rf "$state"
mkdir -p "$state"
chmod 700 "$state"
echo $$ >"$state/run.pid"
echo "$bin" >"$state/bin"
[ -z "$using_dev_secret" ] || touch "$state/dev-secret"
# The worker's environment, for `scripts/run.sh worker`: every variable it reads (its --help
# names them) that is set here.
(
  umask 077
  for name in $("$bin/inventario-worker" --help | grep -o '\[env: [A-Z0-9_]*' | cut -c7-) RUST_LOG LOG_FORMAT; do
    if [ -n "${!name+set}" ]; then printf '%s=%q\n' "$name" "${!name}"; fi
  done >"$state/env"
)

services=()
redis_pid=
# Ctrl-C: the services stop first (they finish what they hold), then the workers started with
# `scripts/run.sh worker` in other shells, then Redis.
stop() {
  trap - EXIT INT TERM
  local pids=() pid
  for pid in "${services[@]}" $(live_workers); do
    if is_running "$pid" "$bin/"; then pids+=("$pid"); fi
  done
  [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  for pid in "${pids[@]}"; do
    while is_running "$pid" "$bin/"; do wait "$pid" 2>/dev/null || sleep 0.1; done
  done
  if [ -n "$redis_pid" ]; then kill -TERM "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$state"
}
trap 'stop; exit 130' INT TERM
trap stop EXIT

redis_answers() { [ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" = PONG ]; }

if ! redis_answers; then
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
  # Poll until it answers, or stop early if it has exited (the port is taken).
  for _ in $(seq 50); do
    redis_answers && break
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! redis_answers; then
    echo "run.sh: redis-server did not start on port ${port:-6379} (taken by another program?);" \
      "use another port: REDIS_URL=redis://127.0.0.1:6380/0 scripts/run.sh" >&2
    exit 1
  fi
fi

start inventario-service env HTTP_ADDR="${INVENTARIO_ADDR:-0.0.0.0:3001}" JWT_SECRET="$jwt_secret" "$bin/inventario-service"
services+=("$started")
start inventario-worker "$bin/inventario-worker"
services+=("$started")
echo "$started" >"$state/worker.$started"
# Killing the worker is the experiment, not news: out of the job table, the shell prints no
# "Killed" notice for it (stop() still stops it; `wait` below waits for the other two).
disown "$started"
start monitor-service env HTTP_ADDR="${MONITOR_ADDR:-0.0.0.0:3002}" "$bin/monitor-service"
services+=("$started")

if [ -n "$using_dev_secret" ]; then
  echo "run.sh: JWT_SECRET is not set: the service uses the DEVELOPMENT secret $dev_secret"
fi
cat <<EOF
run.sh: dashboard on http://localhost:3002/; in another shell:
  scripts/run.sh kill-worker     # SIGKILL the worker: the monitor says CAIDO within a second
  scripts/run.sh worker          # start it again (or one more), in that shell's foreground
  TOKEN=\$(scripts/run.sh token)  # a token for the writes (POST, PUT, DELETE)
  curl -s -X POST localhost:3001/inventario -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -d '{"nombre": "Miel de azahar 500 g", "cantidad": 12, "precio": 7.25}'
EOF

# Runs until Ctrl-C. A program that dies (say, the worker killed for the experiment) does not
# stop the others.
wait 2>/dev/null
