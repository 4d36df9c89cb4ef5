#!/bin/sh
# Starts one of the escala profile's three Redis Sentinels. A sentinel rewrites its own
# configuration file (what it learns: replicas, the other sentinels, the current master, the
# epoch), so the file must be writable and must survive a restart of the container: it is written
# here once, in the container's own /data, and kept afterwards. A sentinel restarted with the
# first file would take the first master for the current one.
#
#   MASTER_NAME    the name clients ask for (REDIS_SENTINEL_MASTER).
#   MASTER_ADDR    the master's address at the first start. An address, not a name: a
#                  sentinel resolves names with a blocking lookup, which stalls it for seconds
#                  when the name is a dead container's, until it enters TILT mode and does not
#                  fail over (docker-compose.yml's escala network gives fixed addresses).
#   QUORUM         sentinels that must agree the master is down (2 of 3).
#   DOWN_AFTER_MS  how long the master may not answer before a sentinel deems it down (1 s).
#   FAILOVER_TIMEOUT_MS  a failover that has not completed in this long is given up, and the
#                  next one starts after twice this long (5 s). Short on purpose: a sentinel
#                  refreshes a replica's INFO every 10 s while the master is healthy, and
#                  deems a replica whose INFO is older than 5 s unfit, so the first attempt
#                  right after the master's death may find "no good slave"; the second comes
#                  10 s later instead of Redis's default 6 minutes. Not shorter: the promoted
#                  replica must report its new role within this time, and on a busy machine
#                  2 s was not always enough (the attempt was given up and started over).
set -eu
: "${MASTER_NAME:?}" "${MASTER_ADDR:?MASTER_ADDR must be the master's IP address}"
conf=/data/sentinel.conf
mkdir -p /data
if [ ! -s "$conf" ]; then
  cat >"$conf" <<CONF
port 26379
dir /data
protected-mode no
sentinel monitor $MASTER_NAME $MASTER_ADDR 6379 ${QUORUM:-2}
sentinel down-after-milliseconds $MASTER_NAME ${DOWN_AFTER_MS:-1000}
sentinel failover-timeout $MASTER_NAME ${FAILOVER_TIMEOUT_MS:-5000}
sentinel parallel-syncs $MASTER_NAME 1
CONF
fi
exec redis-server "$conf" --sentinel
