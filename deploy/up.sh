#!/usr/bin/env bash
# Brings up the whole system on loopback: MariaDB, Redis, the RocketMQ name
# server and broker (installing or building what is missing), stock-service and
# order-service (release builds), and the nginx gateway with the pages. Safe to
# run again.
# With --cluster: builds the images and starts the containerized cluster
# (deploy/cluster/compose.yaml) instead. See deploy/cluster/lib.sh.
if [[ ${1:-} == --cluster ]]; then
  shift
  source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"
  cluster_up "$@"
  exit
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_infra

log "building the services (release)"
(cd "$REPO_DIR" && cargo build --release --locked -p order-service -p stock-service)

start_part stock-service
# Behind the gateway: the client address comes from X-Forwarded-For, which
# the gateway sets (and never passes through from the client).
# Dev tokens on: the pages' sign-in mints a buyer's or an admin's token
# (off by default, and in the container deployment).
start_part order-service
start_gateway gateway "$GATEWAY_PORT" "$ORDER_PORT" "$STOCK_PORT"

cat <<MSG

seckill is up. Logs: $LOG_DIR
  order-service  http://127.0.0.1:$ORDER_PORT   (API; /metrics)
  stock-service  http://127.0.0.1:$STOCK_PORT   (API; /metrics)
  status: deploy/status.sh    stop: deploy/down.sh
  tokens: sign in on the pages (dev tokens), or
          APP_AUTH__HS256_SECRET=\$(cat $RUN_DIR/auth.secret) target/release/order-service token --user 1 [--admin]

Open http://127.0.0.1:$GATEWAY_PORT/  (pages: /order /pay /batch /dashboard)
MSG
