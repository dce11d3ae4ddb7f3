#!/usr/bin/env bash
# The main job on the embedded default: starts `valet-service dev` (its own SQLite and S3 store,
# nothing else needed), signs in (refresh token kept in the OS keyring), and opens the desktop
# app on a 96 MiB sample file, which it uploads in parallel parts straight to the store until
# the service says verified.
#
# With a display, the app window opens and stays until you quit it (tray → Quit). Without
# one (a server shell), the app runs under Xvfb until the sample is verified, a screenshot is
# saved to .tools/demo/app.png, and the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
export PATH="$HOME/.cargo/bin:$PATH"
npm ci --no-audit --no-fund --loglevel=error
npm --prefix ui ci --no-audit --no-fund --loglevel=error
npm --prefix ui run build
cargo build --locked -p valet-service -p valet-cli
cargo build --locked -p valet-upload --features tauri/custom-protocol   # the app, its UI inside

if [ -z "${VALET_KEYRING_READY:-}" ]; then
  exec scripts/with-keyring.sh "$0" "$@"   # a private keyring, as a desktop login provides one
fi

demo="$PWD/.tools/demo"; mkdir -p "$demo"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/debug/valet-service dev --data "$demo/service" --listen "127.0.0.1:$port" >"$demo/service.out" 2>"$demo/service.log" &
service=$!
trap 'kill $service ${app:-} 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q "ready on" "$demo/service.out" && break; sleep 0.1; done
cat "$demo/service.out"
server=$(sed -n 's/^valet-service ready on //p' "$demo/service.out")

# The app and the CLI share their data directory: this sign-in is the app's too.
export VALET_DATA_DIR="$demo/client" VALET_SERVER="$server"
rm -rf "$VALET_DATA_DIR"
target/debug/valet login --server "$server" --user dev --password-stdin < "$demo/service/dev-password"

sample="$demo/sample.bin"
[ -f "$sample" ] || head -c $((96 * 1024 * 1024)) /dev/urandom > "$sample"
echo "opening Valet Upload on $(du -h "$sample" | cut -f1) sample.bin; local sha256 $(sha256sum "$sample" | cut -d' ' -f1)"

verified() { target/debug/valet status --json 2>/dev/null | grep -q '"state":"verified"'; }
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  target/debug/valet-upload "$sample"
else
  xvfb-run -a -s "-screen 0 1280x900x24" bash -c '
    target/debug/valet-upload "$1" > "$2/app.out" 2> "$2/app.log" & app=$!
    for _ in $(seq 1 600); do
      target/debug/valet status --json 2>/dev/null | grep -q "\"state\":\"verified\"" && break
      sleep 0.5
    done
    sleep 1
    command -v import >/dev/null && import -window root "$2/app.png" || true
    kill $app' _ "$sample" "$demo"
  verified || { echo "the sample was not verified; app log: $demo/app.log" >&2; exit 1; }
  echo "verified; the app's window: $demo/app.png"
fi
target/debug/valet status
