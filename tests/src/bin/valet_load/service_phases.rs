//! `valet-load --service`: the service's own work, apart from the store's bytes.
//!
//! Two phases, each at several concurrency levels (CLIENTS clients at once, each its own
//! account, token and connection pool):
//!
//! - **keys**: each client has an open upload of a 4 GiB file (512 parts of 8 MiB, created
//!   before the timed window) and asks for keys for BATCH parts per request, walking its parts
//!   in order and starting over (renewals) after the last, for SECONDS after a one-second
//!   warm-up. Nothing is sent to the store: a key is a signature, the store is not asked.
//! - **complete**: before the timed window, COMPLETIONS uploads of one 16 KiB part are created,
//!   keyed and their part `PUT` to the store; the timed window then completes them all, so it
//!   measures the service's completion path with its store calls (list the parts, complete
//!   the multipart upload, check the object) and not the `PUT`s.
//!
//! Per phase and level: requests and part keys per second, latency p50/p90/p99/p99.9/max,
//! errors (each printed), the service's CPU seconds and RSS (from /proc), and the load
//! generator's own CPU seconds (it runs on the same machine). Afterwards the audit log must
//! show every completion. Any error makes the exit status 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use sha2::Digest as _;
use valet_protocol::{CompleteUpload, CreateUpload, PartDigest, PartKeys, PartKeysRequest};

use super::{Client, Latencies, Sample, load_average, service_pid, status_kib};
use valet_tests::service::{Service, ServiceOptions};
use valet_tests::store::{StoreKind, TestStore};

/// The file each keys client uploads: 4 GiB in the engine's default 8 MiB parts.
const KEYS_FILE_SIZE: u64 = 4 << 30;
const KEYS_PART_SIZE: u64 = 8 << 20;
const WARM_UP: Duration = Duration::from_secs(1);

pub struct Options {
    pub levels: Vec<usize>,
    pub batches: Vec<usize>,
    pub seconds: f64,
    pub completions: usize,
    pub out: Option<std::path::PathBuf>,
}

pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        levels: vec![1, 2, 4, 16, 64],
        batches: vec![8, 100],
        seconds: 10.0,
        completions: 1000,
        out: None,
    };
    let list = |v: Option<String>, what: &str| -> Result<Vec<usize>, String> {
        let v = v.ok_or(format!("{what} needs a list like 4,16,64"))?;
        v.split(',')
            .map(|n| n.trim().parse::<usize>().ok().filter(|&n| n > 0))
            .collect::<Option<Vec<_>>>()
            .filter(|l| !l.is_empty())
            .ok_or(format!("{what}: positive numbers, comma-separated"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--levels" => options.levels = list(it.next(), "--levels")?,
            "--batches" => options.batches = list(it.next(), "--batches")?,
            "--seconds" => {
                options.seconds = it
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|&s| s > 0.0)
                    .ok_or("--seconds needs a positive number")?;
            }
            "--completions" => {
                options.completions = it
                    .next()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--completions needs a positive number")?;
            }
            "--out" => options.out = Some(it.next().ok_or("--out needs a file")?.into()),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    if options
        .batches
        .iter()
        .any(|&b| b > valet_protocol::MAX_KEYS_PER_REQUEST)
    {
        return Err(format!(
            "--batches: at most {} parts per request",
            valet_protocol::MAX_KEYS_PER_REQUEST
        ));
    }
    Ok(options)
}

/// CPU seconds (user + system) of a process, from /proc/PID/stat (`self` for this one).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn latency(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| round2(us as f64 / 1000.0);
    json!({
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// What the service and this process spent during one timed window.
struct Window {
    pid: u32,
    started: Instant,
    service_cpu: f64,
    own_cpu: f64,
    load: f64,
    peak_kib: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<()>,
}

impl Window {
    fn open(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) = (peak_kib.clone(), sampling.clone());
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    if let Some(kib) = status_kib(pid, "VmRSS") {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        };
        Self {
            pid,
            started: Instant::now(),
            service_cpu: cpu_secs(&pid.to_string()),
            own_cpu: cpu_secs("self"),
            load: load_average(),
            peak_kib,
            sampling,
            sampler,
        }
    }

    /// Closes the window: its wall time and the figures every phase reports.
    fn close(self) -> (f64, Value) {
        let wall = self.started.elapsed().as_secs_f64();
        let service_cpu = cpu_secs(&self.pid.to_string()) - self.service_cpu;
        let own_cpu = cpu_secs("self") - self.own_cpu;
        self.sampling.store(false, Ordering::Relaxed);
        self.sampler.join().unwrap();
        let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
        let end_kib = status_kib(self.pid, "VmRSS").unwrap_or(0);
        let figures = json!({
            "wall_s": round2(wall),
            "service_cpu_s": round2(service_cpu),
            "service_cpu_share_of_2_cores": round2(service_cpu / wall / 2.0),
            "loadgen_cpu_s": round2(own_cpu),
            "service_rss_mib": mib(end_kib),
            "service_rss_peak_mib": mib(self.peak_kib.load(Ordering::Relaxed).max(end_kib)),
            "load_average": [self.load, load_average()],
        });
        (wall, figures)
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// The digests a client reports for the parts of its 4 GiB file (made up: keys sign any
/// well-formed SHA-256; nothing is sent with them).
fn keys_file_digests(client: usize) -> Vec<PartDigest> {
    let parts = (KEYS_FILE_SIZE / KEYS_PART_SIZE) as u32;
    (1..=parts)
        .map(|number| PartDigest {
            number,
            size: KEYS_PART_SIZE,
            sha256: base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(format!("{client}/{number}"))),
            md5: None,
            crc64: None,
        })
        .collect()
}

/// Latencies, counts and errors of one client in one phase.
struct Tally {
    latency: Histogram<u64>,
    requests: u64,
    keys: u64,
    errors: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 600_000_000, 3).unwrap(),
            requests: 0,
            keys: 0,
            errors: Vec::new(),
        }
    }

    fn add(&mut self, other: Tally) {
        self.latency.add(&other.latency).unwrap();
        self.requests += other.requests;
        self.keys += other.keys;
        self.errors.extend(other.errors);
    }
}

