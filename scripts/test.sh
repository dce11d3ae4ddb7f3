#!/usr/bin/env bash
# Every test: installs what they need (Debian packages, Rust if missing, the stores), builds,
# starts the stores, and runs unit, end-to-end and reliability tests inside a keyring session,
# then the fuzz targets for a short time, the desktop app's UI tests and its real-webview test
# (scripts/test-gui.sh), and last the silent install of its .deb on a managed computer
# (scripts/test-install.sh; root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
scripts/setup-debian.sh
export PATH="$HOME/.cargo/bin:$PATH"
# A one-shot build gains nothing from incremental state, which would double the target dir.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

cargo build --workspace --bins --tests --locked
eval "$(scripts/test-servers.sh start)"
trap 'scripts/test-servers.sh stop' EXIT
echo "test store: $VALET_TEST_S3" >&2

scripts/with-keyring.sh cargo test --workspace --locked -- --test-threads 2
# Every parser of network and file input under libFuzzer, 20 s each from the committed corpus
# (docs/RELIABILITY.md; scripts/fuzz.sh 600 for a longer run).
scripts/fuzz.sh 20
scripts/test-gui.sh
scripts/test-install.sh
echo "all tests passed in $(( $(date +%s) - started )) s" >&2
