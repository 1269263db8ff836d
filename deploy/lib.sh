# shellcheck shell=bash
# Shared by the deploy scripts: where things live and how each part of the
# local stack is installed (when missing) and started (when stopped).
# Everything listens on loopback only.

set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${SECKILL_RUN_DIR:-$REPO_DIR/.run}"          # logs, pid files, broker store
LOG_DIR="$RUN_DIR/logs"
PID_DIR="$RUN_DIR/pids"
CACHE_DIR="${SECKILL_CACHE_DIR:-$HOME/.cache/seckill-rs}" # the built RocketMQ servers
ROCKETMQ_VERSION="1.0.0"
ROCKETMQ_ROOT="$CACHE_DIR/rocketmq-$ROCKETMQ_VERSION"
RUST_TOOLCHAIN="1.95.0"

NAMESRV_PORT="${SECKILL_NAMESRV_PORT:-9876}"
BROKER_PORT="${SECKILL_BROKER_PORT:-10911}"
# The address the broker advertises to the name server (its brokerIp1; it
# listens on 127.0.0.1 whatever this says). The chaos suite sets 127.0.0.2
# and puts its link proxy there, so every client of the broker goes through it.
BROKER_IP="${SECKILL_BROKER_ADVERTISE_IP:-127.0.0.1}"
MYSQL_PORT=3306
REDIS_PORT=6379
ORDER_PORT="${SECKILL_ORDER_PORT:-8091}"
STOCK_PORT="${SECKILL_STOCK_PORT:-8092}"
GATEWAY_PORT="${SECKILL_GATEWAY_PORT:-8081}"

mkdir -p "$LOG_DIR" "$PID_DIR"

