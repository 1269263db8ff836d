#!/usr/bin/env bash
# The chaos suite (seckill-chaos; default: every scenario, --all) against a stack
# of its own: a RocketMQ name server and broker on their own ports with their
# own store (under .run/chaos), the link proxy of the slow-link scenario in
# front of the broker (the broker advertises 127.0.0.2, where the proxy
# listens, so its clients all go through it), and order-service and stock-service (debug
# builds unless SECKILL_PROFILE=release) with their own databases, Redis
# prefix, topics and groups; a running deploy/up.sh system keeps its broker
# and services. MariaDB and Redis are the machine's: the suite restarts Redis
# (and, with --all, MariaDB), so nothing else should use them meanwhile.
# Stops its stack and drops its databases at the end. Called by
# deploy/test.sh (which builds the binaries first).
#   deploy/chaos-test.sh [seckill-chaos options: --all, --scenario NAME, --seed N, --list]
#   deploy/chaos-test.sh --cluster [options]
#     the suite against the containerized cluster instead (brought up by
#     deploy/up.sh --cluster when it is not; faults via deploy/cluster/part.sh;
#     left running)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Every scenario unless the arguments choose (--scenario, --all, --list).
choose_all() { [[ " $* " =~ \ --(scenario|all|list)[\ =] ]] || echo --all; }

if [[ ${1:-} == --cluster ]]; then
  shift
  source "$REPO/deploy/cluster/lib.sh"
  PROFILE="${SECKILL_PROFILE:-debug}"
  [[ -x $REPO_DIR/target/$PROFILE/seckill-chaos ]] ||
    (cd "$REPO_DIR" && cargo build --locked $([[ $PROFILE == release ]] && echo --release) -p seckill-chaos)
  bash "$REPO_DIR/deploy/cluster/part.sh" ready || bash "$REPO_DIR/deploy/up.sh" --cluster
  set -- $(choose_all "$@") "$@"
  log "the chaos suite against the containers: seckill-chaos --cluster $*"
  exec "$REPO_DIR/target/$PROFILE/seckill-chaos" --repo "$REPO_DIR" --cluster "$@"
fi
export SECKILL_RUN_DIR="$REPO/.run/chaos"
export SECKILL_NAMESRV_PORT="${SECKILL_CHAOS_NAMESRV_PORT:-19876}"
export SECKILL_BROKER_PORT="${SECKILL_CHAOS_BROKER_PORT:-20911}"
export SECKILL_ORDER_PORT="${SECKILL_CHAOS_ORDER_PORT:-19091}"
export SECKILL_STOCK_PORT="${SECKILL_CHAOS_STOCK_PORT:-19092}"
LINK_CONTROL_PORT="${SECKILL_CHAOS_LINK_CONTROL_PORT:-19093}"
export SECKILL_BROKER_ADVERTISE_IP=127.0.0.2 SECKILL_LINK_CONTROL="127.0.0.1:$LINK_CONTROL_PORT"
export SECKILL_NAMES="chaos_$(date +%s)" SECKILL_DAEMON_PREFIX=chaos-
export SECKILL_PROFILE="${SECKILL_PROFILE:-debug}"
source "$REPO/deploy/lib.sh"

stop_stack() {
  stop_daemon chaos-order-service
  stop_daemon chaos-stock-service
  stop_daemon broker
  stop_daemon namesrv
  stop_daemon link-proxy
}
cleanup() {
  stop_stack
  drop_stack_databases
  rm -rf "$RUN_DIR/rocketmq/store"
}
stop_stack # leftovers of an interrupted run
for port in "$SECKILL_NAMESRV_PORT" "$SECKILL_BROKER_PORT" "$SECKILL_ORDER_PORT" "$SECKILL_STOCK_PORT" "$LINK_CONTROL_PORT"; do
  port_open "$port" && die "port $port is taken by something else; set SECKILL_CHAOS_*_PORT"
done
rm -rf "$RUN_DIR/rocketmq/store"
trap cleanup EXIT

if [[ ! -x $REPO_DIR/target/$PROFILE/seckill-chaos || ! -x $REPO_DIR/target/$PROFILE/seckill-link-proxy ]]; then
  profile_flag=() && [[ $PROFILE == release ]] && profile_flag=(--release)
  (cd "$REPO_DIR" && cargo build --locked "${profile_flag[@]}" -p seckill-chaos -p order-service -p stock-service)
fi
log "starting the link proxy: 127.0.0.2:$BROKER_PORT -> the broker on 127.0.0.1:$BROKER_PORT"
start_daemon link-proxy "$REPO_DIR/target/$PROFILE/seckill-link-proxy" --listen "127.0.0.2:$BROKER_PORT" \
  --upstream "127.0.0.1:$BROKER_PORT" --control "$SECKILL_LINK_CONTROL"
wait_for_port "$LINK_CONTROL_PORT" "the link proxy" 10
ensure_infra
export APP_LOG__LEVEL=info
start_part stock-service
start_part order-service
set -- $(choose_all "$@") "$@"
log "the chaos suite: seckill-chaos $*"
"$REPO_DIR/target/$PROFILE/seckill-chaos" --repo "$REPO_DIR" "$@"
