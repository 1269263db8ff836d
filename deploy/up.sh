#!/usr/bin/env bash
# Brings up the whole system on loopback: MariaDB, Redis, the RocketMQ name
# server and broker (installing or building what is missing), then
# stock-service and order-service (release builds). Safe to run again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_infra

log "building the services (release)"
(cd "$REPO_DIR" && cargo build --release --locked -p order-service -p stock-service)

start_service() {
  local name=$1 port=$2
  if port_open "$port"; then
    log "$name already answers on 127.0.0.1:$port"
    return 0
  fi
  log "starting $name on 127.0.0.1:$port"
  (cd "$REPO_DIR" && APP_HTTP__PORT="$port" \
      APP_MQ__NAMESRV_ADDR="127.0.0.1:$NAMESRV_PORT" APP_MQ__BROKER_ADDR="127.0.0.1:$BROKER_PORT" \
      start_daemon "$name" "$REPO_DIR/target/release/$name")
  local waited=0
  until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$PID_DIR/$name.pid")" 2>/dev/null; then
      tail -n 20 "$LOG_DIR/$name.log" >&2
      die "$name exited during start-up (log: $LOG_DIR/$name.log)"
    fi
    (( waited++ >= 600 )) && die "$name not ready after 60 s (log: $LOG_DIR/$name.log)"
    sleep 0.1
  done
}

start_service stock-service "$STOCK_PORT"
start_service order-service "$ORDER_PORT"

cat <<MSG

seckill is up. Logs: $LOG_DIR
  order-service  http://127.0.0.1:$ORDER_PORT   (POST /api/orders, GET /api/orders/{order_no})
  stock-service  http://127.0.0.1:$STOCK_PORT   (GET|PUT /api/stock/{product_id})
  status: deploy/status.sh    stop: deploy/down.sh
MSG
