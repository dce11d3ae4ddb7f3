#!/usr/bin/env bash
# Runs a command inside a private D-Bus session with an unlocked GNOME Keyring, as a desktop
# login provides one: the client keeps its refresh token there (Secret Service).
#   scripts/with-keyring.sh COMMAND...
set -euo pipefail
if [ -z "${VALET_KEYRING_READY:-}" ]; then
  export XDG_DATA_HOME; XDG_DATA_HOME="$(mktemp -d)"   # a fresh, throwaway keyring
  exec dbus-run-session -- env VALET_KEYRING_READY=1 "$0" "$@"
fi
echo -n "valet-session" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
exec "$@"
