#!/usr/bin/env bash
# End-to-end test of docker-compose.yml: validates it against the Compose schema, builds and
# starts redis + the three services (Redis Insight's image is not needed for the test), then
# checks them through their published loopback ports and `docker compose logs`
# (tests/compose/e2e.py); then does the same with the escala profile (tests/compose/escala.py).
# The stacks are always removed at the end, volumes included.
# It runs with a random JWT_SECRET (not the compose file's development default) and
# PUBLISH_ADDR unset (the default: loopback); the writes use tokens signed with that secret.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${CELERY_PYTHON:-.venv/bin/python}

"$python" tests/compose/validate.py docker-compose.yml tests/compose/compose-spec.json

# On machines without an image registry, the shared script provides Docker and local stand-ins
# for the official base images; elsewhere Docker pulls them.
if [ -f ../shared/docker/offline-images.sh ] && ! docker image inspect rust:1.95-slim-bookworm >/dev/null 2>&1; then
  bash ../shared/docker/offline-images.sh
fi

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export COMPOSE_PROJECT_NAME=inventario-e2e
export REDIS_HOST_PORT=$(free_port) INVENTARIO_HOST_PORT=$(free_port) MONITOR_HOST_PORT=$(free_port)
export JWT_SECRET=$("$python" -c 'import secrets; print(secrets.token_urlsafe(32))')
unset PUBLISH_ADDR AUTH_DISABLED
down() { docker compose --profile escala down -v --remove-orphans >/dev/null 2>&1 || true; }
[ -n "${KEEP_STACK:-}" ] || trap down EXIT
down

services=(redis inventario-service inventario-worker monitor-service)
started=$SECONDS
docker compose build
echo "compose-e2e.sh: the image built in $((SECONDS - started)) s" >&2
docker compose up -d --wait --wait-timeout 180 "${services[@]}"
"$python" tests/compose/e2e.py

# A short Locust smoke against the running stack: any failed request fails the test. Its writes
# carry tokens it signs with the exported JWT_SECRET.
MONITOR_URL="http://127.0.0.1:$MONITOR_HOST_PORT" INVENTARIO_URL="http://127.0.0.1:$INVENTARIO_HOST_PORT" \
  ./run-locust.sh --headless 50 15
echo "compose e2e: 1 passed, 0 failed (locust smoke)"

# The escala profile: three service instances behind HAProxy on PostgreSQL, Redis under Sentinel,
# three workers and a monitor, on the image built above (tests/compose/escala.py). The default
# stack is stopped first: both would share this machine's cores under the load test.
docker compose stop "${services[@]}" >/dev/null
export ESCALA_HOST_PORT=$(free_port) ESCALA_MONITOR_HOST_PORT=$(free_port) ESCALA_STATS_HOST_PORT=$(free_port)
unset ESCALA_BALANCE ESCALA_WEIGHT_1 ESCALA_WEIGHT_2 ESCALA_WEIGHT_3 ESCALA_REDIS_WAIT_REPLICAS ESCALA_POSTGRES_PASSWORD
escala=(escala-redis escala-redis-replica-1 escala-redis-replica-2 escala-sentinel-1 escala-sentinel-2 escala-sentinel-3 escala-postgres
        escala-api-1 escala-api-2 escala-api-3 escala-balancer escala-worker escala-monitor)
started=$(date +%s)
docker compose --profile escala up -d --wait --wait-timeout 180 "${escala[@]}"
COMPOSE_PROFILES=escala "$python" tests/compose/escala.py
echo "compose e2e: escala profile passed in $(( $(date +%s) - started )) s"