log() { printf '\033[1;34m[seckill]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[seckill] error:\033[0m %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for_port PORT WHAT SECONDS
wait_for_port() {
  local port=$1 what=$2 limit=${3:-30} waited=0
  until port_open "$port"; do
    (( waited++ >= limit * 10 )) && die "$what did not open port $port within ${limit}s (see $LOG_DIR)"
    sleep 0.1
  done
}

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $* here: no apt-get; install it by hand"
  if (( ! apt_updated )); then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Starts a program in the background with its log and pid file under $RUN_DIR.
# start_daemon NAME COMMAND...
start_daemon() {
  local name=$1; shift
  nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 &
  echo $! >"$PID_DIR/$name.pid"
}

# stop_daemon NAME: SIGTERM, then SIGKILL after 15 s.
stop_daemon() {
  local name=$1 pid_file="$PID_DIR/$1.pid" pid waited=0
  [[ -f $pid_file ]] || return 0
  pid=$(cat "$pid_file")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
      if (( waited++ > 150 )); then kill -KILL "$pid" 2>/dev/null || true; break; fi
      sleep 0.1
    done
  fi
  rm -f "$pid_file"
}

ensure_mariadb() {
  if ! mysql_tcp -e 'SELECT 1' >/dev/null 2>&1; then
    if ! command -v mariadbd >/dev/null && [[ ! -x /usr/sbin/mariadbd ]]; then
      apt_install mariadb-server mariadb-client
    fi
    if ! port_open "$MYSQL_PORT"; then
      log "starting MariaDB"
      mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
      # By its pid file: a mariadbd of a container (the cluster's databases)
      # is another process of the same name and must not count as running.
      start-stop-daemon --start --oknodo --background --pidfile "$MARIADB_PID_FILE" --exec /usr/sbin/mariadbd
      wait_for_port "$MYSQL_PORT" MariaDB 60
    fi
    # A fresh Debian install lets root in through the socket only: also allow
    # root with an empty password on loopback TCP, which the services use.
    if ! mysql_tcp -e 'SELECT 1' >/dev/null 2>&1; then
      log "allowing root@localhost over TCP with an empty password"
      mysql -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')"
    fi
  fi
  mysql_tcp -e 'SELECT 1' >/dev/null || die "MariaDB on 127.0.0.1:$MYSQL_PORT refuses root with an empty password"
  log "MariaDB ready on 127.0.0.1:$MYSQL_PORT"
}

# Where the machine's mariadbd writes its pid (Debian's default).
MARIADB_PID_FILE=/run/mysqld/mysqld.pid

mysql_tcp() { mysql -h127.0.0.1 -P"$MYSQL_PORT" -uroot --protocol=TCP "$@"; }

ensure_redis() {
  if ! port_open "$REDIS_PORT"; then
    command -v redis-server >/dev/null || apt_install redis-server
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/seckill.log
    wait_for_port "$REDIS_PORT" Redis 30
  fi
  log "Redis ready on 127.0.0.1:$REDIS_PORT"
}

# Builds the rocketmq-rust name server and broker once into $ROCKETMQ_ROOT
# (~16 min on two cores); later runs find the binaries and skip the build.
ensure_rocketmq_binaries() {
  if [[ -x $ROCKETMQ_ROOT/bin/rocketmq-namesrv-rust && -x $ROCKETMQ_ROOT/bin/rocketmq-broker-rust ]]; then
    return 0
  fi
  command -v cargo >/dev/null || die "cargo is needed to build the RocketMQ servers"
  log "building rocketmq-namesrv and rocketmq-broker $ROCKETMQ_VERSION into $ROCKETMQ_ROOT (once; ~16 min on 2 cores)"
  log "build log: $LOG_DIR/rocketmq-build.log"
  mkdir -p "$ROCKETMQ_ROOT"
  if ! RUSTUP_TOOLCHAIN="$RUST_TOOLCHAIN" cargo install --locked --root "$ROCKETMQ_ROOT" \
      "rocketmq-namesrv@$ROCKETMQ_VERSION" "rocketmq-broker@$ROCKETMQ_VERSION" \
      >"$LOG_DIR/rocketmq-build.log" 2>&1; then
    tail -n 30 "$LOG_DIR/rocketmq-build.log" >&2
    die "building the RocketMQ servers failed (full log: $LOG_DIR/rocketmq-build.log)"
  fi
}

# Renders a config template: @RUN_DIR@, @NAMESRV_PORT@, @BROKER_PORT@, @BROKER_IP@.
render() {
  sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@NAMESRV_PORT@|$NAMESRV_PORT|g" -e "s|@BROKER_IP@|$BROKER_IP|g" \
      -e "s|@BROKER_PORT@|$BROKER_PORT|g" -e "s|@HA_PORT@|$((BROKER_PORT + 1))|g" "$1" >"$2"
}

ensure_rocketmq() {
  ensure_rocketmq_binaries
  local home="$RUN_DIR/rocketmq"
  mkdir -p "$home/conf" "$home/store"
  export ROCKETMQ_HOME="$home" ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback
  if ! port_open "$NAMESRV_PORT"; then
    log "starting the RocketMQ name server on 127.0.0.1:$NAMESRV_PORT"
    render "$REPO_DIR/deploy/rocketmq/namesrv.toml" "$home/conf/namesrv.toml"
    start_daemon namesrv "$ROCKETMQ_ROOT/bin/rocketmq-namesrv-rust" -c "$home/conf/namesrv.toml" \
      --bindAddress 127.0.0.1 --listenPort "$NAMESRV_PORT"
    wait_for_port "$NAMESRV_PORT" "name server" 30
  fi
  if ! port_open "$BROKER_PORT"; then
    log "starting the RocketMQ broker on 127.0.0.1:$BROKER_PORT (advertised as $BROKER_IP:$BROKER_PORT)"
    render "$REPO_DIR/deploy/rocketmq/broker.toml" "$home/conf/broker.toml"
    start_daemon broker "$ROCKETMQ_ROOT/bin/rocketmq-broker-rust" -c "$home/conf/broker.toml"
    wait_for_port "$BROKER_PORT" broker 60
    sleep 2 # let it register with the name server
  fi
  log "RocketMQ ready: name server 127.0.0.1:$NAMESRV_PORT, broker 127.0.0.1:$BROKER_PORT"
}

ensure_infra() {
  ensure_mariadb
  ensure_redis
  ensure_rocketmq
}

ensure_nginx() {
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || apt_install nginx
}

ensure_chromium() {
  [[ -x /usr/bin/chromium ]] || apt_install chromium
}

# swagger-ui's assets for the gateway's /docs page: the swagger-ui-dist npm
# package, installed into deploy/docs/node_modules (not committed). Without
# npm the page only links the documents (a warning, not an error).
SWAGGER_UI_DIR="$REPO_DIR/deploy/docs/node_modules/swagger-ui-dist"
ensure_swagger_ui() {
  [[ -f $SWAGGER_UI_DIR/swagger-ui-bundle.js ]] && return 0
  command -v npm >/dev/null || apt_install nodejs npm || true
  if ! (cd "$REPO_DIR/deploy/docs" && npm ci --no-audit --no-fund --loglevel=error >&2); then
    log "warning: swagger-ui-dist could not be installed; /docs will only link the OpenAPI documents"
  fi
}

# The HS256 secret the local services check tokens with: made once (random,
# readable by root only) in $RUN_DIR/auth.secret; printed nowhere.
auth_secret() {
  local file="$RUN_DIR/auth.secret"
  if [[ ! -s $file ]]; then
    (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$file")
  fi
  cat "$file"
}

# start_service NAME PORT BINARY: runs a service binary with the caller's APP_*
# environment plus the HTTP port, broker addresses and the token secret
# (auth_secret, unless APP_AUTH__HS256_SECRET is set); waits for /readyz.
start_service() {
  local name=$1 port=$2 binary=$3
  if port_open "$port"; then
    log "$name already answers on 127.0.0.1:$port"
    return 0
  fi
  log "starting $name on 127.0.0.1:$port"
  local secret="${APP_AUTH__HS256_SECRET:-$(auth_secret)}"
  (cd "$REPO_DIR" && APP_HTTP__PORT="$port" APP_AUTH__HS256_SECRET="$secret" \
      APP_MQ__NAMESRV_ADDR="127.0.0.1:$NAMESRV_PORT" APP_MQ__BROKER_ADDR="127.0.0.1:$BROKER_PORT" \
      start_daemon "$name" "$binary")
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

# The stack's own names: SECKILL_NAMES (e.g. "browser_1733") gives a stack
# beside the default one its own databases, Redis prefix, topics and groups
# (seckill_<names>_*); SECKILL_DAEMON_PREFIX names its processes (pid and log
# files); SECKILL_PROFILE picks the build (release or debug). Unset: the
# default stack of deploy/up.sh (release).
STACK_NAMES="${SECKILL_NAMES:-}"
DAEMON_PREFIX="${SECKILL_DAEMON_PREFIX:-}"
PROFILE="${SECKILL_PROFILE:-release}"

# start_part PART: starts this stack's stock-service or order-service (see
# STACK_NAMES; ports ORDER_PORT and STOCK_PORT) unless it answers already.
# order-service trusts X-Forwarded-For (the gateway sets it) and mints dev
# tokens (the pages' sign-in).
start_part() {
  local part=$1 s="seckill_${STACK_NAMES}" port
  local vars=()
  if [[ -n $STACK_NAMES ]]; then
    vars+=("APP_MQ__ORDER_TOPIC=${s}_order_events" "APP_MQ__STOCK_TOPIC=${s}_stock_events")
    case $part in
      stock-service) vars+=("APP_DATABASE__NAME=${s}_stock" "APP_CONSUMER__GROUP=${s}_stock"
                            "APP_CONSUMER__EVENTS_PRODUCER_GROUP=${s}_stock_events") ;;
      order-service) vars+=("APP_DATABASE__NAME=${s}_order" "APP_ORDERS__PRODUCER_GROUP=${s}_tx"
                            "APP_REDIS__KEY_PREFIX=$s" "APP_LIFECYCLE__EVENTS_GROUP=${s}_events"
                            "APP_LIFECYCLE__TIMEOUT_PRODUCER_GROUP=${s}_timeouts"
                            "APP_DEAD_LETTERS__GROUP=${s}_dead_letters" "APP_AUDIT__GROUP=${s}_auditor"
                            "APP_DEAD_LETTERS__WATCHED_GROUPS=${s}_stock,${s}_events") ;;
    esac
  fi
  case $part in
    stock-service) port=$STOCK_PORT ;;
    order-service) port=$ORDER_PORT
                   vars+=("APP_ADMISSION__STOCK_SERVICE_URL=http://127.0.0.1:$STOCK_PORT"
                          APP_RATE_LIMIT__TRUST_FORWARDED_FOR=true APP_AUTH__DEV_TOKENS=true) ;;
    *) die "start_part: unknown part $part" ;;
  esac
  (export "${vars[@]}" && start_service "$DAEMON_PREFIX$part" "$port" "$REPO_DIR/target/$PROFILE/$part")
}

