#!/usr/bin/env bash
# One part of the containerized cluster, for `seckill-chaos --cluster` and by
# hand; the same interface as deploy/part.sh:
#   deploy/cluster/part.sh kill|stop|start|pause|resume PART
#   deploy/cluster/part.sh ready      (exit 0 when every container is healthy)
#   deploy/cluster/part.sh describe   (the cluster's addresses, KEY=VALUE)
# A part is what a fault hits in the cluster:
#   order-service  order-service-1 (one replica: the gateway sends buyers to
#                  the other, which answers the broker's check-backs)
#   stock-service  stock-service-1 (the other replica consumes its queues)
#   broker         broker-a (a master; orders go on through broker-b)
#   mariadb        order-db and stock-db
#   redis          redis-master (kept down less than Sentinel's 3 s, it comes
#                  back empty and its replica empties itself: the local
#                  scenario's Redis restart)
# `start` waits until the part's containers are healthy.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

action=${1:-} part=${2:-}

ip_of() {
  local id
  id=$(compose ps -q "$1")
  [[ -n $id ]] && docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id"
}

if [[ $action == describe ]]; then
  password=${SECKILL_DB_PASSWORD:-seckill-dev}
  # The secret the cluster was started with (lib.sh made or took it).
  (umask 077 && printf '%s\n' "$SECKILL_AUTH_SECRET" >"$CLUSTER_RUN_DIR/auth.secret")
  cat <<OUT
order_url=http://127.0.0.1:$CLUSTER_GATEWAY_PORT
stock_url=http://127.0.0.1:$CLUSTER_GATEWAY_PORT
ready=script
order_db=mysql://root:$password@127.0.0.1:${SECKILL_CLUSTER_ORDER_DB_PORT:-13306}/seckill_order
stock_db=mysql://root:$password@127.0.0.1:${SECKILL_CLUSTER_STOCK_DB_PORT:-13307}/seckill_stock
secret_file=$CLUSTER_RUN_DIR/auth.secret
namesrv=$(ip_of namesrv-a):9876
order_topic=
stock_group=
link_control=
OUT
  exit 0
fi

if [[ $action == ready ]]; then
  healthy=$(cluster_containers | awk '$2 == "running" && $3 == "healthy"' | wc -l)
  (( healthy > 0 && healthy == $(compose config --services | wc -l) ))
  exit
fi

[[ -n $action && -n $part ]] || die "usage: deploy/cluster/part.sh kill|stop|start|pause|resume PART | ready | describe"
case $part in
  order-service) services=(order-service-1) ;;
  stock-service) services=(stock-service-1) ;;
  broker) services=(broker-a) ;;
  namesrv) services=(namesrv-a) ;;
  mariadb) services=(order-db stock-db) ;;
  redis) services=(redis-master) ;;
  *) die "unknown part $part" ;;
esac

containers() { local s; for s in "${services[@]}"; do compose ps -q "$s"; done; }

# Waits until each of the part's containers is running and healthy.
wait_part_healthy() {
  local waited=0 id status
  for id in $(containers); do
    until status=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$id") &&
          [[ $status == "running healthy" ]]; do
      (( waited++ >= 1200 )) && die "${services[*]} not healthy after 120 s ($status)"
      sleep 0.1
    done
  done
}

log "cluster: $action ${services[*]}"
case $action in
  kill) compose kill -s SIGKILL "${services[@]}" 2>/dev/null ;;
  stop) compose stop -t 15 "${services[@]}" 2>/dev/null ;;
  start) compose start "${services[@]}" 2>/dev/null && wait_part_healthy ;;
  # The cgroup freezer can refuse at a bad moment ("OCI runtime pause failed:
  # unable to freeze", once in a clean-clone CI run here): try again.
  pause)
    for id in $(containers); do
      for try in 1 2 3 4 5; do
        docker pause "$id" >/dev/null && break
        (( try == 5 )) && die "$id could not be paused"
        sleep 0.2
      done
    done ;;
  # shellcheck disable=SC2046
  resume) docker unpause $(containers) >/dev/null ;;
  *) die "unknown action $action" ;;
esac
