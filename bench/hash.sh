#!/usr/bin/env bash
# The read+hash pipeline of an upload against single-core OpenSSL SHA-256, on this machine.
#
# Runs, RUNS times (default 3), alternating: `openssl speed -evp sha256 -bytes 16384` (one
# process: one core) and the engine's read_hash benchmark (crates/valet-engine/benches), whose
# `pipeline` reads a file in the page cache and hashes it as an upload does (whole file and parts
# in one pass), `pipeline_rehashing` hashes each part a second time as the engine used to, and
# `sha2_16k` is the sha2 crate's SHA-256 fed 16 KiB at a time. Prints the figures and writes
# bench/hash-results.json, in bytes per second: `median` is the median of the runs' medians
# (divan's median of its samples), `best` the fastest sample of any run (the figure least
# disturbed by other work on the machine), with the machine and its load averages. Every ratio
# is over OpenSSL's median: `openssl speed` counts the CPU time it got, not the time it took, so
# it needs no best-of, and its best run on a busy machine can be an outlier above what a core
# does.
#
# Usage: bench/hash.sh            (RUNS=5 bench/hash.sh for more runs)
set -euo pipefail

cd "$(dirname "$0")/.."
runs=${RUNS:-3}
seconds=${OPENSSL_SECONDS:-5}
out=bench/hash-results.json

command -v openssl >/dev/null || { echo "hash.sh: openssl is not installed" >&2; exit 1; }
command -v jq >/dev/null || { echo "hash.sh: jq is not installed" >&2; exit 1; }

echo "building the benchmark..." >&2
cargo bench -p valet-engine --bench read_hash --no-run >&2

# Bytes per second from divan's throughput of benchmark $1 in column $3 (1 fastest, 3 median)
# of its output $2: the line under the benchmark's name, such as
# "│  1.523 GB/s  │ 1.2 GB/s │ 1.4 GB/s │ ...".
divan_figure() {
  local name=$1 file=$2 column=$3
  awk -v name="$name" -v column="$column" '
    $0 ~ "(─|^)[ ]*" name "[ ]" { found = 1; next }
    found && /\/s/ {
      sub(/^[ ]*│/, "")
      split($0, cols, "│")
      split(cols[column], f, " ")
      v = f[1]; u = f[2]
      m = 1
      if (u == "KB/s") m = 1e3; else if (u == "MB/s") m = 1e6
      else if (u == "GB/s") m = 1e9; else if (u == "TB/s") m = 1e12
      printf "%.0f\n", v * m
      exit
    }' "$file"
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
best() { sort -n | tail -1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$runs"); do
  echo "run $run/$runs: openssl speed -evp sha256 -bytes 16384 -seconds $seconds" >&2
  openssl speed -evp sha256 -bytes 16384 -seconds "$seconds" -mr 2>/dev/null \
    | awk -F: '/^\+F:/ { printf "%.0f\n", $4 }' >>"$tmp/openssl"
  echo "run $run/$runs: cargo bench -p valet-engine --bench read_hash" >&2
  cargo bench -p valet-engine --bench read_hash 2>/dev/null | tee "$tmp/divan-$run" >&2
  for bench in pipeline pipeline_rehashing sha2_16k; do
    divan_figure "$bench" "$tmp/divan-$run" 3 >>"$tmp/$bench"
    divan_figure "$bench" "$tmp/divan-$run" 1 >>"$tmp/$bench-fastest"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

for f in openssl pipeline pipeline_rehashing sha2_16k; do
  if [ "$(grep -c . "$tmp/$f")" -ne "$runs" ]; then
    echo "hash.sh: could not read every $f figure" >&2
    exit 1
  fi
done

# figures NAME: {median, best} of the runs, from $tmp/NAME (each run's median) and
# $tmp/NAME-fastest (each run's fastest sample; OpenSSL has one figure per run).
figures() {
  local best_file=$tmp/$1-fastest
  [ -f "$best_file" ] || best_file=$tmp/$1
  jq -n --argjson median "$(median <"$tmp/$1")" --argjson best "$(best <"$best_file")" \
    --argjson runs "$(jq -s . "$tmp/$1")" '{median: $median, best: $best, each_run_median: $runs}'
}

jq -n \
  --arg cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
  --argjson cores "$(nproc)" \
  --arg kernel "$(uname -sr)" \
  --arg openssl_version "$(openssl version)" \
  --arg load_before "$load_before" --arg load_after "$load_after" \
  --argjson runs "$runs" \
  --argjson openssl "$(figures openssl)" \
  --argjson pipeline "$(figures pipeline)" \
  --argjson rehashing "$(figures pipeline_rehashing)" \
  --argjson sha2 "$(figures sha2_16k)" \
  'def ratio(a; b): (a / b * 1000 | round) / 1000;
  {
    machine: { cores: $cores, cpu: $cpu, kernel: $kernel,
               load_average_before: $load_before, load_average_after: $load_after },
    openssl_version: $openssl_version,
    runs: $runs,
    bytes_per_s: {
      openssl_sha256_16k: $openssl,
      pipeline: $pipeline,
      pipeline_rehashing: $rehashing,
      sha2_16k: $sha2
    },
    pipeline_over_openssl: { median: ratio($pipeline.median; $openssl.median),
                             best: ratio($pipeline.best; $openssl.median) },
    pipeline_rehashing_over_openssl: { median: ratio($rehashing.median; $openssl.median),
                                       best: ratio($rehashing.best; $openssl.median) },
    sha2_over_openssl: { median: ratio($sha2.median; $openssl.median),
                         best: ratio($sha2.best; $openssl.median) }
  }' | tee "$out"
echo "wrote $out" >&2
