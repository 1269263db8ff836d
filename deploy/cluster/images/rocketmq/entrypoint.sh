#!/bin/bash
# Renders the name server's or broker's TOML from the environment, then execs
# the server in the foreground (logs on stdout). ADVERTISED_HOST (default: the
# container's hostname, which compose sets to the service name) is what the
# broker registers with the name servers and what clients and slaves dial.
set -euo pipefail

home=${ROCKETMQ_HOME:?}
conf=$home/conf
mkdir -p "$conf"
host=${ADVERTISED_HOST:-$(hostname)}

case ${ROCKETMQ_ROLE:?} in
namesrv)
  cat >"$conf/namesrv.toml" <<TOML
# Rendered by rocketmq-entrypoint at $(date -u +%FT%TZ)
rocketmqHome = "$home"
kvConfigPath = "$home/kvConfig.json"
configStorePath = "$home/namesrv.properties"
TOML
  exec rocketmq-namesrv-rust -c "$conf/namesrv.toml" --bindAddress 0.0.0.0 --listenPort "${LISTEN_PORT:-9876}"
  ;;
broker)
  role=${BROKER_ROLE:-ASYNC_MASTER}
  case $role in
    SYNC_MASTER | ASYNC_MASTER) : "${BROKER_ID:=0}" ;;
    SLAVE) : "${BROKER_ID:=1}" ;;
    *) echo "BROKER_ROLE must be SYNC_MASTER, ASYNC_MASTER or SLAVE (got $role)" >&2; exit 64 ;;
  esac
  # SYNC_MASTER waits for the slave only with totalReplicas = inSyncReplicas = 2,
  # and is only usable with SYNC_FLUSH (with ASYNC_FLUSH sends take ~1 s or fail).
  replicas=1
  [[ $role == SYNC_MASTER ]] && replicas=2
  cat >"$conf/broker.toml" <<TOML
# Rendered by rocketmq-entrypoint at $(date -u +%FT%TZ)
[broker]
namesrvAddr = "${NAMESRV_ADDR:?}"
brokerIp1 = "$host"
brokerIp2 = "$host"
listenPort = ${LISTEN_PORT:-10911}
brokerRole = "$role"
storePathRootDir = "$home/store"
autoCreateTopicEnable = ${AUTO_CREATE_TOPIC:-true}
autoCreateSubscriptionGroup = true
slaveReadEnable = ${SLAVE_READ_ENABLE:-true}
transactionCheckInterval = ${TX_CHECK_INTERVAL_MS:-30000}
transactionTimeout = ${TX_TIMEOUT_MS:-6000}
transactionCheckMax = ${TX_CHECK_MAX:-15}
transactionOpBatchInterval = ${TX_OP_BATCH_INTERVAL_MS:-3000}

[broker.brokerServerConfig]
bindAddress = "0.0.0.0"

[broker.brokerIdentity]
brokerName = "${BROKER_NAME:?}"
brokerClusterName = "${CLUSTER_NAME:-SeckillCluster}"
brokerId = $BROKER_ID

[store]
storeType = "LocalFile"
brokerRole = "$role"
flushDiskType = "${FLUSH_DISK_TYPE:-SYNC_FLUSH}"
totalReplicas = $replicas
inSyncReplicas = $replicas
storePathRootDir = "$home/store"
# CommitLog files are preallocated (fallocate) at this size; 1 GiB by default.
mappedFileSizeCommitLog = ${COMMITLOG_FILE_BYTES:-1073741824}
haListenAddress = "0.0.0.0"
haListenPort = ${HA_PORT:-10912}

[logging]
filter = "${LOG_FILTER:-info}"
TOML
  exec rocketmq-broker-rust -c "$conf/broker.toml"
  ;;
*)
  echo "ROCKETMQ_ROLE must be namesrv or broker (got $ROCKETMQ_ROLE)" >&2
  exit 64
  ;;
esac
