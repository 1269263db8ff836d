# shellcheck shell=bash
# The containerized cluster (deploy/up.sh --cluster): the Docker engine, a
# local Debian base image, the images and the compose project. Sourced by
# deploy/up.sh, deploy/down.sh and deploy/status.sh when given --cluster.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

CLUSTER_DIR="$REPO_DIR/deploy/cluster"
CLUSTER_PROJECT="${SECKILL_CLUSTER_PROJECT:-seckill-cluster}"
CLUSTER_RUN_DIR="$RUN_DIR/cluster"
CLUSTER_GATEWAY_PORT="${SECKILL_CLUSTER_GATEWAY_PORT:-8088}"
# The base every image starts FROM. Machines with a registry can set
# SECKILL_BASE_IMAGE=debian:bookworm-slim; without one it is made by debootstrap.
BASE_IMAGE="${SECKILL_BASE_IMAGE:-seckill/debian-base:bookworm}"
CLUSTER_WAIT_SECS="${SECKILL_CLUSTER_WAIT_SECS:-300}"

# The HS256 secret both services check tokens with (compose passes it on;
# the cluster tests mint their buyers' tokens with it): made once, random.
if [[ -z ${SECKILL_AUTH_SECRET:-} ]]; then
  mkdir -p "$CLUSTER_RUN_DIR"
  [[ -s $CLUSTER_RUN_DIR/auth.secret ]] ||
    (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$CLUSTER_RUN_DIR/auth.secret")
  SECKILL_AUTH_SECRET="$(cat "$CLUSTER_RUN_DIR/auth.secret")"
fi
export SECKILL_AUTH_SECRET

# Timing of each step: step_start; ...; step_done WHAT
_step_t0=0
step_start() { _step_t0=${EPOCHREALTIME/./}; }
step_done() {
  local us=$(( ${EPOCHREALTIME/./} - _step_t0 ))
  log "$(printf 'took %4d.%01d s  %s' $((us / 1000000)) $((us % 1000000 / 100000)) "$1")"
}

compose() { docker-compose -p "$CLUSTER_PROJECT" -f "$CLUSTER_DIR/compose.yaml" "$@"; }

# Installs Debian's Docker engine and Compose v1 when missing and starts the
# daemon in the background when it does not answer (no init system here).
ensure_docker() {
  step_start
  if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
    apt_install docker.io docker-compose
    step_done "installing docker.io + docker-compose"
    step_start
  fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: $LOG_DIR/dockerd.log)"
    # A daemon that died leaves its pid file behind, and a new one refuses to start.
    if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
      rm -f /var/run/docker.pid
    fi
    # Its own session so that it outlives the calling script's process group.
    setsid nohup dockerd >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
    echo $! >"$PID_DIR/dockerd.pid"
    local waited=0
    until docker info >/dev/null 2>&1; do
      if (( waited++ >= 600 )); then
        tail -n 20 "$LOG_DIR/dockerd.log" >&2
        die "dockerd did not answer within 60 s (log: $LOG_DIR/dockerd.log)"
      fi
      sleep 0.1
    done
    step_done "starting dockerd"
  fi
}

# The Debian mirrors apt uses on this machine (deb822 .sources or
# sources.list): apt_uri main|security prints the first URI of that kind.
apt_uri() {
  local want=$1 uri
  uri=$(awk -v want="$want" '
      /^URIs:/ { for (i = 2; i <= NF; i++) if ((want == "security") == ($i ~ /security/)) { print $i; exit } }
      $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {
                      if ((want == "security") == ($i ~ /security/)) { print $i; exit } ; break } }' \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
  echo "$uri"
}

# seckill/debian-base:bookworm: a minimal Debian 12 made by debootstrap from the
# machine's own mirror (no registry needed). Skipped when the image exists.
ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    return 0
  fi
  [[ $BASE_IMAGE == seckill/debian-base:* ]] ||
    die "base image $BASE_IMAGE is missing (pull it, or unset SECKILL_BASE_IMAGE to build one by debootstrap)"
  command -v debootstrap >/dev/null || apt_install debootstrap
  local mirror security dir="$CLUSTER_RUN_DIR/rootfs"
  mirror=$(apt_uri main)
  security=$(apt_uri security)
  [[ -n $mirror ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d/}"
  log "making $BASE_IMAGE by debootstrap from $mirror (once; ~1 min)"
  step_start
  rm -rf "$dir"
  mkdir -p "$dir"
  if ! debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$LOG_DIR/debootstrap.log" 2>&1; then
    tail -n 20 "$LOG_DIR/debootstrap.log" >&2
    die "debootstrap failed (log: $LOG_DIR/debootstrap.log)"
  fi
  # The images install their packages from the same mirrors as this machine.
  {
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror"
    [[ -z $security ]] || printf 'deb %s bookworm-security main\n' "$security"
  } >"$dir/etc/apt/sources.list"
  cat >"$dir/etc/apt/apt.conf.d/90seckill" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
APT
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  step_done "debootstrap bookworm (minbase)"
  step_start
  tar -C "$dir" -c . | docker import -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$dir"
  step_done "docker import $BASE_IMAGE"
}

