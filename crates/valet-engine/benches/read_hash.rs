//! The read+hash pipeline of an upload against raw SHA-256, on one machine.
//!
//! - `pipeline`: a file in the page cache read and hashed as an upload does it
//!   ([`valet_engine::read_and_hash`]: the engine's reader, which computes the whole-file and
//!   each part's SHA-256 in one pass on a thread beside the one that reads), in bytes of file
//!   per second;
//! - `pipeline_rehashing`: the same with each part's SHA-256 computed again on the blocking
//!   pool, as the pipeline did before it took the reader's part digests (for comparison);
//! - `sha2_16k`: the `sha2` crate's SHA-256 fed 16 KiB at a time on one core, the figure
//!   `openssl speed -evp sha256 -bytes 16384` gives for OpenSSL.
//!
//! Run with `cargo bench -p valet-engine --bench read_hash`; `bench/hash.sh` runs it beside
//! OpenSSL and writes the ratios.

use std::io::Write;
use std::path::Path;
use std::sync::{LazyLock, OnceLock};

use divan::Bencher;
use divan::counter::BytesCount;
use sha2::{Digest, Sha256};

/// The engine's default part size and parallelism.
const PART_SIZE: u64 = 8 * 1024 * 1024;
const PARALLEL: usize = 4;
/// Large enough for many parts and for the reader and hasher to overlap, small enough to stay
/// in the page cache of a small machine.
const FILE_SIZE: usize = 512 * 1024 * 1024;
const BLOCK: usize = 16 * 1024;
/// Bytes per `sha2_16k` iteration: 64 MiB.
const BLOCKS_PER_ITER: usize = 4096;

/// A file of pseudo-random bytes, read once so that the benchmark reads from the page cache.
/// Made by the first benchmark that needs it, removed by `main` (statics are never dropped).
static FILE: OnceLock<tempfile::TempPath> = OnceLock::new();

fn benchmark_file() -> &'static Path {
    FILE.get_or_init(make_file)
}

fn make_file() -> tempfile::TempPath {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..FILE_SIZE / chunk.len() {
        for word in chunk.chunks_exact_mut(8) {
            // xorshift64: bytes SHA-256 cannot shortcut, made faster than the disk takes them.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&chunk).expect("writing the benchmark file");
    }
    file.flush().expect("writing the benchmark file");
    let path = file.into_temp_path();
    std::fs::read(&path).expect("reading the benchmark file into the page cache");
    path
}

/// The runtime an upload runs on: multi-threaded, one worker per core.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

fn main() {
    divan::main();
    if let Some(path) = FILE.get() {
        let _ = std::fs::remove_file(path);
    }
}

/// As an upload runs for a store that checks SHA-256 only: the whole-file and each part's
/// SHA-256 from the reader, in one pass.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn pipeline(bencher: Bencher) {
    read_and_hash(bencher, false);
}

/// As the pipeline ran before it took the part digests from the reader: each part's SHA-256
/// computed again on the blocking pool.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn pipeline_rehashing(bencher: Bencher) {
    read_and_hash(bencher, true);
}

fn read_and_hash(bencher: Bencher, rehash_parts: bool) {
    let path = benchmark_file();
    bencher.counter(BytesCount::new(FILE_SIZE)).bench(|| {
        RUNTIME
            .block_on(valet_engine::read_and_hash(
                path,
                PART_SIZE,
                PARALLEL,
                rehash_parts,
            ))
            .expect("read and hashed")
    });
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn sha2_16k(bencher: Bencher) {
    let block = vec![0x5Au8; BLOCK];
    bencher
        .counter(BytesCount::new(BLOCK * BLOCKS_PER_ITER))
        .bench(|| {
            let mut hasher = Sha256::new();
            for _ in 0..BLOCKS_PER_ITER {
                hasher.update(divan::black_box(&block));
            }
            hasher.finalize()
        });
}