/// One client asking for keys, BATCH parts at a time, until `until`.
async fn ask_keys(
    client: &Client,
    upload_id: &str,
    digests: &[PartDigest],
    batch: usize,
    next: &mut usize,
    until: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let path = format!("/uploads/{upload_id}/keys");
    while Instant::now() < until {
        // The next BATCH parts, on from the first after the last one's end (all distinct:
        // a batch is never longer than the file's 512 parts).
        let parts: Vec<PartDigest> = (0..batch)
            .map(|i| digests[(*next + i) % digests.len()].clone())
            .collect();
        *next = (*next + batch) % digests.len();
        let request = PartKeysRequest { parts };
        let started = Instant::now();
        let answer: Result<PartKeys, String> = client.call(&path, &request).await;
        tally
            .latency
            .saturating_record(started.elapsed().as_micros().max(1) as u64);
        tally.requests += 1;
        let checked = answer.and_then(|keys| {
            let numbers_match = keys.keys.len() == request.parts.len()
                && keys
                    .keys
                    .iter()
                    .zip(&request.parts)
                    .all(|(k, p)| k.number == p.number);
            if numbers_match {
                Ok(keys.keys.len() as u64)
            } else {
                Err(format!("keys for other parts than asked on {upload_id}"))
            }
        });
        match checked {
            Ok(n) => tally.keys += n,
            Err(e) => {
                eprintln!("valet-load: error: client {}: {e}", client.id);
                tally.errors.push(format!("client {}: {e}", client.id));
            }
        }
    }
    tally
}

