"""Checks what docker-compose.yml promises its operator, beyond the schema: every container's
log is rotated; every image pulled from a registry has a version tag (not `latest`, not none);
every published port is on loopback unless PUBLISH_ADDR says otherwise; the worker gets longer
than its shutdown timeout to stop; the fault-injection settings pass through with their
defaults; Prometheus and Grafana start only with the `observability` profile, mounting the
repository's configuration; the escala-* services only with the `escala` profile, their programs
on the image inventario-service builds. Usage: policy.py COMPOSE_FILE (exit status 1 with the reasons)."""
import re
import sys

import yaml

compose = sys.argv[1]
with open(compose) as f:
    services = yaml.safe_load(f)["services"]

problems = []
for name, service in services.items():
    options = (service.get("logging") or {}).get("options") or {}
    if not options.get("max-size") or not options.get("max-file"):
        problems.append(f"{name}: its log is not rotated (logging.options max-size, max-file)")
    image = service.get("image", "")
    built_here = service.get("build") or service.get("pull_policy") in ("never", "build")
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    if not built_here and (tag in ("", "latest")):
        problems.append(f"{name}: image {image!r} is not pinned to a version")
    for port in service.get("ports") or []:
        if not str(port).startswith(("127.0.0.1:", "${PUBLISH_ADDR:-127.0.0.1}:")):
            problems.append(f"{name}: publishes {port} beyond loopback by default")


def seconds(value):
    m = re.fullmatch(r"(\d+)(s|m)", str(value))
    return int(m[1]) * (60 if m[2] == "m" else 1) if m else 0


worker = services["inventario-worker"]
env = worker.get("environment") or {}
shutdown = re.fullmatch(r"\$\{SHUTDOWN_TIMEOUT_SECS:-(\d+)\}", str(env.get("SHUTDOWN_TIMEOUT_SECS", "")))
if not shutdown:
    problems.append("inventario-worker: SHUTDOWN_TIMEOUT_SECS does not pass through with its default")
elif seconds(worker.get("stop_grace_period")) < int(shutdown[1]) + 10:
    problems.append(
        f"inventario-worker: stop_grace_period {worker.get('stop_grace_period')} does not cover "
        f"SHUTDOWN_TIMEOUT_SECS ({shutdown[1]} s) and the flush of results"
    )
for var, default in (("FAULT_FAILURE_RATE", "0"), ("FAULT_DELAY_MS", "0"), ("FAULT_MOVEMENT_DELAY_MS", "0")):
    if str(env.get(var)) != f"${{{var}:-{default}}}":
        problems.append(f"inventario-worker: {var} does not pass through with its default {default}")

# The observability services: never part of a plain `docker compose up` (nor of the compose
# end-to-end test, on machines that cannot pull their images), and configured from the files
# the repository tests (observability/).
mounts = {
    "prometheus": "./observability/prometheus/prometheus.yml",
    "grafana": "./observability/grafana/provisioning",
}
for name, source in mounts.items():
    service = services.get(name)
    if service is None:
        problems.append(f"{name}: missing (the observability profile)")
        continue
    if service.get("profiles") != ["observability"]:
        problems.append(f"{name}: not behind the observability profile alone: {service.get('profiles')}")
    if not any(str(v).startswith(source + ":") for v in service.get("volumes") or []):
        problems.append(f"{name}: does not mount {source}")
# The escala profile (three service instances behind HAProxy, Redis under Sentinel): all of it
# behind that profile, named escala-*, so a plain `docker compose up` is what it was; its programs
# run the image inventario-service builds, never a build of their own.
escala = {name: service for name, service in services.items() if name.startswith("escala-")}
for name in ("escala-balancer", "escala-postgres", "escala-redis", "escala-redis-replica-1", "escala-redis-replica-2", "escala-monitor",
             "escala-worker", "escala-api-1", "escala-api-2", "escala-api-3",
             "escala-sentinel-1", "escala-sentinel-2", "escala-sentinel-3"):
    if name not in escala:
        problems.append(f"{name}: missing (the escala profile)")
for name, service in escala.items():
    if service.get("profiles") != ["escala"]:
        problems.append(f"{name}: not behind the escala profile alone: {service.get('profiles')}")
    if service.get("image") == "inventario:latest" and (service.get("build") or service.get("pull_policy") != "never"):
        problems.append(f"{name}: builds the app image again instead of reusing inventario-service's")
# Its programs reach Redis through the three sentinels, and the service waits for a replica.
sentinels = "sentinel://escala-sentinel-1:26379;sentinel://escala-sentinel-2:26379;sentinel://escala-sentinel-3:26379"
for name in ("escala-api-1", "escala-api-2", "escala-api-3", "escala-worker", "escala-monitor"):
    env = (escala.get(name) or {}).get("environment") or {}
    if env.get("REDIS_URL") != sentinels or not env.get("REDIS_SENTINEL_MASTER"):
        problems.append(f"{name}: does not reach Redis through the sentinels ({env.get('REDIS_URL')})")
    if name.startswith("escala-api") and env.get("REDIS_WAIT_REPLICAS") != "${ESCALA_REDIS_WAIT_REPLICAS:-1}":
        problems.append(f"{name}: does not wait for a replica (REDIS_WAIT_REPLICAS)")
for name, service in services.items():
    if name not in mounts and name not in escala and service.get("profiles"):
        problems.append(f"{name}: behind profiles {service['profiles']}; only the observability and escala services are")

for p in problems:
    print(p, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"{compose}: logs rotated, images pinned, ports on loopback, worker's grace and fault settings in place, observability and escala behind their profiles")
