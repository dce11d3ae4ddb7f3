#!/usr/bin/env bash
# The main job on the embedded default: starts `valet-service dev` (its own SQLite and S3 store,
# nothing else needed), signs in with `valet login` (refresh token kept in the OS keyring),
# uploads a sample file in parallel parts, and shows it verified by the service.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --bins --locked

if [ -z "${VALET_KEYRING_READY:-}" ]; then
  exec scripts/with-keyring.sh "$0" "$@"   # a desktop session has a keyring; a server shell may not
fi

demo="$PWD/.tools/demo"; mkdir -p "$demo"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/debug/valet-service dev --data "$demo/service" --listen "127.0.0.1:$port" >"$demo/service.out" 2>"$demo/service.log" &
service=$!
trap 'kill $service 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q "ready on" "$demo/service.out" && break; sleep 0.1; done
cat "$demo/service.out"
server=$(sed -n 's/^valet-service ready on //p' "$demo/service.out")

export VALET_DATA_DIR="$demo/client"
target/debug/valet login --server "$server" --user dev --password-stdin < "$demo/service/dev-password"

sample="$demo/sample.bin"
[ -f "$sample" ] || head -c $((96 * 1024 * 1024)) /dev/urandom > "$sample"
echo "uploading $(du -h "$sample" | cut -f1) in parallel parts straight to the store..."
target/debug/valet put "$sample" --to demo
target/debug/valet put "$sample" --to demo --json
target/debug/valet status
echo "local sha256: $(sha256sum "$sample" | cut -d' ' -f1)"