/// The keys phase at `clients` clients and `batch` parts per request.
async fn keys_phase(
    service: &Service,
    tokens: &[String],
    pid: u32,
    clients: usize,
    batch: usize,
    seconds: f64,
) -> Value {
    let mut tasks = tokio::task::JoinSet::new();
    // Every client created its upload and warmed up (connections, caches) before the window.
    let ready = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let (go_tx, go_rx) = tokio::sync::watch::channel(None::<Instant>);
    for (id, token) in tokens.iter().take(clients).enumerate() {
        let client = Client {
            id,
            http: http_client(),
            base: service.url.clone(),
            token: token.clone(),
        };
        let (mut go, ready) = (go_rx.clone(), ready.clone());
        tasks.spawn(async move {
            let create = CreateUpload {
                file_name: format!("keys-{id}-{batch}-{clients}.bin"),
                size: KEYS_FILE_SIZE,
                content_type: None,
                prefix: None,
                part_size: KEYS_PART_SIZE,
                idempotency_key: None,
            };
            let created: Result<valet_protocol::UploadCreated, String> =
                client.call("/uploads", &create).await;
            let digests = keys_file_digests(id);
            let mut next = 0;
            if let Ok(created) = &created {
                let warm_until = Instant::now() + WARM_UP;
                ask_keys(
                    &client,
                    &created.upload_id,
                    &digests,
                    batch,
                    &mut next,
                    warm_until,
                )
                .await;
            }
            ready.wait().await;
            let until = go.wait_for(Option::is_some).await.unwrap().unwrap();
            match created {
                Ok(created) => {
                    ask_keys(
                        &client,
                        &created.upload_id,
                        &digests,
                        batch,
                        &mut next,
                        until,
                    )
                    .await
                }
                Err(e) => {
                    let mut tally = Tally::new();
                    tally.errors.push(format!("client {id}: create: {e}"));
                    tally
                }
            }
        });
    }
    ready.wait().await;
    let window = Window::open(pid);
    go_tx.send_replace(Some(Instant::now() + Duration::from_secs_f64(seconds)));
    let mut all = Tally::new();
    while let Some(done) = tasks.join_next().await {
        all.add(done.expect("a client task panicked"));
    }
    let (wall, mut figures) = window.close();
    let extra = json!({
        "phase": "keys",
        "clients": clients,
        "batch": batch,
        "requests": all.requests,
        "keys": all.keys,
        "errors": all.errors.len(),
        "error_messages": all.errors.iter().take(20).collect::<Vec<_>>(),
        "requests_per_s": (all.requests as f64 / wall).round(),
        "keys_per_s": (all.keys as f64 / wall).round(),
        "latency": latency(&all.latency),
    });
    merge(&mut figures, extra);
    figures
}

/// The complete phase at `clients` clients: `completions` uploads prepared, then completed.
async fn complete_phase(
    service: &Service,
    tokens: &[String],
    pid: u32,
    clients: usize,
    completions: usize,
) -> Value {
    let sample = Arc::new(Sample::new(16 * 1024));
    let clients_list: Vec<Arc<Client>> = tokens
        .iter()
        .take(clients)
        .enumerate()
        .map(|(id, token)| {
            Arc::new(Client {
                id,
                http: http_client(),
                base: service.url.clone(),
                token: token.clone(),
            })
        })
        .collect();
    let share = |id: usize| completions / clients + usize::from(id < completions % clients);

    // Untimed: create, key and PUT every upload to be completed.
    let mut prepare = tokio::task::JoinSet::new();
    for client in &clients_list {
        let (client, sample, n) = (client.clone(), sample.clone(), share(client.id));
        prepare.spawn(async move {
            let mut lat = Latencies::new();
            let mut ready: Vec<(String, CompleteUpload)> = Vec::with_capacity(n);
            for round in 0..n {
                let name_round = clients * 1_000_000 + round;
                match client.upload_parts(name_round, &sample, &mut lat).await {
                    Ok(upload) => ready.push(upload),
                    Err(e) => return Err(format!("client {}: preparing: {e}", client.id)),
                }
            }
            Ok((client.id, ready))
        });
    }
    let mut prepared = vec![Vec::new(); clients];
    let mut all = Tally::new();
    while let Some(done) = prepare.join_next().await {
        match done.expect("a client task panicked") {
            Ok((id, ready)) => prepared[id] = ready,
            Err(e) => {
                eprintln!("valet-load: error: {e}");
                all.errors.push(e);
            }
        }
    }

    let window = Window::open(pid);
    let mut tasks = tokio::task::JoinSet::new();
    for (client, ready) in clients_list.into_iter().zip(prepared) {
        let sample = sample.clone();
        tasks.spawn(async move {
            let mut tally = Tally::new();
            for (id, request) in ready {
                let started = Instant::now();
                let done = client.complete(&id, &request, &sample).await;
                tally
                    .latency
                    .saturating_record(started.elapsed().as_micros().max(1) as u64);
                tally.requests += 1;
                match done {
                    Ok(()) => tally.keys += 1,
                    Err(e) => {
                        eprintln!("valet-load: error: client {}: {e}", client.id);
                        tally.errors.push(format!("client {}: {e}", client.id));
                    }
                }
            }
            tally
        });
    }
    while let Some(done) = tasks.join_next().await {
        all.add(done.expect("a client task panicked"));
    }
    let (wall, mut figures) = window.close();
    let extra = json!({
        "phase": "complete",
        "clients": clients,
        "requests": all.requests,
        "verified": all.keys,
        "errors": all.errors.len(),
        "error_messages": all.errors.iter().take(20).collect::<Vec<_>>(),
        "requests_per_s": (all.requests as f64 / wall).round(),
        "latency": latency(&all.latency),
    });
    merge(&mut figures, extra);
    figures
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

/// The machine the figures come from.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": round2(mem_kib as f64 / 1024.0 / 1024.0),
        "kernel": kernel.trim(),
    })
}

