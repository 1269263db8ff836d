#!/usr/bin/env bash
# Runs every test of the workspace against real MariaDB, Redis and RocketMQ,
# starting (or installing/building) whatever is missing first; then the
# browser tests, the fuzz run against the OpenAPI documents, the chaos suite
# (faults injected into a local stack mid-sale), then the fault
# scenarios and the chaos suite against the containerized cluster (Docker
# engine, images and containers made when missing; left running).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_infra
export SECKILL_NAMESRV_ADDR="127.0.0.1:$NAMESRV_PORT" SECKILL_BROKER_ADDR="127.0.0.1:$BROKER_PORT"

cd "$REPO_DIR"
log "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log "building the services (the crash tests run the real order-service binary)"
cargo build --workspace --locked
# Each test creates its own seckill_t_* databases; drop those of earlier runs.
mysql_tcp -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'seckill\\_t\\_%'" |
  while read -r stale; do mysql_tcp -e "DROP DATABASE \`$stale\`"; done
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
log "browser tests of the pages, through the gateway"
bash "$REPO_DIR/deploy/browser-test.sh"
log "fuzzing both services against their OpenAPI documents (schemathesis)"
bash "$REPO_DIR/deploy/fuzz-test.sh"
log "the chaos suite (every scenario), against a stack of its own"
bash "$REPO_DIR/deploy/chaos-test.sh" --all
log "the cluster scenarios, against the containers (images from the debug build above)"
SECKILL_CLUSTER_PROFILE="${SECKILL_CLUSTER_PROFILE:-debug}" bash "$REPO_DIR/deploy/cluster-test.sh"
log "the chaos suite against the containers (the cluster above, left running)"
SECKILL_CLUSTER_PROFILE="${SECKILL_CLUSTER_PROFILE:-debug}" bash "$REPO_DIR/deploy/chaos-test.sh" --cluster
