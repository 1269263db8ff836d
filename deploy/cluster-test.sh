#!/usr/bin/env bash
# The cluster tests: brings up the containerized cluster (deploy/up.sh
# --cluster: Docker engine, images and containers as needed), then runs
# tests/tests/cluster.rs against it — a driver outside the containers that
# talks to the gateway, reads the two databases and kills containers — one
# scenario at a time. Prints how long each part took.
# The cluster's token secret comes from cluster/lib.sh (SECKILL_AUTH_SECRET).
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"

started=$SECONDS
bash "$REPO_DIR/deploy/up.sh" --cluster
log "cluster up in $((SECONDS - started)) s"

cd "$REPO_DIR"
tests_started=$SECONDS
runner=(cargo test -p seckill-tests --locked --features cluster --test cluster -- --test-threads 1 --nocapture)
if cargo nextest --version >/dev/null 2>&1; then
  runner=(cargo nextest run -p seckill-tests --locked --features cluster --test cluster
          --test-threads 1 --no-fail-fast --success-output immediate)
fi
status=0
"${runner[@]}" "$@" || status=$?
log "cluster scenarios took $((SECONDS - tests_started)) s (all cluster work: $((SECONDS - started)) s)"
if (( status != 0 )); then
  log "cluster state after the failure:"
  bash "$REPO_DIR/deploy/status.sh" --cluster || true
fi
exit $status
