#!/usr/bin/env bash
# A simulated wide-area link for the benchmarks: a network namespace reached through a link with
# a round-trip delay, a rate cap and a bounded queue (default 40 ms, 200 Mbit/s, about twice the
# bandwidth-delay product of queue).
#
# Why not netem: this kernel is built without CONFIG_NET_SCH_NETEM, so `tc qdisc … netem delay
# rate` does not exist. Instead `valet-link` (tests/src/bin/valet-link.rs) creates two TUN
# devices, `vwan0` here (10.201.0.1) and `vwan1` in the namespace (10.201.0.2), and forwards every
# IP packet between them, each direction on its own: half the RTT of delay, serialization at the
# rate cap (a packet leaves at max(arrival + delay, previous departure) + length / rate, as
# netem's rate does) and tail drop when the queue is full. Real TCP on both sides sees it:
# handshakes, slow start, congestion windows, ACK clocking.
#
# The devices use segmentation offload to keep the CPU cost down: the kernel hands over TCP
# segments of up to 64 KiB, valet-link cuts them into MTU-sized packets (default 1500) and
# schedules each one, and merges consecutive packets of a flow again when it writes them out,
# as a network card's receive offload would.
#
# Limits: no random loss, no jitter, no reordering (only queue overflow drops packets); the rate
# counts IP bytes (no link-layer overhead). Dense traffic leaves in small batches (4 to 16
# packets, each held at most a tick, default 1 ms, never sent early) because every wake-up costs
# CPU; sparse packets (handshakes, requests) leave on time. Its CPU time includes the
# receive-side TCP work the kernel does when packets are written in; `check` prints it.
#
#   bench/wan.sh up [--rtt-ms 40] [--rate-mbit 200] [--queue-packets N] [--mtu 1500] [--tick-us 1000]
#       builds valet-link if needed, creates the namespace, starts the link (refuses when one is
#       already up), and prints
#       `WAN_NETNS=valet-wan WAN_HOST=10.201.0.2 WAN_CLIENT=10.201.0.1` to eval.
#       Servers run in the namespace with `ip netns exec valet-wan …`, clients here.
#   bench/wan.sh down      stops the link and removes the namespace (safe when nothing is up)
#   bench/wan.sh check [--no-link]
#       measures through the link: TCP connect time and 1-byte echo round trip (median of 20),
#       then bulk TCP throughput for ~10 s each: 1 and 8 connections here -> namespace, 1
#       connection back; and the link's CPU use during each. --no-link: the same on loopback.
#
# Needs root (namespaces, TUN). VALET_LINK_BIN runs a valet-link built elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

# A second link can run beside the first with its own names and addresses, e.g.
# VALET_WAN_NETNS=valet-wan2 VALET_WAN_DEV=vwanb VALET_WAN_NET=10.202.0 bench/wan.sh up
NETNS=${VALET_WAN_NETNS:-valet-wan}
DEV=${VALET_WAN_DEV:-vwan}
NET=${VALET_WAN_NET:-10.201.0}
HOST_ADDR=$NET.1
WAN_ADDR=$NET.2
RUN_DIR=/run/$NETNS
PID_FILE=$RUN_DIR/link.pid
LOG=$RUN_DIR/link.log

