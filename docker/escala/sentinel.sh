#!/bin/sh
# Starts one of the escala profile's three Redis Sentinels. A sentinel rewrites its own
# configuration file (what it learns: replicas, the other sentinels, the current master, the
# epoch), so the file must be writable and must survive a restart of the container: it is written
# here once, in the container's own /data, and kept afterwards. A sentinel restarted with the
# first file would take the first master for the current one.
#
#   ANNOUNCE       this sentinel's name on the compose network (the others and the clients
#                  resolve it).
#   MASTER_NAME    the name clients ask for (REDIS_SENTINEL_MASTER).
#   MASTER_HOST    the master at the first start.
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
: "${ANNOUNCE:?ANNOUNCE must name this sentinel on the compose network}"
: "${MASTER_NAME:?}" "${MASTER_HOST:?}"
conf=/data/sentinel.conf
mkdir -p /data
if [ ! -s "$conf" ]; then
  cat >"$conf" <<CONF
port 26379
dir /data
protected-mode no
# Names, not addresses, everywhere: containers get new addresses when they are recreated.
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ANNOUNCE
sentinel monitor $MASTER_NAME $MASTER_HOST 6379 ${QUORUM:-2}
sentinel down-after-milliseconds $MASTER_NAME ${DOWN_AFTER_MS:-1000}
sentinel failover-timeout $MASTER_NAME ${FAILOVER_TIMEOUT_MS:-5000}
sentinel parallel-syncs $MASTER_NAME 1
CONF
fi
exec redis-server "$conf" --sentinel