# The services, built on the host (the images copy the binaries): a release
# build by default; SECKILL_CLUSTER_PROFILE=debug (the test command) reuses the
# debug build the tests made, which saves a cold release build (~15 min on
# two cores) in CI. A failed build stops here.
CLUSTER_PROFILE="${SECKILL_CLUSTER_PROFILE:-release}"
ensure_service_binaries() {
  step_start
  local flags=(--locked -p order-service -p stock-service)
  [[ $CLUSTER_PROFILE == release ]] && flags+=(--release)
  [[ $CLUSTER_PROFILE == release || $CLUSTER_PROFILE == debug ]] ||
    die "SECKILL_CLUSTER_PROFILE must be release or debug, not $CLUSTER_PROFILE"
  log "building the services ($CLUSTER_PROFILE; log: $LOG_DIR/cluster-cargo-build.log)"
  if ! (cd "$REPO_DIR" && cargo build "${flags[@]}") >"$LOG_DIR/cluster-cargo-build.log" 2>&1; then
    tail -n 20 "$LOG_DIR/cluster-cargo-build.log" >&2
    die "building the services failed (log: $LOG_DIR/cluster-cargo-build.log)"
  fi
  step_done "cargo build ($CLUSTER_PROFILE, services)"
}

# stage IMAGE_DIR [NAME]: a fresh build context .run/cluster/ctx/NAME (default
# IMAGE_DIR) holding deploy/cluster/images/IMAGE_DIR/* only; callers add what
# the image needs. Prints its path.
stage() {
  local ctx="$CLUSTER_RUN_DIR/ctx/${2:-$1}"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -a "$CLUSTER_DIR/images/$1/." "$ctx/"
  chmod 0755 "$ctx"/*.sh 2>/dev/null || true
  echo "$ctx"
}

# link SRC DEST: a hard link when possible (same file system), else a copy.
link() { ln -f "$1" "$2" 2>/dev/null || cp -f "$1" "$2"; chmod 0755 "$2"; }

# build_image TAG CONTEXT [docker build args...]
build_image() {
  local tag=$1 ctx=$2 logf
  shift 2
  logf="$LOG_DIR/cluster-build-${tag//[\/:]/_}.log"
  step_start
  # The legacy builder when buildx is missing (Debian's docker.io has none).
  if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi
  if ! docker build --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$tag" "$@" "$ctx" >"$logf" 2>&1; then
    tail -n 30 "$logf" >&2
    die "building $tag failed (log: $logf)"
  fi
  step_done "image $tag ($(grep -Ec 'Using cache|CACHED' "$logf" || true) cached steps)"
}

# The gateway's config: deploy/nginx/gateway.conf (the one template the local
# gateway uses too) with the container's paths; the upstream servers
# (@ORDER_SERVERS@, @STOCK_SERVERS@) are filled in by the image's entrypoint.
render_gateway_template() {
  sed -e "s|@RUN_DIR@/nginx|/tmp/nginx|g" -e "s|@RUN_DIR@|/tmp|g" -e "s|@USER_LINE@||" \
      -e "s|@LISTEN_HOST@|0.0.0.0|g" -e "s|@GATEWAY_PORT@|8081|g" \
      -e "s|@WEB_ROOT@|/usr/share/seckill/web|g" \
      -e "s|@SWAGGER_UI_DIR@|/usr/share/seckill/swagger-ui|g" \
      -e "s|@ERROR_LOG@|/dev/stderr|; s|@ACCESS_LOG@|/dev/stdout|" \
      "$REPO_DIR/deploy/nginx/gateway.conf" >"$1"
  if grep -o '@[A-Z_]*@' "$1" | grep -Ev '^@(ORDER|STOCK)_SERVERS@$' >&2; then
    die "deploy/nginx/gateway.conf has placeholders the cluster rendering does not fill (above)"
  fi
}

build_images() {
  local ctx svc
  ctx=$(stage rocketmq)
  mkdir -p "$ctx/bin"
  link "$ROCKETMQ_ROOT/bin/rocketmq-namesrv-rust" "$ctx/bin/rocketmq-namesrv-rust"
  link "$ROCKETMQ_ROOT/bin/rocketmq-broker-rust" "$ctx/bin/rocketmq-broker-rust"
  build_image "seckill/rocketmq:$ROCKETMQ_VERSION" "$ctx"

  for svc in order-service stock-service; do
    ctx=$(stage service "$svc")
    link "$REPO_DIR/target/$CLUSTER_PROFILE/$svc" "$ctx/service"
    build_image "seckill/$svc:latest" "$ctx" --build-arg SERVICE="$svc"
  done

  build_image seckill/mariadb:latest "$(stage mariadb)"
  build_image seckill/redis:latest "$(stage redis)"

  ctx=$(stage gateway)
  render_gateway_template "$ctx/gateway.conf.in"
  cp -a "$REPO_DIR/web" "$ctx/web"
  # swagger-ui for /docs, when it could be installed here (else the page
  # only links the documents).
  ensure_swagger_ui
  mkdir -p "$ctx/swagger-ui"
  local asset
  for asset in swagger-ui.css swagger-ui-bundle.js swagger-ui-standalone-preset.js; do
    [[ -f $SWAGGER_UI_DIR/$asset ]] && cp "$SWAGGER_UI_DIR/$asset" "$ctx/swagger-ui/"
  done
  build_image seckill/gateway:latest "$ctx"
}

# Container name, state and health of every container of the project.
cluster_containers() {
  local ids
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$CLUSTER_PROJECT")
  [[ -n $ids ]] || return 0
  # shellcheck disable=SC2086
  docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids | sort
}

# Prints the last log lines of every container that is not healthy.
show_unhealthy() {
  local svc state health
  while read -r svc state health; do
    [[ $state == running && $health == healthy ]] && continue
    printf '\n----- %s (%s, %s): last log lines -----\n' "$svc" "$state" "$health" >&2
    compose logs --no-color --tail=25 "$svc" >&2 || true
  done < <(cluster_containers)
}

# Waits until every service of the compose file has a running, healthy container.
wait_healthy() {
  local limit=$1 start=$SECONDS expected last="" svc state health healthy bad line
  expected=$(compose config --services | wc -l)
  while :; do
    healthy=0 bad=""
    while read -r svc state health; do
      [[ -n $svc ]] || continue
      if [[ $state == running && $health == healthy ]]; then
        healthy=$((healthy + 1))
      elif [[ $state != running && $state != created && $state != restarting ]]; then
        bad+=" $svc($state)"
      fi
    done < <(cluster_containers)
    line="$healthy/$expected healthy"
    [[ $line != "$last" ]] && log "$line after $((SECONDS - start)) s"
    last=$line
    (( healthy == expected )) && return 0
    if [[ -n $bad ]]; then
      show_unhealthy
      die "containers stopped:$bad"
    fi
    if (( SECONDS - start >= limit )); then
      show_unhealthy
      die "not all containers healthy within ${limit} s"
    fi
    sleep 2
  done
}

cluster_up() {
  local t0=$SECONDS
  ensure_docker
  ensure_base_image
  step_start
  ensure_rocketmq_binaries
  step_done "RocketMQ server binaries (cached after the first build)"
  ensure_service_binaries
  build_images
  log "starting the cluster (compose project $CLUSTER_PROJECT)"
  step_start
  if ! timeout "$CLUSTER_WAIT_SECS" docker-compose -p "$CLUSTER_PROJECT" -f "$CLUSTER_DIR/compose.yaml" \
      up -d --no-build --remove-orphans; then
    show_unhealthy
    die "docker-compose up failed"
  fi
  wait_healthy "$CLUSTER_WAIT_SECS"
  step_done "compose up until every container is healthy"
  cat <<MSG

seckill cluster is up ($(( SECONDS - t0 )) s). Compose project: $CLUSTER_PROJECT
  gateway   http://127.0.0.1:$CLUSTER_GATEWAY_PORT/   (pages: /order /pay /batch /dashboard; API: /api/...)
  order-db  127.0.0.1:${SECKILL_CLUSTER_ORDER_DB_PORT:-13306}   stock-db 127.0.0.1:${SECKILL_CLUSTER_STOCK_DB_PORT:-13307}   (root / \$SECKILL_DB_PASSWORD, default seckill-dev)
  logs:     docker-compose -p $CLUSTER_PROJECT -f deploy/cluster/compose.yaml logs -f SERVICE
  status: deploy/status.sh --cluster    stop: deploy/down.sh --cluster [--volumes]
MSG
}

# cluster_down [--volumes]: stops and removes the containers (and the named
# volumes: databases, broker stores, name server homes, with --volumes).
cluster_down() {
  local args=(down --remove-orphans)
  [[ ${1:-} == --volumes || ${1:-} == -v ]] && args+=(--volumes)
  if ! docker info >/dev/null 2>&1; then
    log "no Docker engine answers: nothing to stop"
    return 0
  fi
  compose "${args[@]}"
  log "cluster stopped${args[2]:+ (volumes removed)}"
}

# One line per service: state and health; exit status 1 unless all are healthy.
cluster_status() {
  docker info >/dev/null 2>&1 || { echo "  no Docker engine answers"; return 1; }
  local status=0 svc state health seen
  seen=$(cluster_containers)
  for svc in $(compose config --services | sort); do
    read -r _ state health < <(grep "^$svc " <<<"$seen" || echo "$svc missing -")
    if [[ $state == running && $health == healthy ]]; then
      printf '  %-18s up    %s\n' "$svc" "$health"
    else
      printf '  %-18s DOWN  %s %s\n' "$svc" "$state" "$health"
      status=1
    fi
  done
  echo "  gateway: http://127.0.0.1:$CLUSTER_GATEWAY_PORT/"
  return $status
}
