#!/usr/bin/env bash
# One line per part of the local stack: up or down, and where.
# With --cluster: reports the cluster's containers instead. See deploy/cluster/lib.sh.
if [[ ${1:-} == --cluster ]]; then
  shift
  source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"
  cluster_status "$@"
  exit
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
status=0
check() {
  if port_open "$2"; then printf '  %-14s up    127.0.0.1:%s\n' "$1" "$2"
  else printf '  %-14s DOWN  127.0.0.1:%s\n' "$1" "$2"; status=1; fi
}
check mariadb "$MYSQL_PORT"
check redis "$REDIS_PORT"
check namesrv "$NAMESRV_PORT"
check broker "$BROKER_PORT"
check stock-service "$STOCK_PORT"
check order-service "$ORDER_PORT"
check gateway "$GATEWAY_PORT"
echo "  logs: $LOG_DIR"
exit $status
