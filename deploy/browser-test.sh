#!/usr/bin/env bash
# End-to-end tests of the pages in a real headless Chromium (Debian's, driven
# by playwright-core) through the nginx gateway. Starts its own order-service,
# stock-service (debug builds) and gateway on other ports, with their own
# databases, Redis prefix, topics and groups, so a running deploy/up.sh system
# is not touched; stops them at the end. Called by deploy/test.sh (which
# starts the infrastructure and builds the binaries first).
#   --update-docs   also copy the screenshots to docs/screenshots/
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

update_docs=0
[[ ${1:-} == --update-docs ]] && update_docs=1

ensure_chromium
ensure_nginx
command -v node >/dev/null || apt_install nodejs npm
(cd "$REPO_DIR/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)

run="browser_$(date +%s)"
order_port="${SECKILL_BROWSER_ORDER_PORT:-18091}"
stock_port="${SECKILL_BROWSER_STOCK_PORT:-18092}"
gateway_port="${SECKILL_BROWSER_GATEWAY_PORT:-18081}"

cleanup() {
  stop_gateway browser-gateway
  stop_daemon browser-order-service
  stop_daemon browser-stock-service
  mysql_tcp -e "DROP DATABASE IF EXISTS seckill_${run}_order; DROP DATABASE IF EXISTS seckill_${run}_stock" || true
}
# Leftovers of an interrupted run would be reused by start_service: stop
# them, and refuse to test against something else on these ports.
stop_gateway browser-gateway
stop_daemon browser-order-service
stop_daemon browser-stock-service
for port in "$order_port" "$stock_port" "$gateway_port"; do
  port_open "$port" && die "port $port is taken by something else; set SECKILL_BROWSER_*_PORT"
done
trap cleanup EXIT

export APP_MQ__ORDER_TOPIC="seckill_${run}_order_events" APP_MQ__STOCK_TOPIC="seckill_${run}_stock_events"
export APP_LOG__LEVEL=info
APP_DATABASE__NAME="seckill_${run}_stock" APP_CONSUMER__GROUP="seckill_${run}_stock" \
  APP_CONSUMER__EVENTS_PRODUCER_GROUP="seckill_${run}_stock_events" \
  start_service browser-stock-service "$stock_port" "$REPO_DIR/target/debug/stock-service"
APP_DATABASE__NAME="seckill_${run}_order" APP_ORDERS__PRODUCER_GROUP="seckill_${run}_tx" \
  APP_REDIS__KEY_PREFIX="seckill_$run" \
  APP_LIFECYCLE__EVENTS_GROUP="seckill_${run}_events" \
  APP_LIFECYCLE__TIMEOUT_PRODUCER_GROUP="seckill_${run}_timeouts" \
  APP_DEAD_LETTERS__GROUP="seckill_${run}_dead_letters" \
  APP_DEAD_LETTERS__WATCHED_GROUPS="seckill_${run}_stock,seckill_${run}_events" \
  APP_ADMISSION__STOCK_SERVICE_URL="http://127.0.0.1:$stock_port" \
  APP_RATE_LIMIT__TRUST_FORWARDED_FOR=true APP_AUTH__DEV_TOKENS=true \
  start_service browser-order-service "$order_port" "$REPO_DIR/target/debug/order-service"
start_gateway browser-gateway "$gateway_port" "$order_port" "$stock_port"

log "browser tests (Chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'))"
export GATEWAY_URL="http://127.0.0.1:$gateway_port" SCREENSHOT_DIR="$RUN_DIR/screenshots"
(( update_docs )) && export DOCS_SCREENSHOT_DIR="$REPO_DIR/docs/screenshots"
(cd "$REPO_DIR/tests/browser" && npm test --silent)
log "browser tests passed; screenshots in $SCREENSHOT_DIR"
