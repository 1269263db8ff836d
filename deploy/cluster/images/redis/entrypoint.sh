#!/bin/bash
# redis-entrypoint master | replica | sentinel [extra redis args...]
#   master    a plain Redis (the sentinels' initial master)
#   replica   a replica of $REDIS_MASTER_HOST (default redis-master)
#   sentinel  a sentinel watching master $SENTINEL_MASTER_NAME (default seckill)
# Everything is addressed by hostname (compose sets each container's hostname
# to its service name): container addresses change when a container restarts.
# No persistence: a restarted master comes back empty, and a replica that
# resyncs from it empties itself too (the services rebuild what they need).
set -euo pipefail
mode=${1:-master}
shift || true
host=${ANNOUNCE_HOST:-$(hostname)}
port=${REDIS_PORT:-6379}
common=(--bind 0.0.0.0 --protected-mode no --save "" --appendonly no --dir /data
        --replica-announce-ip "$host" --repl-diskless-sync yes --repl-diskless-load on-empty-db)
# A replica's full sync leaves dump.rdb behind, and Redis loads it on its next
# start even with --save "": a restarted container came back with the
# admission state of an earlier sync (seen in the whole-cluster restart test).
# Start empty, as a Redis without persistence should.
rm -f /data/*.rdb

case $mode in
master)
  echo "$port" >/data/port
  exec redis-server --port "$port" "${common[@]}" "$@"
  ;;
replica)
  echo "$port" >/data/port
  exec redis-server --port "$port" "${common[@]}" \
    --replicaof "${REDIS_MASTER_HOST:-redis-master}" "${REDIS_MASTER_PORT:-6379}" "$@"
  ;;
sentinel)
  sport=${SENTINEL_PORT:-26379}
  echo "$sport" >/data/port
  conf=/data/sentinel.conf
  # Sentinel rewrites its config (current master, epochs, known peers). It is
  # written afresh on every start: Redis keeps nothing on disk, so after the
  # whole cluster restarts the only consistent master is redis-master again
  # (a kept config named the replica promoted before the stop, which came back
  # as a read-only replica: ~10 s of READONLY until the sentinels failed back).
  # A sentinel restarted alone learns the current master and epoch from its
  # peers' hello messages.
  if true; then
    cat >"$conf" <<CONF
port $sport
bind 0.0.0.0
protected-mode no
dir /data
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $host
sentinel monitor ${SENTINEL_MASTER_NAME:-seckill} ${REDIS_MASTER_HOST:-redis-master} ${REDIS_MASTER_PORT:-6379} ${SENTINEL_QUORUM:-2}
sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME:-seckill} ${SENTINEL_DOWN_AFTER_MS:-3000}
sentinel failover-timeout ${SENTINEL_MASTER_NAME:-seckill} ${SENTINEL_FAILOVER_TIMEOUT_MS:-10000}
sentinel parallel-syncs ${SENTINEL_MASTER_NAME:-seckill} 1
CONF
  fi
  exec redis-sentinel "$conf" "$@"
  ;;
*)
  echo "usage: redis-entrypoint master|replica|sentinel [redis args]" >&2
  exit 64
  ;;
esac
