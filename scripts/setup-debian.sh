#!/usr/bin/env bash
# Installs what building and testing need on Debian 12: compilers, D-Bus and a keyring daemon
# (the OS keyring the client keeps its sign-in in), Python's venv for the test servers, the
# desktop app's WebKitGTK, tray and X libraries with Xvfb and WebKitWebDriver for its tests,
# Node.js 20 for its UI, libfaketime for the clock-skew tests, openssl and iproute2 for the
# benchmarks (test certificates, the simulated wide-area link), and Rust when it is missing.
# Safe to run again.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
packages=(build-essential pkg-config curl ca-certificates libdbus-1-dev dbus gnome-keyring
          python3 python3-venv time procps psmisc file
          libwebkit2gtk-4.1-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev libgtk-3-dev
          libayatana-appindicator3-dev librsvg2-dev libxdo-dev
          xvfb xauth webkit2gtk-driver dbus-x11 at-spi2-core imagemagick rpm
          faketime openssl iproute2)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

# The UI's tools (Vite 8) need Node.js 20.19 or newer; Debian 12 ships 18. The npm registry
# carries Node itself (the `node` package), so it is installed from there when too old.
node_ok() { command -v node >/dev/null 2>&1 && node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; }
if ! node_ok; then
  command -v npm >/dev/null 2>&1 || { $SUDO apt-get update -qq; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
  $SUDO npm install -g --no-audit --no-fund --loglevel=error node@20
  hash -r
  node_ok || { echo "Node.js 20.19+ is needed for the UI; found $(node --version 2>&1)" >&2; exit 1; }
fi
