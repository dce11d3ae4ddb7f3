#!/usr/bin/env bash
# The valet service under load: CLIENTS clients at once (each its own account and API token),
# ROUNDS uploads each (create, keys, PUTs straight to SeaweedFS, complete), against a fresh
# `valet-service serve` on a fresh SeaweedFS. Reports p50/p90/p99/max latency per call, errors,
# calls per second and the service's RSS over the run; writes bench/load-results.json.
# Exits 1 on any error or any upload missing from the service's audit log.
#
#   scripts/load.sh [CLIENTS] [ROUNDS] [--debug]    # default: 64 clients × 50 rounds, release build
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-64}
rounds=${2:-50}
profile=release
[ "${3:-}" = "--debug" ] && profile=debug
flag=(); [ "$profile" = release ] && flag=(--release)
cargo build "${flag[@]}" -p valet-service -p valet-tests --bin valet-service --bin valet-load

scripts/test-servers.sh install >&2
export VALET_TEST_RUN; VALET_TEST_RUN=$(mktemp -d "${TMPDIR:-/tmp}/valet-load.XXXXXX")
trap 'scripts/test-servers.sh stop >/dev/null 2>&1 || true; rm -rf "$VALET_TEST_RUN"' EXIT
eval "$(scripts/test-servers.sh start)"

echo "valet-load: $clients clients × $rounds rounds, $profile build" >&2
target/$profile/valet-load "$clients" "$rounds" --out bench/load-results.json >/dev/null
python3 - <<'PY' >&2
import json
r = json.load(open("bench/load-results.json"))
print(f"{r['uploads_verified']} of {r['uploads_attempted']} uploads verified, {r['errors']} errors, "
      f"{r['wall_secs']} s, {r['service_calls_per_sec']} service calls/s")
for call in ("create", "keys", "complete", "store_put"):
    l = r["latency"][call]
    print(f"  {call:9} p50 {l['p50_ms']} ms  p90 {l['p90_ms']} ms  p99 {l['p99_ms']} ms  max {l['max_ms']} ms")
m = r["service_rss_mib"]
print(f"  service RSS: first third {m['first_third_mean']} MiB, last third {m['last_third_mean']} MiB, peak {m['peak']} MiB")
PY
