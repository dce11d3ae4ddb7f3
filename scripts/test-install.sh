#!/usr/bin/env bash
# The silent install on a managed computer: builds the .deb with the Tauri bundler (debug
# profile, so it reuses the tests' build), installs it with `apt-get install -y` (no prompts),
# and runs the installed app under Xvfb with a policy in /etc/valet-upload against the real
# valet service and SeaweedFS (tests/tests/install.rs). Removes the package and the policy
# folder again at the end. Needs root or password-less sudo (it installs a package and writes
# under /etc), and refuses to touch a machine that already has a policy or the package.
# Called by scripts/test.sh; runs alone too (it starts its own store when none is given).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
if [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
  echo "test-install: needs root or password-less sudo (installs a package, writes /etc/valet-upload)" >&2
  exit 1
fi
if [ -e /etc/valet-upload ] || dpkg -s valet-upload >/dev/null 2>&1; then
  echo "test-install: this machine already has /etc/valet-upload or the valet-upload package;" \
       "the test would replace them, so it stops here. Remove them or run it elsewhere." >&2
  exit 1
fi

[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
[ -d ui/node_modules ] || npm --prefix ui ci --no-audit --no-fund --loglevel=error
rm -rf target/debug/bundle/deb target/debug/bundle/rpm
npm run tauri -- build --debug --bundles deb,rpm
debs=(target/debug/bundle/deb/*.deb)
deb="$PWD/${debs[0]}"
echo "package: $(basename "$deb") ($(du -h "$deb" | cut -f1)), $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >&2
# The RPM is built and its contents checked; installing it needs an RPM-based system.
rpms=(target/debug/bundle/rpm/*.rpm)
rpm_files=$(rpm -qlp "${rpms[0]}" 2>/dev/null)
for f in /usr/bin/valet-upload /usr/share/valet-upload/policy.schema.json \
         /usr/share/valet-upload/policy.example.json "/usr/share/applications/Valet Upload.desktop"; do
  grep -qxF "$f" <<<"$rpm_files" || { echo "test-install: the RPM lacks $f" >&2; exit 1; }
done
echo "package: $(basename "${rpms[0]}") ($(du -h "${rpms[0]}" | cut -f1)), contents checked" >&2
cargo build -p valet-tests --test install --locked

cleanup() {
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get purge -y -qq valet-upload >/dev/null || true
  $SUDO rm -rf /etc/valet-upload
  [ -z "${servers_started:-}" ] || scripts/test-servers.sh stop
}
trap cleanup EXIT
started=$(date +%s%N)
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$deb" >/dev/null
echo "installed in $(( ($(date +%s%N) - started) / 1000000 )) ms" >&2
# The policy folder, writable by the test as an administrator's tool would be.
$SUDO install -d -o "$(id -u)" -g "$(id -g)" /etc/valet-upload

if [ -z "${VALET_TEST_S3:-}" ]; then
  eval "$(scripts/test-servers.sh start)"
  servers_started=1
fi
VALET_GUI_APP=/usr/bin/valet-upload xvfb-run -a -s "-screen 0 1280x900x24" \
  scripts/with-keyring.sh cargo test -p valet-tests --test install --locked -- --ignored --nocapture
