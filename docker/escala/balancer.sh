#!/bin/sh
# Starts the escala profile's HAProxy (docker/escala/haproxy.cfg) after checking the weights:
# HAProxy reads a weight that is not a number as 0 and would quietly send that instance nothing.
# The algorithm itself (BALANCE) is checked by the configuration, which refuses any other value.
set -eu
for name in WEIGHT_1 WEIGHT_2 WEIGHT_3; do
  eval "value=\${$name:-}"
  case "$value" in
    '' | *[!0-9]*) echo "balancer: $name='$value' (ESCALA_$name): the weight must be an integer from 0 to 256" >&2; exit 1 ;;
  esac
  if [ "$value" -gt 256 ]; then
    echo "balancer: $name=$value (ESCALA_$name): the weight must be an integer from 0 to 256" >&2
    exit 1
  fi
done
# -W: master-worker mode, -db: in the foreground, logging to the container's output.
exec haproxy -W -db -f /usr/local/etc/haproxy/haproxy.cfg "$@"
