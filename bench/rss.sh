#!/usr/bin/env bash
# Peak memory of `valet put` must not grow with the file: uploads a 1 GiB and a 4 GiB file of
# random bytes to `valet-service dev` (embedded store) and reports, for each, peak RSS (from
# /usr/bin/time), wall time, throughput and CPU seconds. Writes bench/rss-results.json.
#
#   bench/rss.sh [--parallel N]      # default: the client's default parallelism
set -euo pipefail
cd "$(dirname "$0")/.."
extra=("$@")
cargo build --release --bins --locked
work=$(mktemp -d "${TMPDIR:-/var/tmp}/valet-rss.XXXXXX")
trap 'kill ${service:-0} 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/valet-service dev --data "$work/service" --listen "127.0.0.1:$port" >"$work/service.out" 2>"$work/service.log" &
service=$!
for _ in $(seq 1 300); do grep -q "ready on" "$work/service.out" && break; sleep 0.1; done
export VALET_SERVER; VALET_SERVER=$(sed -n 's/^valet-service ready on //p' "$work/service.out")
export VALET_TOKEN; VALET_TOKEN=$(target/release/valet-service token issue dev --data "$work/service")
export VALET_DATA_DIR="$work/client"

results=()
for gib in 1 4; do
  file="$work/random-$gib.bin"
  head -c $((gib * 1024 * 1024 * 1024)) /dev/urandom > "$file"
  sync
  /usr/bin/time -f '%M %e %U %S' -o "$work/time-$gib" \
    target/release/valet put --json "${extra[@]}" "$file" > "$work/put-$gib.json"
  grep -q '"verified":true' "$work/put-$gib.json" || { cat "$work/put-$gib.json"; exit 1; }
  read -r rss_kib wall user sys < "$work/time-$gib"
  mib_s=$(python3 -c "print(round($gib*1024/$wall, 1))")
  cpu=$(python3 -c "print(round(($user+$sys)/$gib, 2))")
  rss_mib=$(python3 -c "print(round($rss_kib/1024, 1))")
  echo "$gib GiB: peak RSS $rss_mib MiB, $wall s, $mib_s MiB/s, $cpu CPU-s/GiB" >&2
  results+=("{\"file_gib\":$gib,\"peak_rss_mib\":$rss_mib,\"seconds\":$wall,\"mib_s\":$mib_s,\"cpu_s_per_gib\":$cpu}")
  rm -f "$file"
done
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
json="{\"machine\":\"$machine\",\"store\":\"valet-service dev (embedded s3s-fs)\",\"args\":\"${extra[*]}\",\"runs\":[$(IFS=,; echo "${results[*]}")]}"
echo "$json" | python3 -m json.tool > bench/rss-results.json
python3 - <<'PY'
import json
r = json.load(open("bench/rss-results.json"))["runs"]
a, b = r[0]["peak_rss_mib"], r[1]["peak_rss_mib"]
print(f"peak RSS 1 GiB: {a} MiB, 4 GiB: {b} MiB, difference {abs(b-a)/a*100:.1f}% (target < 10%)")
PY
