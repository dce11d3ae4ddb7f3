#!/usr/bin/env bash
# Installs what building and testing need on Debian 12: compilers, D-Bus and a keyring daemon
# (the OS keyring the client keeps its sign-in in), Python's venv for the test servers, and Rust
# when it is missing. Safe to run again.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
packages=(build-essential pkg-config curl ca-certificates libdbus-1-dev dbus gnome-keyring
          python3 python3-venv time)
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
