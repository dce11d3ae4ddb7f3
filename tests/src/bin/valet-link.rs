//! `valet-link`: a wide-area link between this network namespace and another, for the
//! benchmarks, where `tc … netem` is not available (a kernel without `CONFIG_NET_SCH_NETEM`).
//!
//! Creates two TUN devices, keeps one here and moves the other into the namespace, gives them
//! point-to-point addresses and forwards every IP packet between them, each direction through a
//! [`Line`]: half the round trip of delay, a rate cap and a bounded queue with tail drop (see
//! `valet_tests::link`). Real TCP on either side sees the delay, the cap and the drops.
//!
//! Each direction has a reader thread (blocking reads from one device into the line) and a
//! writer thread (sleeps until the first packet is due, then writes every due packet to the
//! other device; packets that come densely go in batches, each waiting at most a tick for the
//! rest: a wake-up costs more CPU than the packets).
//! With offload (the default) the kernel hands over TCP segments of up to 64 KiB, cut here into
//! MTU-sized packets and merged again on the way out. Runs until killed; the devices vanish with
//! the process. Needs root.
//!
//! ```text
//! valet-link [--rtt-ms 40] [--rate-mbit 200] [--queue-packets N] [--mtu 1500]
//!            [--netns valet-wan] [--host-dev vwan0] [--wan-dev vwan1]
//!            [--host-addr 10.201.0.1] [--wan-addr 10.201.0.2] [--stats-secs N] [--tick-us 1000]
//!            [--no-offload]
//! ```

use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tun_rs::{DeviceBuilder, GROTable, IDEAL_BATCH_SIZE, SyncDevice, VIRTIO_NET_HDR_LEN};
use valet_tests::link::{Line, Shape};

/// Packets sent together when they come densely: at least so many within a tick make a batch,
/// and a batch holds at most a tick's worth at 200 Mbit/s. Each wake-up of a writer costs more
/// CPU than the packets it sends.
const MIN_BATCH: usize = 4;
const MAX_BATCH: usize = 16;

/// Room in front of each packet for the header the kernel wants with offload.
const HEADROOM: usize = VIRTIO_NET_HDR_LEN;

struct Args {
    rtt_ms: u64,
    rate_mbit: u64,
    queue_packets: Option<usize>,
    mtu: u16,
    netns: String,
    host_dev: String,
    wan_dev: String,
    host_addr: String,
    wan_addr: String,
    stats_secs: Option<u64>,
    tick_us: u64,
    offload: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rtt_ms: 40,
        rate_mbit: 200,
        queue_packets: None,
        mtu: 1500,
        netns: "valet-wan".into(),
        host_dev: "vwan0".into(),
        wan_dev: "vwan1".into(),
        host_addr: "10.201.0.1".into(),
        wan_addr: "10.201.0.2".into(),
        stats_secs: None,
        tick_us: 1000,
        offload: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{flag} needs a positive number, not {v:?}"))
        };
        match flag.as_str() {
            "--rtt-ms" => args.rtt_ms = number(value()?)?,
            "--rate-mbit" => args.rate_mbit = number(value()?)?,
            "--queue-packets" => args.queue_packets = Some(number(value()?)? as usize),
            "--mtu" => {
                args.mtu = number(value()?)?
                    .try_into()
                    .ok()
                    .filter(|&mtu| mtu >= 576)
                    .ok_or("--mtu must be from 576 to 65535")?
            }
            "--netns" => args.netns = value()?,
            "--host-dev" => args.host_dev = value()?,
            "--wan-dev" => args.wan_dev = value()?,
            "--host-addr" => args.host_addr = value()?,
            "--wan-addr" => args.wan_addr = value()?,
            "--stats-secs" => args.stats_secs = Some(number(value()?)?),
            "--tick-us" => args.tick_us = number(value()?)?,
            "--no-offload" => args.offload = false,
            "-h" | "--help" => return Err(usage()),
            _ => return Err(format!("unexpected argument {flag}\n{}", usage())),
        }
    }
    Ok(args)
}

