//! `valet-load [CLIENTS] [ROUNDS] [--out FILE] [--big-every K]`: the valet service under load.
//!
//! Starts a real `valet-service serve` on SeaweedFS (the shared one of `VALET_TEST_S3`, or its
//! own), gives each of CLIENTS simulated clients its own account and API token, and lets them
//! all run at once, ROUNDS times each: create an upload, ask for its keys, `PUT` the parts
//! straight to the store, complete it. Every K-th round sends a two-part file (5 MiB + 4 KiB),
//! the others one part of 16 KiB: the service's work per call does not depend on the bytes.
//!
//! Measured: the latency of each service call (create, keys, complete) and of the store's
//! `PUT`s (p50, p90, p99, max), errors (each printed), calls per second, and the service's RSS
//! sampled every second from /proc. Afterwards the service's audit log must show every upload
//! completed. Prints the results as JSON (and writes them to FILE); exits 1 on any error.
//!
//! `valet-load --service …` measures the service's own work instead, keys and completions
//! apart from the `PUT`s (see `valet_load/service_phases.rs`, and `bench/service.sh`).

#[path = "valet_load/service_phases.rs"]
mod service_phases;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use sha2::Digest as _;
use valet_protocol::{
    CompleteUpload, CreateUpload, PartDigest, PartKeys, PartKeysRequest, PartReceipt,
    UploadCreated, UploadVerified,
};
use valet_tests::files::{hex, sha256_b64};
use valet_tests::service::{Service, ServiceOptions};
use valet_tests::store::{StoreKind, TestStore};

const PART_SIZE: u64 = 5 * 1024 * 1024;
const SMALL: usize = 16 * 1024;
const BIG: usize = PART_SIZE as usize + 4096;

struct Args {
    clients: usize,
    rounds: usize,
    big_every: usize,
    out: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        clients: 32,
        rounds: 20,
        big_every: 10,
        out: None,
    };
    let mut positional = 0;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let number = |v: Option<String>| {
            v.and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .ok_or(format!("{arg} needs a positive number"))
        };
        match arg.as_str() {
            "--out" => args.out = Some(it.next().ok_or("--out needs a file")?.into()),
            "--big-every" => args.big_every = number(it.next())?,
            _ if positional == 0 => (args.clients, positional) = (number(Some(arg.clone()))?, 1),
            _ if positional == 1 => (args.rounds, positional) = (number(Some(arg.clone()))?, 2),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    Ok(args)
}

const SERVICE_USAGE: &str = "valet-load --service [--levels 1,2,4,16,64] [--batches 8,100] \
                             [--seconds S] [--completions N] [--out FILE]";

/// Where the service's binaries are (beside this one, unless `VALET_BIN_DIR` says), and the
/// TLS provider. At the start of main, before any other thread exists.
fn set_bin_dir() {
    if std::env::var_os("VALET_BIN_DIR").is_none() {
        let exe = std::env::current_exe().unwrap();
        // SAFETY: called at the start of main, before any other thread exists.
        unsafe { std::env::set_var("VALET_BIN_DIR", exe.parent().unwrap()) };
    }
    valet_tests::install_tls_provider();
}

/// The bytes of a file of `size` and what a client computes of them once.
struct Sample {
    bytes: Vec<u8>,
    sha256_hex: String,
    parts: Vec<(PartDigest, std::ops::Range<usize>)>,
}

impl Sample {
    fn new(size: usize) -> Self {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
        let parts = (0..size.div_ceil(PART_SIZE as usize))
            .map(|i| {
                let range = i * PART_SIZE as usize..size.min((i + 1) * PART_SIZE as usize);
                let digest = PartDigest {
                    number: i as u32 + 1,
                    size: range.len() as u64,
                    sha256: sha256_b64(&bytes[range.clone()]),
                    md5: None,
                    crc64: None,
                };
                (digest, range)
            })
            .collect();
        Self {
            sha256_hex: hex(&sha2::Sha256::digest(&bytes)),
            bytes,
            parts,
        }
    }
}

/// Latencies in microseconds, per call.
struct Latencies {
    create: Histogram<u64>,
    keys: Histogram<u64>,
    complete: Histogram<u64>,
    store_put: Histogram<u64>,
}

impl Latencies {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, 600_000_000, 3).unwrap();
        Self {
            create: h(),
            keys: h(),
            complete: h(),
            store_put: h(),
        }
    }

    fn add(&mut self, other: &Self) {
        self.create.add(&other.create).unwrap();
        self.keys.add(&other.keys).unwrap();
        self.complete.add(&other.complete).unwrap();
        self.store_put.add(&other.store_put).unwrap();
    }
}

fn record(histogram: &mut Histogram<u64>, started: Instant) {
    histogram.saturating_record(started.elapsed().as_micros().max(1) as u64);
}

