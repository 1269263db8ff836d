#!/usr/bin/env bash
# Stops what deploy/up.sh started: the gateway, the services, then the broker
# and name server. MariaDB and Redis are machine services and stay up.
# With --cluster: stops and removes the cluster's containers (--volumes: and its
# named volumes) instead. See deploy/cluster/lib.sh.
if [[ ${1:-} == --cluster ]]; then
  shift
  source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"
  cluster_down "$@"
  exit
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
stop_gateway gateway
for name in order-service stock-service; do
  stop_daemon "$DAEMON_PREFIX$name"
done
for name in broker namesrv; do
  stop_daemon "$name"
done
log "stopped (MariaDB and Redis left running)"