fn usage() -> String {
    "usage: valet-link [--rtt-ms 40] [--rate-mbit 200] [--queue-packets N] [--mtu 1500] \
     [--netns valet-wan] [--host-dev vwan0] [--wan-dev vwan1] [--host-addr 10.201.0.1] \
     [--wan-addr 10.201.0.2] [--stats-secs N] [--tick-us 1000] [--no-offload]"
        .into()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("valet-link: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let shape = Shape::new(
        args.rtt_ms,
        args.rate_mbit,
        args.mtu.into(),
        args.queue_packets,
    );
    let host = open_tun(&args.host_dev, args.mtu, args.offload)?;
    let wan = open_tun(&args.wan_dev, args.mtu, args.offload)?;
    configure(&args)?;

    let clock = Instant::now();
    let tick_ns = args.tick_us * 1000;
    let mtu = args.mtu.into();
    let upstream = Direction::start("up", &host, &wan, shape, mtu, tick_ns, clock);
    let downstream = Direction::start("down", &wan, &host, shape, mtu, tick_ns, clock);
    println!(
        "valet-link: {} {} <-> {} {} in {}: rtt {} ms, {} Mbit/s, queue {} packets, mtu {}",
        args.host_dev,
        args.host_addr,
        args.wan_dev,
        args.wan_addr,
        args.netns,
        args.rtt_ms,
        args.rate_mbit,
        shape.limit_packets,
        args.mtu
    );
    loop {
        std::thread::sleep(Duration::from_secs(args.stats_secs.unwrap_or(3600)));
        if args.stats_secs.is_some() {
            println!("{}; {}", upstream.stats(), downstream.stats());
        }
    }
}

/// A TUN device (IP packets, no packet-information header) of `name`.
fn open_tun(name: &str, mtu: u16, offload: bool) -> Result<Arc<SyncDevice>, String> {
    DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .packet_information(false)
        .offload(offload)
        .build_sync()
        .map(Arc::new)
        .map_err(|err| format!("cannot create TUN device {name}: {err}"))
}

/// Moves the far device into the namespace (its file descriptor stays ours) and gives both
/// ends their point-to-point addresses.
fn configure(args: &Args) -> Result<(), String> {
    let Args {
        host_dev: host,
        wan_dev: wan,
        netns: ns,
        host_addr,
        wan_addr,
        mtu,
        ..
    } = args;
    let steps = [
        format!("addr add {host_addr} peer {wan_addr} dev {host}"),
        format!("link set {host} mtu {mtu} up"),
        format!("link set {wan} netns {ns}"),
        format!("-n {ns} addr add {wan_addr} peer {host_addr} dev {wan}"),
        format!("-n {ns} link set {wan} mtu {mtu} up"),
    ];
    for step in steps {
        let status = Command::new("ip")
            .args(step.split_whitespace())
            .status()
            .map_err(|err| format!("cannot run ip: {err}"))?;
        if !status.success() {
            return Err(format!("`ip {step}` failed ({status})"));
        }
    }
    Ok(())
}

/// One direction of the link at work: its line and what crossed it.
struct Direction {
    name: &'static str,
    line: Mutex<Line<Vec<u8>>>,
    /// Signalled when a packet enters an empty line.
    arrived: Condvar,
    forwarded: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    most_waiting: AtomicU64,
    /// The longest a packet waits for the rest of its batch.
    tick_ns: u64,
}

impl Direction {
    /// Starts forwarding from `from` to `to` through a line of `shape`.
    fn start(
        name: &'static str,
        from: &Arc<SyncDevice>,
        to: &Arc<SyncDevice>,
        shape: Shape,
        mtu: usize,
        tick_ns: u64,
        clock: Instant,
    ) -> Arc<Self> {
        let direction = Arc::new(Self {
            name,
            line: Mutex::new(Line::new(shape)),
            arrived: Condvar::new(),
            forwarded: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            most_waiting: AtomicU64::new(0),
            tick_ns,
        });
        let (reader, from) = (direction.clone(), from.clone());
        std::thread::spawn(move || reader.read_loop(&from, mtu, clock));
        let (writer, to) = (direction.clone(), to.clone());
        std::thread::spawn(move || writer.write_loop(&to, clock));
        direction
    }

