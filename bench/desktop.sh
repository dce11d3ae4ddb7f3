#!/usr/bin/env bash
# The desktop app's cold start and idle memory, release build: starts `valet-service dev`,
# signs in with `valet login` (the same sign-in the app reads), then launches the app under
# Xvfb several times and measures, from outside the process:
#   - start to first paint: from spawning the binary to the UI's first drawn screen (the app
#     prints a line when the page has painted its first frame);
#   - idle memory: 10 s after first paint, the PSS and RSS of the app and its WebKit helper
#     processes together (the web view runs in child processes).
# Writes bench/desktop-results.json.
#
#   bench/desktop.sh [RUNS]        # default 5 runs; needs scripts/setup-debian.sh done
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
if [ -z "${VALET_KEYRING_READY:-}" ]; then
  exec xvfb-run -a -s "-screen 0 1280x900x24" scripts/with-keyring.sh "$0" "$@"
fi
npm ci --no-audit --no-fund --loglevel=error
npm --prefix ui ci --no-audit --no-fund --loglevel=error
npm run tauri -- build --no-bundle >&2   # the release app, UI embedded
cargo build --release --locked -p valet-service -p valet-cli
app=target/release/valet-upload

work=$(mktemp -d "${TMPDIR:-/var/tmp}/valet-desktop.XXXXXX")
trap 'kill ${service:-0} 2>/dev/null || true; pkill -x valet-upload 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/valet-service dev --data "$work/service" --listen "127.0.0.1:$port" >"$work/service.out" 2>"$work/service.log" &
service=$!
for _ in $(seq 1 300); do grep -q "ready on" "$work/service.out" && break; sleep 0.1; done
server=$(sed -n 's/^valet-service ready on //p' "$work/service.out")
export VALET_DATA_DIR="$work/client"
target/release/valet login --server "$server" --user dev --password-stdin < "$work/service/dev-password" >&2

# PSS and RSS (KiB) of a process and all its descendants (processes, not threads).
tree_memory() {
  local pids; pids=$(pstree -pT "$1" | grep -o '([0-9]\+)' | tr -d '()')
  local pss=0 rss=0
  for p in $pids; do
    read -r a b < <(awk '/^Pss:/ {p=$2} /^Rss:/ {r=$2} END {print p+0, r+0}' "/proc/$p/smaps_rollup" 2>/dev/null || echo "0 0")
    pss=$((pss + a)); rss=$((rss + b))
  done
  echo "$pss $rss"
}

results=()
for i in $(seq 1 "$runs"); do
  out="$work/app-$i.out"
  start=$(date +%s%N)
  "$app" > "$out" 2>"$work/app-$i.log" &
  pid=$!
  for _ in $(seq 1 600); do grep -q "first paint" "$out" && break; sleep 0.01; done
  painted=$(date +%s%N)
  grep -q "first paint" "$out" || { echo "run $i: no first paint in 6 s" >&2; cat "$work/app-$i.log" >&2; exit 1; }
  sleep 10
  read -r pss rss < <(tree_memory "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  ms=$(( (painted - start) / 1000000 ))
  echo "run $i: first paint after $ms ms; idle PSS $((pss / 1024)) MiB, RSS $((rss / 1024)) MiB" >&2
  results+=("{\"run\":$i,\"first_paint_ms\":$ms,\"idle_pss_mib\":$(python3 -c "print(round($pss/1024,1))"),\"idle_rss_mib\":$(python3 -c "print(round($rss/1024,1))")}")
done
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), Xvfb"
json="{\"machine\":\"$machine\",\"build\":\"release (tauri build --no-bundle)\",\"runs\":[$(IFS=,; echo "${results[*]}")]}"
echo "$json" | python3 -m json.tool > bench/desktop-results.json
python3 - <<'PY'
import json, statistics as s
r = json.load(open("bench/desktop-results.json"))["runs"]
paint = [x["first_paint_ms"] for x in r]
pss = [x["idle_pss_mib"] for x in r]
rss = [x["idle_rss_mib"] for x in r]
print(f"first paint: first run {paint[0]} ms, median {s.median(paint)} ms; "
      f"idle memory median: PSS {s.median(pss)} MiB, RSS {s.median(rss)} MiB ({len(r)} runs)")
PY
