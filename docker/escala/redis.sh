#!/bin/sh
# Starts one of the escala profile's Redis data servers (the master or its replica) from a
# configuration file kept in its volume. Sentinel owns the roles after the first start: on a
# failover it turns this server into a replica or a master and rewrites the file (CONFIG
# REWRITE), so a restarted container comes back in the role Sentinel gave it rather than the one
# it started with. Hence the file is written only when the volume has none.
#
#   REPLICA_OF  the master's address at the first start; empty for the master. A replica is
#               known to the master, and through it to Sentinel and the clients, by the address
#               it connects from: fixed ones, given by docker-compose.yml's escala network.
set -eu
conf=/data/redis.conf
if [ ! -s "$conf" ]; then
  cat >"$conf" <<CONF
port 6379
dir /data
protected-mode no
# Every write reaches the file before its reply is sent: a killed server loses nothing.
appendonly yes
appendfsync everysec
save ""
CONF
  if [ -n "${REPLICA_OF:-}" ]; then
    echo "replicaof $REPLICA_OF 6379" >>"$conf"
  fi
fi
exec redis-server "$conf"