fn summary(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 100.0).round() / 100.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

/// One simulated client: its own connection pool, account and token.
struct Client {
    id: usize,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, String> {
        let response = self
            .http
            .post(format!("{}/v1{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("POST {path}: HTTP {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("POST {path}: {e}: {text}"))
    }

    /// One upload from create to verified, its calls timed into `lat`.
    async fn round(
        &self,
        round: usize,
        sample: &Sample,
        lat: &mut Latencies,
    ) -> Result<(), String> {
        let (id, complete) = self.upload_parts(round, sample, lat).await?;
        let started = Instant::now();
        self.complete(&id, &complete, sample).await?;
        record(&mut lat.complete, started);
        Ok(())
    }

    /// Creates an upload of `sample`, asks for its keys and `PUT`s its parts to the store:
    /// everything but the completion. Returns the upload id and its completion request.
    async fn upload_parts(
        &self,
        round: usize,
        sample: &Sample,
        lat: &mut Latencies,
    ) -> Result<(String, CompleteUpload), String> {
        let create = CreateUpload {
            file_name: format!("load-{}-{round}.bin", self.id),
            size: sample.bytes.len() as u64,
            content_type: None,
            prefix: None,
            part_size: PART_SIZE,
            idempotency_key: None,
        };
        let started = Instant::now();
        let created: UploadCreated = self.call("/uploads", &create).await?;
        record(&mut lat.create, started);
        let id = created.upload_id;
        if created.layout.part_count as usize != sample.parts.len() {
            return Err(format!("unexpected layout {:?}", created.layout));
        }

        let request = PartKeysRequest {
            parts: sample.parts.iter().map(|(d, _)| d.clone()).collect(),
        };
        let started = Instant::now();
        let keys: PartKeys = self.call(&format!("/uploads/{id}/keys"), &request).await?;
        record(&mut lat.keys, started);

        let mut receipts = Vec::new();
        for (key, (digest, range)) in keys.keys.iter().zip(&sample.parts) {
            if !key.url.starts_with(&created.store.origin) {
                return Err(format!("part {}: a key outside the store", key.number));
            }
            let mut put = self
                .http
                .put(&key.url)
                .body(sample.bytes[range.clone()].to_vec());
            for (name, value) in &key.headers {
                put = put.header(name, value);
            }
            let started = Instant::now();
            let response = put
                .send()
                .await
                .map_err(|e| format!("PUT part {}: {}", key.number, e.without_url()))?;
            let status = response.status();
            let etag = response
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches('"').to_owned());
            let body = response.text().await.unwrap_or_default();
            record(&mut lat.store_put, started);
            let etag = etag
                .filter(|_| status.is_success())
                .ok_or(format!("PUT part {}: HTTP {status}: {body}", key.number))?;
            receipts.push(PartReceipt {
                number: digest.number,
                etag,
                sha256: digest.sha256.clone(),
                size: digest.size,
            });
        }
        let complete = CompleteUpload {
            sha256: sample.sha256_hex.clone(),
            parts: receipts,
        };
        Ok((id, complete))
    }

    /// Completes upload `id` of `sample`; the answer must be its size and digest, verified.
    async fn complete(
        &self,
        id: &str,
        complete: &CompleteUpload,
        sample: &Sample,
    ) -> Result<(), String> {
        let verified: UploadVerified = self
            .call(&format!("/uploads/{id}/complete"), complete)
            .await?;
        if verified.size != sample.bytes.len() as u64 || verified.sha256 != sample.sha256_hex {
            return Err(format!("upload {id} verified with other size or digest"));
        }
        Ok(())
    }
}

/// Adds `count` accounts `load0`, `load1`, … with an API token each; their tokens.
fn add_accounts(service: &Service, count: usize) -> Vec<String> {
    std::thread::scope(|s| {
        // A few at a time: each is two runs of the admin command (argon2 hashing included).
        let mut tokens = Vec::new();
        for start in (0..count).step_by(8) {
            let handles: Vec<_> = (start..count.min(start + 8))
                .map(|i| s.spawn(move || service.add_user_with_token(&format!("load{i}"))))
                .collect();
            tokens.extend(handles.into_iter().map(|h| h.join().unwrap()));
        }
        tokens
    })
}

/// The pid of the `valet-service serve` running with `config`, found in /proc.
fn service_pid(config: &std::path::Path) -> u32 {
    let wanted = config.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let args: Vec<_> = raw
                    .split(|&b| b == 0)
                    .map(String::from_utf8_lossy)
                    .collect();
                args.iter().any(|a| a == "serve") && args.iter().any(|a| *a == wanted)
            })
        })
        .expect("the service's process")
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The 1-minute load average of the machine (/proc/loadavg).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn mean_mib(samples: &[u64]) -> f64 {
    let mean = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64;
    (mean / 1024.0 * 10.0).round() / 10.0
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--service") {
        let options = service_phases::parse(std::env::args().skip(2)).unwrap_or_else(|e| {
            eprintln!("valet-load: {e}\nusage: {SERVICE_USAGE}");
            std::process::exit(2)
        });
        set_bin_dir();
        std::process::exit(service_phases::run(options));
    }
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!(
            "valet-load: {e}\nusage: valet-load [CLIENTS] [ROUNDS] [--out FILE] [--big-every K]"
        );
        std::process::exit(2)
    });
    set_bin_dir();

    let store = TestStore::shared_or_start(StoreKind::S3);
    let service = Service::start(&store, ServiceOptions::default());
    let pid = service_pid(service.config());
    eprintln!(
        "valet-load: service pid {pid} at {}; adding {} accounts",
        service.url, args.clients
    );
    let tokens = add_accounts(&service, args.clients);

    let rss: Arc<Mutex<Vec<u64>>> = Arc::default();
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (rss, running) = (rss.clone(), running.clone());
        std::thread::spawn(move || {
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kib) = status_kib(pid, "VmRSS") {
                    rss.lock().unwrap().push(kib);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    let load_before = load_average();
    let small = Arc::new(Sample::new(SMALL));
    let big = Arc::new(Sample::new(BIG));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let (latencies, errors) = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (id, token) in tokens.into_iter().enumerate() {
            let client = Client {
                id,
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(Duration::from_secs(120))
                    .build()
                    .unwrap(),
                base: service.url.clone(),
                token,
            };
            let (small, big, rounds, big_every) =
                (small.clone(), big.clone(), args.rounds, args.big_every);
            tasks.spawn(async move {
                let mut lat = Latencies::new();
                let mut errors = Vec::new();
                for round in 0..rounds {
                    let sample = if round % big_every == big_every - 1 {
                        &big
                    } else {
                        &small
                    };
                    if let Err(e) = client.round(round, sample, &mut lat).await {
                        eprintln!("valet-load: error: client {id} round {round}: {e}");
                        errors.push(format!("client {id} round {round}: {e}"));
                    }
                }
                (lat, errors)
            });
        }
        let mut all = Latencies::new();
        let mut errors = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (lat, errs) = done.expect("a client task panicked");
            all.add(&lat);
            errors.extend(errs);
        }
        (all, errors)
    });
    let wall = started.elapsed().as_secs_f64();
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let peak_kib = status_kib(pid, "VmHWM").unwrap_or(0);

    let attempted = args.clients * args.rounds;
    let audit = service.audit();
    let completed_in_audit = audit
        .iter()
        .filter(|e| e["event"] == "upload_completed")
        .count();
    let rss = rss.lock().unwrap().clone();
    // Thirds of the run by samples, one sample at least each (a short run has few).
    let third = (rss.len() / 3).max(1).min(rss.len());
    let service_calls = latencies.create.len() + latencies.keys.len() + latencies.complete.len();
    let results = json!({
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        // The machine's 1-minute load average before and after the run: other work on the
        // machine shows in the latencies.
        "load_average": [load_before, load_average()],
        "clients": args.clients,
        "rounds": args.rounds,
        "two_part_every": args.big_every,
        "uploads_attempted": attempted,
        "uploads_verified": latencies.complete.len(),
        "completed_in_audit_log": completed_in_audit,
        "errors": errors.len(),
        "error_messages": errors.iter().take(20).collect::<Vec<_>>(),
        "wall_secs": (wall * 100.0).round() / 100.0,
        "service_calls_per_sec": (service_calls as f64 / wall * 10.0).round() / 10.0,
        "uploads_per_sec": (latencies.complete.len() as f64 / wall * 10.0).round() / 10.0,
        "latency": {
            "create": summary(&latencies.create),
            "keys": summary(&latencies.keys),
            "complete": summary(&latencies.complete),
            "store_put": summary(&latencies.store_put),
        },
        "service_rss_mib": {
            "samples": rss.len(),
            "first_third_mean": mean_mib(&rss[..third]),
            "last_third_mean": mean_mib(&rss[rss.len() - third..]),
            "peak": (peak_kib as f64 / 1024.0 * 10.0).round() / 10.0,
            "every_second": rss.iter().map(|&kib| mean_mib(&[kib])).collect::<Vec<_>>(),
        },
    });
    let text = serde_json::to_string_pretty(&results).unwrap();
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{text}\n")).expect("write the results");
    }
    if !errors.is_empty() || completed_in_audit != attempted {
        eprintln!(
            "valet-load: {} errors; {completed_in_audit} of {attempted} uploads completed in the audit log",
            errors.len()
        );
        std::process::exit(1);
    }
}
