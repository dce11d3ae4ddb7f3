#!/usr/bin/env bash
# The desktop app's tests: the UI's unit tests (Vitest), then the app in its real webview
# (WebKitGTK under Xvfb, driven by tauri-driver) against the real valet service and SeaweedFS.
# Called by scripts/test.sh; runs alone too (it starts its own store when none is given).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

npm ci --no-audit --no-fund --loglevel=error
npm --prefix ui ci --no-audit --no-fund --loglevel=error
npm --prefix ui test
npm --prefix ui run build

TAURI_DRIVER_VERSION=2.1.0
if ! tauri-driver --help >/dev/null 2>&1; then
  cargo install tauri-driver --version "$TAURI_DRIVER_VERSION" --locked --quiet
fi

# The debug app with its UI embedded (what `tauri build --debug` makes), next to the test.
cargo build -p valet-upload --features tauri/custom-protocol --locked
cargo build -p valet-tests --tests --locked

if [ -z "${VALET_TEST_S3:-}" ]; then
  eval "$(scripts/test-servers.sh start)"
  trap 'scripts/test-servers.sh stop' EXIT
fi
xvfb-run -a -s "-screen 0 1280x900x24" \
  scripts/with-keyring.sh cargo test -p valet-tests --test gui --locked -- --ignored --nocapture
# Single sign-on: a real OpenID Connect provider (node oidc-provider) and the browser step in
# WebKitGTK's MiniBrowser, driven by WebKitWebDriver.
xvfb-run -a -s "-screen 0 1280x900x24" \
  scripts/with-keyring.sh cargo test -p valet-tests --test sso --locked -- --ignored --nocapture
