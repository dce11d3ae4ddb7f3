//! A fault-injecting TCP proxy between a test's client and a real server: noxious, the core of
//! a Rust port of Toxiproxy, embedded in the test process on its own runtime thread.
//!
//! ```text
//!   valet ──▶ FaultProxy (127.0.0.1:PORT, toxics) ──▶ valet-service / the store
//! ```
//!
//! Faults are Toxiproxy's toxics ([`Fault`]): latency, bandwidth caps, slicing with delays (a
//! slow drip), connections cut after so many bytes (`limit_data`), everything dropped
//! (`timeout` 0: a blackhole). Each has a direction (upstream: client to server) and a
//! toxicity, the chance that a new connection gets it.
//!
//! Two ways to change faults while a test runs, because noxious re-links every open
//! connection when its toxics change (its `ToxicEvent` channel) and drops the bytes that were
//! inside the old toxics at that moment, which no real network does inside a TCP stream:
//! - [`FaultProxy::set`] changes open connections too: for faults that lose the stream anyway
//!   (a blackhole), or on links whose receiver checks every byte (the store checks each part's
//!   signed SHA-256);
//! - [`FaultProxy::set_for_new_connections`] leaves open connections as they are: what they
//!   had (a blackhole: dead for good, as after a NAT drops its state) they keep.
//!
//! A store behind the proxy must be named to the service by the proxy's address: S3 keys sign
//! the `Host` header, so the service has to sign for the host the client connects to
//! (`ServiceOptions::store_endpoint`). The service's own calls to the store then pass through
//! the proxy as well.

use std::sync::Mutex;

use bmrng::RequestSender;
use noxious::proxy::{ProxyConfig, ProxyRunner, Runner, Toxics};
use noxious::signal::{Close, Stop, Stopper};
use noxious::socket::TcpListener;
use noxious::state::SharedProxyInfo;
use noxious::toxic::{StreamDirection, Toxic, ToxicEvent, ToxicEventKind, ToxicEventResult};

pub use noxious::toxic::ToxicKind;

/// Which way a fault acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server (request bodies: part uploads).
    Upstream,
    /// Server to client (answers).
    Downstream,
}

/// One toxic: what it does, which way, and on which share of new connections.
#[derive(Debug, Clone)]
pub struct Fault {
    kind: ToxicKind,
    direction: Direction,
    toxicity: f32,
}

impl Fault {
    /// `kind` acting `direction`, on every connection.
    pub fn new(kind: ToxicKind, direction: Direction) -> Self {
        Self {
            kind,
            direction,
            toxicity: 1.0,
        }
    }

    /// The connection is cut once `bytes` have gone upstream through it (client to server).
    pub fn cut_after(bytes: u64) -> Self {
        Self::new(ToxicKind::LimitData { bytes }, Direction::Upstream)
    }

    /// Answers arrive `ms` late (noxious delays each chunk in turn, so latency upstream would
    /// throttle uploads instead: round trips are made downstream).
    pub fn latency(ms: u64, jitter_ms: u64) -> Self {
        Self::new(
            ToxicKind::Latency {
                latency: ms,
                jitter: jitter_ms,
            },
            Direction::Downstream,
        )
    }

    /// At most `kb_per_sec` KB/s (1000 bytes) each way `direction`, per connection.
    ///
    /// Below 400 KB/s this is a slicer (`kb_per_sec × 10` bytes every 10 ms): noxious 1.0.4's
    /// `bandwidth` toxic sends 100 bytes per 100 ms and then panics (a `Duration` underflow)
    /// on any read larger than `rate × 100` bytes, which its 32 KiB reads are below 328 KB/s.
    pub fn bandwidth(kb_per_sec: u64, direction: Direction) -> Self {
        if kb_per_sec >= 400 {
            return Self::new(ToxicKind::Bandwidth { rate: kb_per_sec }, direction);
        }
        Self::new(
            ToxicKind::Slicer {
                average_size: kb_per_sec.max(1) * 10,
                size_variation: 0,
                delay: 10_000,
            },
            direction,
        )
    }

    /// Bytes go through in slices of about `bytes`, each `delay_ms` after the last.
    pub fn drip(bytes: u64, delay_ms: u64, direction: Direction) -> Self {
        Self::new(
            ToxicKind::Slicer {
                average_size: bytes,
                size_variation: bytes / 2,
                delay: delay_ms * 1000,
            },
            direction,
        )
    }