    fn read_loop(&self, from: &SyncDevice, mtu: usize, clock: Instant) {
        // With offload the kernel hands over TCP segments of up to 64 KiB in one read; they
        // are cut here into the MTU-sized packets a wire would carry, and each is scheduled.
        let mut read_buf = vec![0u8; VIRTIO_NET_HDR_LEN + 65535];
        let mut packets = vec![vec![0u8; HEADROOM + mtu]; IDEAL_BATCH_SIZE];
        let mut sizes = vec![0; IDEAL_BATCH_SIZE];
        let mut arrived = Vec::with_capacity(IDEAL_BATCH_SIZE);
        loop {
            let count = match from.recv_multiple(&mut read_buf, &mut packets, &mut sizes, HEADROOM)
            {
                Ok(count) => count,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                // A packet the offload code cannot split is lost, as a corrupt frame would be.
                Err(err) if err.raw_os_error().is_none() => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // The device is gone (its namespace deleted, say): nothing left to forward.
                Err(err) => {
                    eprintln!("valet-link: reading the {} side failed: {err}", self.name);
                    std::process::exit(1);
                }
            };
            let now = nanos_since(clock);
            // Each packet keeps room in front for the header of the write; copied before
            // taking the lock, which the writer needs too.
            arrived.extend(
                (packets.iter().zip(&sizes).take(count))
                    .map(|(packet, &len)| (len, packet[..HEADROOM + len].to_vec())),
            );
            let mut line = self.line.lock().unwrap();
            let was_empty = line.is_empty();
            for (len, framed) in arrived.drain(..) {
                if line.push(now, len, framed).is_none() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.most_waiting
                .fetch_max(line.len() as u64, Ordering::Relaxed);
            drop(line);
            if was_empty {
                self.arrived.notify_one();
            }
        }
    }

    fn write_loop(&self, to: &SyncDevice, clock: Instant) {
        let mut due: Vec<Vec<u8>> = Vec::new();
        let mut coalesce = GROTable::default();
        loop {
            {
                let mut line = self.line.lock().unwrap();
                while line.is_empty() {
                    line = self.arrived.wait(line).unwrap();
                }
                let now = nanos_since(clock);
                while let Some(packet) = line.pop_due(now) {
                    due.push(packet);
                }
                if due.is_empty() {
                    // Nothing is due, and only this thread takes packets out, so the first one
                    // is the next to go: at its time, or with the batch it waits for.
                    let wake = line
                        .next_wake(MIN_BATCH, MAX_BATCH, self.tick_ns)
                        .unwrap_or(now);
                    drop(line);
                    std::thread::sleep(Duration::from_nanos(wake.saturating_sub(now)));
                    continue;
                }
            }
            let (count, bytes) = (
                due.len() as u64,
                due.iter().map(|p| p.len() - HEADROOM).sum::<usize>(),
            );
            // With offload, consecutive segments of one TCP flow are written as one, as a
            // network card's receive offload would hand them to the stack.
            // A device that is down refuses packets, as a cable unplugged would lose them.
            match to.send_multiple(&mut coalesce, &mut due, HEADROOM) {
                Ok(_) => {
                    self.forwarded.fetch_add(count, Ordering::Relaxed);
                    self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                }
                Err(_) => {
                    self.write_errors.fetch_add(count, Ordering::Relaxed);
                }
            }
            due.clear();
        }
    }

    fn stats(&self) -> String {
        format!(
            "{}: {} packets, {} bytes, {} dropped, {} write errors, at most {} waiting",
            self.name,
            self.forwarded.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.write_errors.load(Ordering::Relaxed),
            self.most_waiting.load(Ordering::Relaxed),
        )
    }
}

fn nanos_since(clock: Instant) -> u64 {
    clock.elapsed().as_nanos() as u64
}
