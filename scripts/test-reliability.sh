#!/usr/bin/env bash
# The reliability and security suite on its own (docs/RELIABILITY.md): the fault, crash, clock,
# disk, security and load tests of `tests/tests/reliability`, then every fuzz target, then the
# service under load. scripts/test.sh runs the same tests (the fuzz targets for a short time);
# this script is for rerunning them alone, or longer:
#
#   scripts/test-reliability.sh            # the tests, 20 s per fuzz target, load 64 × 50
#   scripts/test-reliability.sh --long     # the tests, 600 s per fuzz target, load 256 × 100
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

fuzz_seconds=20 load_clients=64 load_rounds=50
if [ "${1:-}" = "--long" ]; then
  fuzz_seconds=600 load_clients=256 load_rounds=100
fi

scripts/setup-debian.sh
cargo build --workspace --bins --tests --locked
if [ -z "${VALET_TEST_S3:-}" ]; then
  eval "$(scripts/test-servers.sh start)"
  trap 'scripts/test-servers.sh stop' EXIT
fi
scripts/with-keyring.sh cargo test -p valet-tests --test reliability --locked -- --test-threads 2 --nocapture
scripts/fuzz.sh "$fuzz_seconds"
scripts/load.sh "$load_clients" "$load_rounds"
