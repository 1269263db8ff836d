#!/usr/bin/env bash
# Fuzzes both services against their own OpenAPI documents with schemathesis
# (installed from PyPI into a venv under .run/). Starts its own order-service
# and stock-service (debug builds) on other ports, with their own databases,
# Redis prefix, topics and groups, so a running deploy/up.sh system and the
# browser tests are not touched; stops them and drops the databases at the end.
#   1. every operation of both documents, all modes, once with a buyer's token
#      and once with an admin's: no 5xx, and every answer as documented
#      (status code, content type, headers, body schema);
#   2. only invalid requests (negative mode) with the admin's token: each is
#      refused with a 4xx, and afterwards stock (stock-service), orders (the
#      order database) and Redis (the sales' admission view) are unchanged.
# Called by deploy/test.sh (which starts the infrastructure and builds the
# binaries first). Environment: SECKILL_FUZZ_EXAMPLES (default 50 per
# operation), SECKILL_FUZZ_{ORDER,STOCK}_PORT.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCHEMATHESIS_VERSION="4.32.5"
examples="${SECKILL_FUZZ_EXAMPLES:-50}"
STACK_NAMES="fuzz_$(date +%s)" DAEMON_PREFIX=fuzz- PROFILE=debug
ORDER_PORT="${SECKILL_FUZZ_ORDER_PORT:-28091}" order_port=$ORDER_PORT
STOCK_PORT="${SECKILL_FUZZ_STOCK_PORT:-28092}" stock_port=$STOCK_PORT
order_url="http://127.0.0.1:$order_port"
stock_url="http://127.0.0.1:$stock_port"
out="$RUN_DIR/fuzz"
venv="$RUN_DIR/fuzz-venv"
started=$SECONDS

# --- schemathesis, pinned, in its own venv ---------------------------------
if [[ $("$venv/bin/schemathesis" --version 2>/dev/null) != *"$SCHEMATHESIS_VERSION"* ]]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv" || { apt_install python3-venv && python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
st="$venv/bin/schemathesis"

# --- own services ------------------------------------------------------------
cleanup() {
  stop_daemon fuzz-order-service
  stop_daemon fuzz-stock-service
  drop_stack_databases
}
stop_daemon fuzz-order-service
stop_daemon fuzz-stock-service
for port in "$order_port" "$stock_port"; do
  port_open "$port" && die "port $port is taken by something else; set SECKILL_FUZZ_*_PORT"
done
trap cleanup EXIT

export APP_LOG__LEVEL=info
start_part stock-service
start_part order-service

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
token_for() { # USER_ID ADMIN
  curl -fsS -X POST "$order_url/api/auth/dev-token" -H 'Content-Type: application/json' \
    -d "{\"user_id\": $1, \"admin\": $2}" | json_field "['token']"
}
buyer_token=$(token_for 7001 false)
admin_token=$(token_for 7002 true)

# Two sales: one on sale now, one that starts in an hour.
open_sale() { # PRODUCT BODY
  curl -fsS -o /dev/null -X PUT "$order_url/api/sales/$1" -H "Authorization: Bearer $admin_token" \
    -H 'Content-Type: application/json' -d "$2" || die "opening sale $1 failed"
}
open_sale 1 '{"stock": 100, "per_user_limit": 2, "name": "Fuzzed phone", "list_price_cents": 99900, "sale_price_cents": 49900}'
open_sale 2 "{\"stock\": 10, \"starts_at\": \"$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)\"}"

# --- the runs ---------------------------------------------------------------
rm -rf "$out" && mkdir -p "$out"
# Starting a batch purchase runs up to 20,000 simulated buyers: a few, with
# random (not boundary) sizes, are enough to check its answers.
cat >"$out/schemathesis.toml" <<'EOF'
[[operations]]
include-name = "POST /api/admin/batch"
generation.max-examples = 3
phases.coverage.enabled = false
EOF
conformance="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
summary=()
failed=0

# fuzz NAME TOKEN SERVICE_URL MODE CHECKS PHASES [schemathesis options...]
# One worker: with two, Python 3.11's ast.parse (called by hypothesis from
# threads) failed now and then ("AST constructor recursion depth mismatch").
fuzz() {
  local name=$1 token=$2 url=$3 mode=$4 checks=$5 phases=$6 t0=$SECONDS rc=0 cases
  shift 6
  log "schemathesis: $name ($url, mode $mode, $examples examples per operation)"
  (cd "$out" && "$st" --config-file "$out/schemathesis.toml" run "$url/api-docs/openapi.json" \
    --mode "$mode" --checks "$checks" --max-examples "$examples" --workers 1 --phases "$phases" \
    --header "Authorization: Bearer $token" --seed 12012 --request-timeout 40 \
    --suppress-health-check all --no-color --continue-on-failure \
    --generation-with-security-parameters false --generation-database none \
    --report junit,ndjson --report-dir "$out/$name" "$@") >"$out/$name.log" 2>&1 || rc=$?
  cases=$(grep -Eo '[0-9]+ generated' "$out/$name.log" | tail -1 | grep -Eo '[0-9]+' || echo '?')
  tail -n 15 "$out/$name.log" >&2
  summary+=("$(printf '%-16s %-8s %6s test cases %5ss  exit %s' "$name" "$mode" "$cases" $((SECONDS - t0)) "$rc")")
  if (( rc != 0 )); then
    failed=1
    log "schemathesis $name failed: the whole log is $out/$name.log"
  fi
}

all_phases=examples,coverage,fuzzing,stateful
fuzz order-as-buyer "$buyer_token" "$order_url" all "$conformance" "$all_phases"
fuzz stock-as-buyer "$buyer_token" "$stock_url" all "$conformance" "$all_phases"
fuzz order-as-admin "$admin_token" "$order_url" all "$conformance" "$all_phases"
fuzz stock-as-admin "$admin_token" "$stock_url" all "$conformance" "$all_phases"

# What invalid requests must leave alone: every sale's admission view (Redis)
# and terms, every product's stock and applied messages, and the orders.
snapshot() {
  local sales stock orders
  set -e
  sales=$(curl -fsS "$order_url/api/sales" | python3 -c '
import json, sys
for s in json.load(sys.stdin)["sales"]:
    print(s["product_id"], s["stock"], s["reserved_orders"], s["opened_stock"], s["per_user_limit"])')
  stock=$(curl -fsS -H "Authorization: Bearer $admin_token" "$stock_url/api/stock/stats" | python3 -c '
import json, sys
print(json.dumps(json.load(sys.stdin), sort_keys=True))')
  orders=$(mysql_tcp -N -e "SELECT COUNT(*), COALESCE(SUM(pay_count), 0) FROM seckill_${STACK_NAMES}_order.orders")
  printf 'sales:\n%s\nstock: %s\n%s\n%s\norders: %s\n' "$sales" "$stock" \
    "$(curl -fsS "$stock_url/api/stock/1")" "$(curl -fsS "$stock_url/api/stock/2")" "$orders"
}
# Batches started by the admin run settle first: wait until nothing moved
# for 15 s.
settled() {
  local previous="" current waited=0 same=0
  while (( waited < 180 )); do
    current=$(snapshot) || die "reading the state failed"
    if [[ $current == "$previous" ]]; then
      (( ++same >= 5 )) && { printf '%s\n' "$current"; return 0; }
    else
      same=0
    fi
    previous=$current
    sleep 3
    waited=$((waited + 3))
  done
  die "the services did not settle within 180 s after the admin run"
}
before=$(settled) || exit 1
# Only the coverage and fuzzing phases: the examples phase sends the
# documented (valid) examples, and the stateful one makes valid set-up calls
# (e.g. PUT /api/stock/{id}) before its invalid ones. The admin operations
# without any input (rebuild, repair) cannot be sent invalid: left out (the
# coverage phase would send them as they are, and they rebuild Redis).
fuzz order-negative "$admin_token" "$order_url" negative "not_a_server_error,negative_data_rejection" coverage,fuzzing \
  --exclude-path /api/admin/admission/rebuild --exclude-path /api/admin/reconcile/repair
fuzz stock-negative "$admin_token" "$stock_url" negative "not_a_server_error,negative_data_rejection" coverage,fuzzing
sleep 3 # an accepted invalid order would have reached stock-service by now
after=$(snapshot) || die "reading the state failed"
if [[ $before == "$after" ]]; then
  summary+=("invalid requests changed nothing (stock, orders, Redis)")
else
  failed=1
  summary+=("invalid requests CHANGED the state")
  diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") >&2 || true
fi

log "fuzz summary ($((SECONDS - started)) s in all; logs and reports in $out):"
printf '  %s\n' "${summary[@]}" >&2
(( failed == 0 )) || die "the fuzz run found failures (see above)"
log "fuzz run passed"
