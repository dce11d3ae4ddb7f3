#!/usr/bin/env bash
# The valet service alone under load: part keys and completions per second and their latency,
# release build, SQLite, at several concurrency levels. Starts its own SeaweedFS (the store the
# completions need; valet-load starts and stops it) and its own `valet-service serve`; the load generator (`valet-load
# --service`, tests/src/bin/valet_load/service_phases.rs) runs on the same machine, so the
# figures are what one machine does with the service, the store and the clients all on it.
# Prints a table and writes bench/service-results.json. Exits 1 on any error. Each client sends
# its next request when the last is answered, so past a few clients the latency is mostly the
# wait in line: at N clients, mean latency = N / requests per second.
#
#   bench/service.sh [--levels 1,2,4,16,64] [--batches 8,100] [--seconds 10] [--completions 1000]
#
# Keys: each client asks for keys of its own 4 GiB upload (512 parts of 8 MiB), BATCH parts per
# request (the engine asks for the parts hashed and waiting, a handful at a time; 100 is the
# most a request may ask for). Completions: uploads of one 16 KiB part, created and PUT before
# the timed window, completed in it (the service lists the parts, completes and checks the
# object on the store).
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/service-results.json
cargo build --release -p valet-service -p valet-tests --bin valet-service --bin valet-load

scripts/test-servers.sh install >&2
# Not a shared store: valet-load starts a SeaweedFS of its own and stops it at the end.
unset VALET_TEST_S3

echo "machine load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
target/release/valet-load --service "$@" --out "$out" >/dev/null
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["machine"]
print(f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {r['build']} build; "
      f"{r['errors']} errors; {r['completed_in_audit_log']} completions in the audit log")
print(f"{'phase':9}{'clients':>8}{'batch':>6}{'req/s':>8}{'keys/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
      f"{'p99.9':>8}{'max ms':>8}{'errors':>7}{'svc cpu':>8}{'rss MiB':>8}")
for p in r["phases"]:
    l = p["latency"]
    print(f"{p['phase']:9}{p['clients']:>8}{p.get('batch', '-'):>6}{p['requests_per_s']:>8.0f}"
          f"{p.get('keys_per_s', 0):>8.0f}{l['p50_ms']:>8}{l['p99_ms']:>8}{l['p999_ms']:>8}"
          f"{l['max_ms']:>8}{p['errors']:>7}{p['service_cpu_share_of_2_cores']:>8.0%}"
          f"{p['service_rss_peak_mib']:>8}")
print("svc cpu: the service's CPU time over the window, as a share of the machine's 2 cores")
PY