link_pid() {
  local pid
  [[ -f $PID_FILE ]] || return 1
  pid=$(<"$PID_FILE")
  [[ -n $pid && -d /proc/$pid ]] && grep -q valet-link "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

down() {
  local pid
  if pid=$(link_pid); then
    kill "$pid"
    for _ in $(seq 1 50); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  if ip netns list | awk '{print $1}' | grep -qx "$NETNS"; then ip netns del "$NETNS"; fi
}

up() {
  local link_args=()
  while (($#)); do
    case $1 in
      --rtt-ms | --rate-mbit | --queue-packets | --mtu | --tick-us)
        (($# >= 2)) || { echo "$1 needs a value" >&2; exit 2; }
        link_args+=("$1" "$2")
        shift 2
        ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  local bin=${VALET_LINK_BIN:-} pid
  if [[ -z $bin ]]; then
    cargo build --release -p valet-tests --bin valet-link --locked >&2
    bin=${CARGO_TARGET_DIR:-target}/release/valet-link
  fi
  if pid=$(link_pid); then
    echo "a link is already up in $NETNS (pid $pid): bench/wan.sh down first" >&2
    exit 1
  fi
  down
  mkdir -p "$RUN_DIR"
  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  setsid "$bin" "${link_args[@]}" --netns "$NETNS" --host-dev "${DEV}0" --wan-dev "${DEV}1" \
    --host-addr "$HOST_ADDR" --wan-addr "$WAN_ADDR" --stats-secs 10 >"$LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  for _ in $(seq 1 100); do
    if [[ ! -d /proc/$pid ]]; then
      cat "$LOG" >&2
      down
      echo "valet-link did not start" >&2
      exit 1
    fi
    grep -q "^valet-link:" "$LOG" && ip -n "$NETNS" -o addr show up | grep -q "$WAN_ADDR" && break
    sleep 0.1
  done
  ip -n "$NETNS" -o addr show up | grep -q "$WAN_ADDR" || { cat "$LOG" >&2; down; exit 1; }
  head -n1 "$LOG" >&2
  echo "WAN_NETNS=$NETNS WAN_HOST=$WAN_ADDR WAN_CLIENT=$HOST_ADDR"
}

check() {
  local in_ns=(ip netns exec "$NETNS") host=$WAN_ADDR pid=""
  case ${1:-} in
    --no-link) in_ns=() host=127.0.0.1 ;;
    "") pid=$(link_pid) || { echo "the link is not up: bench/wan.sh up first" >&2; exit 1; } ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  # work and server are global: the EXIT trap runs after this function has returned.
  work=$(mktemp -d)
  local py
  py=$(python3 -c 'import sys; print(sys.executable)')
  trap 'kill ${server:-} 2>/dev/null || true; rm -rf "$work"' EXIT
  cat >"$work/check.py" <<'PY'
import os, socket, statistics, sys, threading, time

CHUNK = 1 << 20

def serve():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()

def handle(conn):
    command = b""
    while len(command) < 8 and (part := conn.recv(8 - len(command))):
        command += part
    command = command.strip()
    if command == b"e":  # echo one byte at a time
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"r")
        while (byte := conn.recv(1)):
            conn.sendall(byte)
    elif command == b"s":  # sink: count bytes until EOF, answer count and seconds
        start, total, buf = time.monotonic(), 0, bytearray(CHUNK)
        while (n := conn.recv_into(buf)):
            total += n
        conn.sendall(f"{total} {time.monotonic() - start}".encode())
    elif command.startswith(b"g"):  # source: send for the given seconds
        end, data = time.monotonic() + float(command[1:]), os.urandom(CHUNK)
        while time.monotonic() < end:
            conn.sendall(data)
    conn.close()

def link_cpu_seconds():
    pid = os.environ.get("LINK_PID")
    if not pid:
        return None
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def with_link_cpu(label, measure):
    cpu0, t0 = link_cpu_seconds(), time.monotonic()
    mbit = measure()
    cpu1, t1 = link_cpu_seconds(), time.monotonic()
    line = f"{label:<28} {mbit:8.1f} Mbit/s"
    if cpu0 is not None:
        used = cpu1 - cpu0
        line += f"   link CPU {used:.2f} s in {t1 - t0:.1f} s ({100 * used / (t1 - t0):.0f}% of a core)"
    print(line, flush=True)

def send_for(host, port, seconds, results):
    data = os.urandom(CHUNK)
    conn = socket.create_connection((host, port))
    conn.sendall(b"s".ljust(8))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
    total, secs = conn.recv(100).split()
    results.append((int(total), float(secs)))

def upload(host, port, connections, seconds=10):
    results = []
    threads = [threading.Thread(target=send_for, args=(host, port, seconds, results))
               for _ in range(connections)]
    for t in threads: t.start()
    for t in threads: t.join()
    # Bytes the server received over the longest connection's time, drain included.
    return sum(b for b, _ in results) * 8 / max(s for _, s in results) / 1e6

def download(host, port, seconds=10):
    conn = socket.create_connection((host, port))
    start, total, buf = time.monotonic(), 0, bytearray(CHUNK)
    conn.sendall(f"g{seconds}".encode().ljust(8))
    while (n := conn.recv_into(buf)):
        total += n
    return total * 8 / (time.monotonic() - start) / 1e6

def measure(host, port):
    connects = []
    for _ in range(20):
        t = time.perf_counter()
        socket.create_connection((host, port)).close()
        connects.append((time.perf_counter() - t) * 1000)
    conn = socket.create_connection((host, port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(b"e".ljust(8))
    conn.recv(1)
    echoes = []
    for _ in range(20):
        t = time.perf_counter()
        conn.sendall(b"x")
        conn.recv(1)
        echoes.append((time.perf_counter() - t) * 1000)
    conn.close()
    print(f"{'TCP connect (median of 20)':<28} {statistics.median(connects):8.2f} ms"
          f"   (min {min(connects):.2f}, max {max(connects):.2f})")
    print(f"{'echo RTT (median of 20)':<28} {statistics.median(echoes):8.2f} ms"
          f"   (min {min(echoes):.2f}, max {max(echoes):.2f})", flush=True)
    with_link_cpu("upload, 1 connection", lambda: upload(host, port, 1))
    with_link_cpu("upload, 8 connections", lambda: upload(host, port, 8))
    with_link_cpu("download, 1 connection", lambda: download(host, port))

if sys.argv[1] == "serve":
    serve()
else:
    measure(sys.argv[2], int(sys.argv[3]))
PY
  "${in_ns[@]}" "$py" "$work/check.py" serve >"$work/port" &
  server=$!
  for _ in $(seq 1 50); do [[ -s $work/port ]] && break; sleep 0.1; done
  echo "through: $([[ -n $pid ]] && head -n1 "$LOG" || echo "loopback, no link")"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  LINK_PID=$pid "$py" "$work/check.py" measure "$host" "$(<"$work/port")"
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  [[ -z $pid ]] || tail -n1 "$LOG"
}

[[ $(id -u) == 0 ]] || { echo "bench/wan.sh needs root (network namespaces, TUN devices)" >&2; exit 1; }
case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  check) shift; check "$@" ;;
  *) echo "usage: bench/wan.sh up [--rtt-ms N] [--rate-mbit N] [--queue-packets N] [--mtu N] [--tick-us N] | down | check [--no-link]" >&2; exit 2 ;;
esac
