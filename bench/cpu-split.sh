#!/usr/bin/env bash
# Where the CPU goes while a load runs against the local stack (deploy/up.sh):
# the CPU time (user + system, all threads) each of its processes spent
# during the command, and the command's own.
#   bench/cpu-split.sh [--orders N] -- COMMAND...
# --orders N: also per 1,000 of the N orders the command placed, e.g.
#   bench/cpu-split.sh --orders 10000 -- \
#        target/release/seckill-bench order-path --orders 10000 --concurrency 128
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
orders=""
while [[ $# -gt 0 && $1 != -- ]]; do
  case $1 in
    --orders) orders=$2; shift 2 ;;
    *) echo "usage: bench/cpu-split.sh [--orders N] -- COMMAND..." >&2; exit 2 ;;
  esac
done
[[ ${1:-} == -- ]] && shift
[[ $# -gt 0 ]] || { echo "usage: bench/cpu-split.sh [--orders N] -- COMMAND..." >&2; exit 2; }

parts=(order-service stock-service broker namesrv mariadb redis)
declare -A pid before
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for part in "${parts[@]}"; do
  p=$("$here/deploy/part.sh" pid "$part" 2>/dev/null || true)
  if [[ -n $p && -r /proc/$p/stat ]]; then pid[$part]=$p; before[$part]=$(ticks "$p"); fi
done
hz=$(getconf CLK_TCK)
start=$(date +%s.%N)
TIMEFORMAT='%U %S'
own=$( { time "$@" >&2; } 2>&1 | tail -1 )
end=$(date +%s.%N)
printf '\n%-14s %10s %8s%s\n' process "CPU ms" "% core" "${orders:+   ms per 1,000 orders}"
wall=$(echo "$end - $start" | bc -l)
report() { # name ms
  printf '%-14s %10.0f %8.1f' "$1" "$2" "$(echo "$2 / 10 / $wall" | bc -l)"
  [[ -n $orders ]] && printf ' %20.1f' "$(echo "$2 * 1000 / $orders" | bc -l)"
  printf '\n'
}
total=0
for part in "${parts[@]}"; do
  [[ -n ${pid[$part]:-} && -r /proc/${pid[$part]}/stat ]] || continue
  ms=$(( ( $(ticks "${pid[$part]}") - ${before[$part]} ) * 1000 / hz ))
  report "$part" "$ms"; total=$((total + ms))
done
cmd_ms=$(echo "$own" | awk '{printf "%d", ($1 + $2) * 1000}')
report "the command" "$cmd_ms"; total=$((total + cmd_ms))
report "in all" "$total"
printf 'over %.1f s of wall time\n' "$wall"