# drop_stack_databases: this stack's databases (only a stack with its own names).
drop_stack_databases() {
  [[ -n $STACK_NAMES ]] || return 0
  mysql_tcp -e "DROP DATABASE IF EXISTS seckill_${STACK_NAMES}_order; DROP DATABASE IF EXISTS seckill_${STACK_NAMES}_stock" || true
}

# start_gateway NAME GATEWAY_PORT ORDER_PORT STOCK_PORT: nginx serving web/ and
# routing /api/... to the services (config: deploy/nginx/gateway.conf).
start_gateway() {
  local name=$1 port=$2 order_port=$3 stock_port=$4
  local dir="$RUN_DIR/nginx/$name" user_line=""
  ensure_nginx
  ensure_swagger_ui
  if port_open "$port"; then
    log "$name already answers on 127.0.0.1:$port"
    return 0
  fi
  mkdir -p "$dir"
  [[ $(id -u) == 0 ]] && user_line="user root root;"
  sed -e "s|@RUN_DIR@/nginx|$dir|g" -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@USER_LINE@|$user_line|" \
      -e "s|@LISTEN_HOST@|127.0.0.1|g" -e "s|@GATEWAY_PORT@|$port|g" \
      -e "s|@ORDER_SERVERS@|server 127.0.0.1:$order_port;|g" \
      -e "s|@STOCK_SERVERS@|server 127.0.0.1:$stock_port;|g" -e "s|@WEB_ROOT@|$REPO_DIR/web|g" \
      -e "s|@SWAGGER_UI_DIR@|$SWAGGER_UI_DIR|g" \
      -e "s|@ERROR_LOG@|$LOG_DIR/$name-error.log|; s|@ACCESS_LOG@|$LOG_DIR/$name-access.log|" \
      "$REPO_DIR/deploy/nginx/gateway.conf" >"$dir/nginx.conf"
  log "starting the $name (nginx) on 127.0.0.1:$port"
  nginx -q -t -c "$dir/nginx.conf" -e "$LOG_DIR/$name-error.log" || die "invalid gateway config $dir/nginx.conf"
  nginx -c "$dir/nginx.conf" -e "$LOG_DIR/$name-error.log"
  wait_for_port "$port" "$name" 10
}

stop_gateway() {
  local pid_file="$RUN_DIR/nginx/$1/nginx.pid"
  [[ -f $pid_file ]] || return 0
  log "stopping $1"
  kill -QUIT "$(cat "$pid_file")" 2>/dev/null || true
  rm -f "$pid_file"
}