/// Runs every phase; the exit status (1 on any error or a completion missing from the audit).
pub fn run(options: Options) -> i32 {
    let store = TestStore::shared_or_start(StoreKind::S3);
    let service = Service::start(&store, ServiceOptions::default());
    let pid = service_pid(service.config());
    let most = options.levels.iter().copied().max().unwrap_or(1);
    eprintln!(
        "valet-load: service pid {pid} at {}; adding {most} accounts",
        service.url
    );
    let tokens = super::add_accounts(&service, most);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut phases = Vec::new();
    let mut completions = 0;
    for &clients in &options.levels {
        for &batch in &options.batches {
            eprintln!("valet-load: keys, {clients} clients, {batch} parts per request");
            let result = runtime.block_on(keys_phase(
                &service,
                &tokens,
                pid,
                clients,
                batch,
                options.seconds,
            ));
            eprintln!("  {}", summary_line(&result));
            phases.push(result);
        }
        eprintln!(
            "valet-load: complete, {clients} clients, {} uploads",
            options.completions
        );
        let result = runtime.block_on(complete_phase(
            &service,
            &tokens,
            pid,
            clients,
            options.completions,
        ));
        eprintln!("  {}", summary_line(&result));
        completions += result["verified"].as_u64().unwrap_or(0);
        phases.push(result);
    }
    let audit = service.audit();
    let completed_in_audit = audit
        .iter()
        .filter(|e| e["event"] == "upload_completed")
        .count() as u64;
    let errors: u64 = phases
        .iter()
        .map(|p| p["errors"].as_u64().unwrap_or(0))
        .sum();
    let results = json!({
        "what": "valet service alone: keys and completion requests, SQLite, S3 (SeaweedFS) store; \
                 the load generator and the store run on the same machine",
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "machine": machine(),
        "database": "SQLite (WAL) in the service's data_dir",
        "store": "SeaweedFS (S3 API) on loopback",
        "keys_file": { "size_gib": KEYS_FILE_SIZE >> 30, "part_size_mib": KEYS_PART_SIZE >> 20 },
        "seconds_per_keys_phase": options.seconds,
        "completions_per_level": options.completions,
        "errors": errors,
        "completions_verified": completions,
        "completed_in_audit_log": completed_in_audit,
        "phases": phases,
    });
    let text = serde_json::to_string_pretty(&results).unwrap();
    println!("{text}");
    if let Some(out) = &options.out {
        std::fs::write(out, format!("{text}\n")).expect("write the results");
    }
    let expected = (options.completions * options.levels.len()) as u64;
    if errors > 0 || completed_in_audit != expected {
        eprintln!(
            "valet-load: {errors} errors; {completed_in_audit} of {expected} completions in the audit log"
        );
        return 1;
    }
    0
}

fn summary_line(p: &Value) -> String {
    let l = &p["latency"];
    format!(
        "{} req/s{}, p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms, {} errors, service CPU {} s in {} s",
        p["requests_per_s"],
        p.get("keys_per_s")
            .map(|k| format!(" ({k} keys/s)"))
            .unwrap_or_default(),
        l["p50_ms"],
        l["p99_ms"],
        l["p999_ms"],
        l["max_ms"],
        p["errors"],
        p["service_cpu_s"],
        p["wall_s"],
    )
}
