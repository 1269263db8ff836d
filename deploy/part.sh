#!/usr/bin/env bash
# One part of a local stack, for the chaos suite (seckill-chaos) and by hand:
#   deploy/part.sh ACTION PART
#   ACTION  kill (SIGKILL) | stop (gracefully) | start | pause (SIGSTOP) |
#           resume (SIGCONT) | pid
#   deploy/part.sh describe   (the stack's addresses and names, KEY=VALUE;
#                              empty: the services' built-in default)
#   PART    order-service | stock-service | broker | namesrv | mariadb | redis
# The stack is the one the environment names (SECKILL_RUN_DIR, SECKILL_*_PORT,
# SECKILL_NAMES, SECKILL_DAEMON_PREFIX, SECKILL_PROFILE; see deploy/lib.sh):
# unset, the default one of deploy/up.sh. Starting a part that answers
# already does nothing. MariaDB and Redis are the machine's: stopping them
# stops them for everything on this machine.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

action=${1:-} part=${2:-}
if [[ $action == describe ]]; then
  db="seckill${STACK_NAMES:+_$STACK_NAMES}"
  auth_secret >/dev/null
  cat <<EOF
order_url=http://127.0.0.1:$ORDER_PORT
stock_url=http://127.0.0.1:$STOCK_PORT
order_db=mysql://root@127.0.0.1:$MYSQL_PORT/${db}_order
stock_db=mysql://root@127.0.0.1:$MYSQL_PORT/${db}_stock
secret_file=$RUN_DIR/auth.secret
namesrv=127.0.0.1:$NAMESRV_PORT
order_topic=${STACK_NAMES:+seckill_${STACK_NAMES}_order_events}
stock_group=${STACK_NAMES:+seckill_${STACK_NAMES}_stock}
link_control=${SECKILL_LINK_CONTROL:-}
EOF
  exit 0
fi
[[ -n $action && -n $part ]] || die "usage: deploy/part.sh kill|stop|start|pause|resume|pid PART"

pid_of() {
  local file
  case $part in
    order-service | stock-service) file="$PID_DIR/$DAEMON_PREFIX$part.pid" ;;
    broker | namesrv) file="$PID_DIR/$part.pid" ;;
    mariadb) file=$MARIADB_PID_FILE ;; # not pidof: containers run mariadbd too
    redis) redis-cli -p "$REDIS_PORT" info server 2>/dev/null | tr -d '\r' |
             awk -F: '$1 == "process_id" {print $2}'; return ;;
    *) die "unknown part $part" ;;
  esac
  [[ -f $file ]] && cat "$file"
}

signal() {
  local pid
  pid=$(pid_of)
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || die "$part is not running"
  log "$part (pid $pid): SIG$1"
  kill "-$1" "$pid"
  if [[ $1 == KILL ]]; then
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  fi
}

start() {
  case $part in
    order-service | stock-service) start_part "$part" ;;
    broker | namesrv) ensure_rocketmq ;;
    mariadb) ensure_mariadb ;;
    redis) ensure_redis ;;
  esac
}

stop() {
  case $part in
    order-service | stock-service) stop_daemon "$DAEMON_PREFIX$part" ;;
    broker | namesrv) stop_daemon "$part" ;;
    mariadb)
      log "stopping MariaDB"
      local pid
      pid=$(pid_of)
      mysqladmin -h127.0.0.1 -P"$MYSQL_PORT" -uroot --protocol=TCP shutdown
      # The port closes before the process has finished: wait for both.
      while port_open "$MYSQL_PORT" || { [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; }; do sleep 0.05; done ;;
    redis)
      log "stopping Redis (it keeps nothing)"
      redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
      while port_open "$REDIS_PORT"; do sleep 0.05; done ;;
  esac
}

case $action in
  kill) signal KILL ;;
  pause) signal STOP ;;
  resume) signal CONT ;;
  stop) stop ;;
  start) start ;;
  pid) pid_of ;;
  *) die "unknown action $action" ;;
esac
