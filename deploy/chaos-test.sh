#!/usr/bin/env bash
# The chaos suite (seckill-chaos; default: every scenario, --all) against a stack
# of its own: a RocketMQ name server and broker on their own ports with their
# own store (under .run/chaos), and order-service and stock-service (debug
# builds unless SECKILL_PROFILE=release) with their own databases, Redis
# prefix, topics and groups; a running deploy/up.sh system keeps its broker
# and services. MariaDB and Redis are the machine's: the suite restarts Redis
# (and, with --all, MariaDB), so nothing else should use them meanwhile.
# Stops its stack and drops its databases at the end. Called by
# deploy/test.sh (which builds the binaries first).
#   deploy/chaos-test.sh [seckill-chaos options: --all, --scenario NAME, --seed N, --list]
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SECKILL_RUN_DIR="$REPO/.run/chaos"
export SECKILL_NAMESRV_PORT="${SECKILL_CHAOS_NAMESRV_PORT:-19876}"
export SECKILL_BROKER_PORT="${SECKILL_CHAOS_BROKER_PORT:-20911}"
export SECKILL_ORDER_PORT="${SECKILL_CHAOS_ORDER_PORT:-19091}"
export SECKILL_STOCK_PORT="${SECKILL_CHAOS_STOCK_PORT:-19092}"
export SECKILL_NAMES="chaos_$(date +%s)" SECKILL_DAEMON_PREFIX=chaos-
export SECKILL_PROFILE="${SECKILL_PROFILE:-debug}"
source "$REPO/deploy/lib.sh"

stop_stack() {
  stop_daemon chaos-order-service
  stop_daemon chaos-stock-service
  stop_daemon broker
  stop_daemon namesrv
}
cleanup() {
  stop_stack
  drop_stack_databases
  rm -rf "$RUN_DIR/rocketmq/store"
}
stop_stack # leftovers of an interrupted run
for port in "$SECKILL_NAMESRV_PORT" "$SECKILL_BROKER_PORT" "$SECKILL_ORDER_PORT" "$SECKILL_STOCK_PORT"; do
  port_open "$port" && die "port $port is taken by something else; set SECKILL_CHAOS_*_PORT"
done
rm -rf "$RUN_DIR/rocketmq/store"
trap cleanup EXIT

if [[ ! -x $REPO_DIR/target/$PROFILE/seckill-chaos ]]; then
  profile_flag=() && [[ $PROFILE == release ]] && profile_flag=(--release)
  (cd "$REPO_DIR" && cargo build --locked "${profile_flag[@]}" -p seckill-chaos -p order-service -p stock-service)
fi
ensure_infra
export APP_LOG__LEVEL=info
start_part stock-service
start_part order-service
(( $# )) || set -- --all
log "the chaos suite: seckill-chaos $*"
"$REPO_DIR/target/$PROFILE/seckill-chaos" --repo "$REPO_DIR" "$@"
