#!/usr/bin/env bash
# Fuzzes every parser that reads input from the network or a file (the targets in fuzz/:
# service replies, store error bodies and answers, policy files, journal rows, request bodies and
# names, ID tokens), each for SECONDS from the committed corpus (fuzz/corpus/<target>/).
#
#   scripts/fuzz.sh                 # 20 s per target: the short run of the test command
#   scripts/fuzz.sh 600             # a longer run: 10 min per target
#   scripts/fuzz.sh --merge 600     # and keep the new inputs that add coverage in fuzz/corpus/
#   FUZZ_TARGETS="policy journal" scripts/fuzz.sh 60
#
# Fails when a target panics, overflows, hangs (10 s for one input) or allocates over 512 MiB;
# the input that did it is in fuzz/artifacts/<target>/ and replays with
#   RUSTC_BOOTSTRAP=1 .tools/cargo-fuzz/bin/cargo-fuzz run --fuzz-dir fuzz <target> <file>
# Prints per target: inputs run, executions per second, corpus size, time.
#
# cargo-fuzz needs nightly's -Z flags (sanitizer, coverage): RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. AddressSanitizer's runtime ships with stable, so the default
# sanitizer (address) is used. Release build with debug assertions and overflow checks on; its
# own target dir (fuzz/target/, flags differ from the workspace's).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
TOOLS="$PWD/.tools/cargo-fuzz"
ALL_TARGETS="service_reply store_error store_answer policy journal request_body id_token"

merge=0
if [[ "${1:-}" == "--merge" ]]; then
    merge=1
    shift
fi
seconds="${1:-20}"
targets="${FUZZ_TARGETS:-$ALL_TARGETS}"

if ! "$TOOLS/bin/cargo-fuzz" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$TOOLS"
fi
export PATH="$TOOLS/bin:$PATH"
export RUSTC_BOOTSTRAP=1
FLAGS=(--fuzz-dir fuzz -O --debug-assertions)

started=$(date +%s)
cargo fuzz build "${FLAGS[@]}"
echo "fuzz: built in $(($(date +%s) - started)) s" >&2

logs="fuzz/target/logs"
mkdir -p "$logs"
failed=()
printf '%-14s %12s %10s %8s %8s  %s\n' target runs "exec/s" corpus "time s" result
for target in $targets; do
    # New inputs go to a scratch corpus (kept between runs, never committed); the committed
    # corpus only seeds the run.
    scratch="fuzz/target/corpus/$target"
    mkdir -p "$scratch" "fuzz/corpus/$target"
    log="$logs/$target.log"
    t0=$(date +%s)
    result=ok
    if ! cargo fuzz run "${FLAGS[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=512 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        result="FAILED (see $log and fuzz/artifacts/$target/)"
        failed+=("$target")
    fi
    elapsed=$(($(date +%s) - t0))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    printf '%-14s %12s %10s %8s %8s  %s\n' "$target" "${runs:-?}" "${rate:-?}" "${corpus:-?}" \
        "$elapsed" "$result"
    if [[ "$result" != ok ]]; then
        grep -m1 -A12 -E "panicked|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" >&2 || true
    elif ((merge)); then
        # Only the inputs that add coverage join the committed corpus, cut to 1 KiB.
        cargo fuzz run "${FLAGS[@]}" "$target" "fuzz/corpus/$target" "$scratch" -- \
            -merge=1 -max_len=1024 -timeout=10 >"$logs/$target.merge.log" 2>&1
        echo "  merged: fuzz/corpus/$target has $(ls "fuzz/corpus/$target" | wc -l) inputs"
    fi
done
echo "fuzz: $(($(date +%s) - started)) s in all" >&2
if ((${#failed[@]})); then
    echo "fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi
