#!/bin/bash
# Renders the upstream servers from the replicas' current addresses, runs nginx
# in the foreground and re-renders + reloads it when an address changes.
# nginx resolves upstream host names only when it loads its config, and a
# restarted container usually comes back with another address: without the
# reload the gateway would keep sending to the old one. A replica whose name
# does not resolve (container stopped) is left out until it is back.
set -euo pipefail
template=/etc/seckill/gateway.conf.in
conf=/tmp/nginx/nginx.conf
interval=${GATEWAY_RESOLVE_INTERVAL_SECS:-2}
mkdir -p /tmp/nginx

# servers "host:port host:port ...": one nginx server entry per resolvable replica.
servers() {
  local hp host port ip out=""
  for hp in $1; do
    host=${hp%:*} port=${hp##*:}
    ip=$(getent ahostsv4 "$host" 2>/dev/null | awk 'NR == 1 { print $1 }') || true
    [[ -n $ip ]] && out+="server $ip:$port max_fails=1 fail_timeout=${GATEWAY_FAIL_TIMEOUT:-3s}; "
  done
  # No replica at all: a placeholder that is never used (the gateway answers 503).
  [[ -n $out ]] || out="server 127.0.0.1:9 down; "
  printf '%s' "$out"
}

render() {
  local text order stock
  text=$(<"$template")
  order=$(servers "$ORDER_UPSTREAMS")
  stock=$(servers "$STOCK_UPSTREAMS")
  text=${text//@ORDER_SERVERS@/$order}
  text=${text//@STOCK_SERVERS@/$stock}
  printf '%s\n' "$text"
}

render >"$conf"
echo "[gateway] upstreams: $(grep -o 'upstream [a-z_]* {[^}]*}' "$conf" | tr '\n' ' ')"
nginx -t -q -c "$conf" -e /dev/stderr
nginx -c "$conf" -e /dev/stderr -g 'daemon off;' &
nginx_pid=$!
trap 'kill -QUIT "$nginx_pid" 2>/dev/null; wait "$nginx_pid"; exit 0' TERM INT QUIT

while kill -0 "$nginx_pid" 2>/dev/null; do
  sleep "$interval" &
  wait $! || true
  render >"$conf.new"
  if ! cmp -s "$conf.new" "$conf"; then
    mv "$conf.new" "$conf"
    echo "[gateway] replica addresses changed, reloading: $(grep -o 'upstream [a-z_]* {[^}]*}' "$conf" | tr '\n' ' ')"
    kill -HUP "$nginx_pid"
  fi
done
wait "$nginx_pid"