    /// Nothing gets through either way, and the connection is not closed.
    pub fn blackhole() -> Vec<Self> {
        [Direction::Upstream, Direction::Downstream]
            .into_iter()
            .map(|direction| Self::new(ToxicKind::Timeout { timeout: 0 }, direction))
            .collect()
    }

    /// Acts on each new connection with probability `toxicity` (0 to 1).
    pub fn toxicity(mut self, toxicity: f32) -> Self {
        self.toxicity = toxicity;
        self
    }

    fn toxic(&self, name: String) -> Toxic {
        Toxic {
            kind: self.kind,
            name,
            toxicity: self.toxicity,
            direction: match self.direction {
                Direction::Upstream => StreamDirection::Upstream,
                Direction::Downstream => StreamDirection::Downstream,
            },
        }
    }
}

/// A running proxy; stopped (every connection through it closed) when dropped.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`, where it listens.
    pub addr: String,
    config: ProxyConfig,
    info: SharedProxyInfo,
    events: ToxicEvents,
    stopper: Option<Stopper>,
    next_toxic: Mutex<u32>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.config.upstream)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream` (`http://host:port` or
    /// `host:port`), with `faults` from the first connection on.
    pub fn start(upstream: &str, faults: &[Fault]) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("a runtime for the fault proxy");
        let config = ProxyConfig {
            name: crate::random_name("proxy"),
            listen: format!("127.0.0.1:{}", crate::free_port()),
            upstream,
            enabled: true,
            rand_seed: None,
        };
        let mut next_toxic = 0;
        let toxics = toxics_of(faults, &mut next_toxic);
        let (info, events, stopper) = runtime
            .block_on(launch(config.clone(), toxics))
            .expect("the fault proxy binds its port");
        Self {
            addr: config.listen.clone(),
            config,
            info,
            events,
            stopper: Some(stopper),
            next_toxic: Mutex::new(next_toxic),
            runtime: Some(runtime),
        }
    }

    /// Stops the proxy, which closes every connection through it, and starts it again on the
    /// same port with `faults`. For the end of an outage: noxious cannot let the connections
    /// it black-holed go on without the bytes it dropped, so they end (as when either side
    /// gives up on them), and new connections find the link back.
    pub fn restart(&mut self, faults: &[Fault]) {
        if let Some(stopper) = self.stopper.take() {
            stopper.stop();
        }
        let toxics = toxics_of(faults, &mut self.next_toxic.lock().unwrap());
        let runtime = self.runtime.as_ref().expect("running");
        // The old listener closes as its task sees the stop.
        let (info, events, stopper) = crate::wait_for(
            "the fault proxy's port free again",
            std::time::Duration::from_secs(10),
            || {
                runtime
                    .block_on(launch(self.config.clone(), toxics.clone()))
                    .ok()
            },
        );
        self.info = info;
        self.events = events;
        self.stopper = Some(stopper);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the faults of every connection, open ones included (see the module's note on
    /// the bytes noxious drops from open connections when it does this). Not for `cut_after`:
    /// noxious keeps its byte count per connection and has none for a new one on an open link.
    pub fn set(&self, faults: &[Fault]) {
        // noxious re-links open connections on every change it is sent, and its "remove all"
        // clears the upstream toxics only: the new set goes in with a no-op marker, and
        // removing the marker is the one change that re-links every connection.
        let marker = {
            let mut next = self.next_toxic.lock().unwrap();
            let mut toxics = toxics_of(faults, &mut next);
            *next += 1;
            let marker =
                Fault::new(ToxicKind::Noop, Direction::Upstream).toxic(format!("fault-{next}"));
            toxics.upstream.push(marker.clone());
            self.info.state.lock().toxics = toxics;
            marker.name
        };
        let event = ToxicEvent::new(
            self.config.name.clone(),
            ToxicEventKind::RemoveToxic(marker),
        );
        self.runtime
            .as_ref()
            .expect("running")
            .block_on(self.events.send_receive(event))
            .map_err(|_| "the fault proxy stopped")
            .unwrap()
            .expect("the fault proxy takes the change");
    }

    /// Replaces the faults of connections opened from now on; open connections keep theirs.
    pub fn set_for_new_connections(&self, faults: &[Fault]) {
        let mut next = self.next_toxic.lock().unwrap();
        self.info.state.lock().toxics = toxics_of(faults, &mut next);
    }

    /// No faults on any connection (open ones included).
    pub fn clear(&self) {
        self.set(&[]);
    }

    /// Connections open through the proxy right now.
    pub fn open_connections(&self) -> usize {
        self.info.state.lock().clients.len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stopper) = self.stopper.take() {
            stopper.stop();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Binds `config.listen` and runs the proxy there: its state, the channel its toxics are
/// changed through, and what stops it.
async fn launch(
    config: ProxyConfig,
    toxics: Toxics,
) -> std::io::Result<(SharedProxyInfo, ToxicEvents, Stopper)> {
    let (events, receiver) = bmrng::channel(1);
    let (stop, stopper) = Stop::new();
    let (_close, closer) = Close::new();
    let (listener, info) = ProxyRunner::initialize_proxy::<TcpListener>(config, toxics).await?;
    tokio::spawn(ProxyRunner::run_proxy(
        listener,
        info.clone(),
        receiver,
        stop,
        closer,
    ));
    Ok((info, events, stopper))
}

type ToxicEvents = RequestSender<ToxicEvent, ToxicEventResult>;

/// Faults as noxious toxics, each with a name of its own.
fn toxics_of(faults: &[Fault], next: &mut u32) -> Toxics {
    let mut toxics = Toxics::empty();
    for fault in faults {
        *next += 1;
        let toxic = fault.toxic(format!("fault-{next}"));
        match fault.direction {
            Direction::Upstream => toxics.upstream.push(toxic),
            Direction::Downstream => toxics.downstream.push(toxic),
        }
    }
    toxics
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use super::*;

    /// An echo server on loopback: every byte read is written back.
    fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        addr
    }

    /// Sends `bytes` through a new connection and reads as much back, or fails within `wait`.
    fn echo(addr: &str, bytes: &[u8], wait: Duration) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(wait))?;
        stream.write_all(bytes)?;
        let mut back = vec![0; bytes.len()];
        stream.read_exact(&mut back)?;
        Ok(back)
    }

    #[test]
    fn faults_act_on_the_link_and_change_while_it_runs() {
        let proxy = FaultProxy::start(&echo_server(), &[]);
        let data = vec![7u8; 64 * 1024];
        let wait = Duration::from_secs(5);
        assert_eq!(echo(&proxy.addr, &data, wait).unwrap(), data, "clean link");

        proxy.set_for_new_connections(&[Fault::cut_after(1000)]);
        assert!(
            echo(&proxy.addr, &data, wait).is_err(),
            "a connection cut after 1000 bytes echoes no 64 KiB"
        );

        proxy.set(&[Fault::latency(300, 0)]);
        let start = Instant::now();
        assert_eq!(echo(&proxy.addr, b"ping", wait).unwrap(), b"ping");
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "answers are 300 ms late"
        );

        proxy.set(&Fault::blackhole());
        assert!(
            echo(&proxy.addr, b"ping", Duration::from_secs(1)).is_err(),
            "nothing comes back through a blackhole"
        );

        proxy.set_for_new_connections(&[]);
        assert_eq!(echo(&proxy.addr, b"back", wait).unwrap(), b"back");
        proxy.clear();
        assert_eq!(echo(&proxy.addr, &data, wait).unwrap(), data);
    }

    #[test]
    fn a_restart_closes_open_connections_and_keeps_the_port() {
        let mut proxy = FaultProxy::start(&echo_server(), &Fault::blackhole());
        let mut open = TcpStream::connect(&proxy.addr).unwrap();
        open.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        open.write_all(b"lost").unwrap();
        proxy.restart(&[]);
        let mut buf = [0u8; 4];
        assert!(
            matches!(open.read(&mut buf), Ok(0) | Err(_)),
            "the black-holed connection was closed"
        );
        let wait = Duration::from_secs(5);
        assert_eq!(echo(&proxy.addr, b"back", wait).unwrap(), b"back");
    }

    #[test]
    fn a_low_bandwidth_cap_slows_the_link_and_keeps_every_byte() {
        let proxy = FaultProxy::start(&echo_server(), &[Fault::bandwidth(50, Direction::Upstream)]);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let start = Instant::now();
        assert_eq!(
            echo(&proxy.addr, &data, Duration::from_secs(30)).unwrap(),
            data
        );
        assert!(
            start.elapsed() >= Duration::from_millis(1500),
            "100 KB at 50 KB/s take 2 s, took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn toxicity_picks_some_connections() {
        let proxy = FaultProxy::start(&echo_server(), &[Fault::cut_after(10).toxicity(0.5)]);
        let data = vec![1u8; 1000];
        let cut = (0..40)
            .filter(|_| echo(&proxy.addr, &data, Duration::from_secs(5)).is_err())
            .count();
        // 40 connections at 0.5: all or none has a chance of 2^-40.
        assert!(cut > 0 && cut < 40, "{cut} of 40 connections cut");
    }
}
