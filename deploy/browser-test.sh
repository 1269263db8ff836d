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

STACK_NAMES="browser_$(date +%s)" DAEMON_PREFIX=browser- PROFILE=debug
ORDER_PORT="${SECKILL_BROWSER_ORDER_PORT:-18091}"
STOCK_PORT="${SECKILL_BROWSER_STOCK_PORT:-18092}"
gateway_port="${SECKILL_BROWSER_GATEWAY_PORT:-18081}"

cleanup() {
  stop_gateway browser-gateway
  stop_daemon browser-order-service
  stop_daemon browser-stock-service
  drop_stack_databases
}
# Leftovers of an interrupted run would be reused by start_service: stop
# them, and refuse to test against something else on these ports.
stop_gateway browser-gateway
stop_daemon browser-order-service
stop_daemon browser-stock-service
for port in "$ORDER_PORT" "$STOCK_PORT" "$gateway_port"; do
  port_open "$port" && die "port $port is taken by something else; set SECKILL_BROWSER_*_PORT"
done
trap cleanup EXIT

export APP_LOG__LEVEL=info
start_part stock-service
start_part order-service
start_gateway browser-gateway "$gateway_port" "$ORDER_PORT" "$STOCK_PORT"

log "browser tests (Chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'))"
export GATEWAY_URL="http://127.0.0.1:$gateway_port" SCREENSHOT_DIR="$RUN_DIR/screenshots"
(( update_docs )) && export DOCS_SCREENSHOT_DIR="$REPO_DIR/docs/screenshots"
(cd "$REPO_DIR/tests/browser" && npm test --silent)
log "browser tests passed; screenshots in $SCREENSHOT_DIR"
