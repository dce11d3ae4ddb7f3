//! The one sequential reader of an upload: it reads the file once, in order, part by part, into
//! one buffer per part; a second thread computes the whole-file SHA-256 and each part's SHA-256
//! in one pass over the part (see [`two_sha256`]) while the next part is read.

mod two_sha256;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use valet_protocol::PartLayout;

use crate::error::{Error, Result};
use crate::source::{FileStamp, change_time, check_unchanged};

/// One part as read from the file. The permit is one of the pipeline's part buffers: it is given
/// back when the part is dropped (sent and journaled, or skipped).
pub(crate) struct ReadPart {
    pub(crate) number: u32,
    pub(crate) bytes: Bytes,
    /// The part's SHA-256, computed in the same pass as the whole file's.
    pub(crate) sha256: [u8; 32],
    pub(crate) permit: OwnedSemaphorePermit,
}

/// Reads every part of `path` in order and hands it to `tx`; the whole-file SHA-256, or `None`
/// when the pipeline stopped taking parts (another stage failed and will report why).
///
/// Runs on a blocking thread, and hashes on a second one. Before reading each part it takes a
/// permit from `buffers`, so at most that many part buffers exist at once (the part being hashed
/// holds its permit). After each part it checks the file is unchanged.
pub(crate) fn read_parts(
    path: &Path,
    stamp: &FileStamp,
    layout: &PartLayout,
    buffers: Arc<Semaphore>,
    tx: mpsc::Sender<ReadPart>,
    on_hashed: impl Fn(u64) + Send,
) -> Result<Option<[u8; 32]>> {
    // One read part waits for the hasher at most: its buffer holds a permit.
    let (to_hasher, read) =
        std::sync::mpsc::sync_channel::<(u32, Vec<u8>, OwnedSemaphorePermit)>(1);
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || hash_parts(read, tx, on_hashed));
        let reading = read_in_order(path, stamp, layout, &buffers, &to_hasher);
        drop(to_hasher);
        let whole = hasher
            .join()
            .map_err(|_| Error::Invalid("the file hasher stopped".into()))?;
        // Reading failed: its error; the pipeline stopped taking parts: nothing.
        match reading? {
            true => Ok(whole),
            false => Ok(None),
        }
    })
}

/// Hashes each part read, whole file and part together, and hands it on; the whole-file
/// SHA-256 once every part was handed on.
fn hash_parts(
    read: std::sync::mpsc::Receiver<(u32, Vec<u8>, OwnedSemaphorePermit)>,
    tx: mpsc::Sender<ReadPart>,
    on_hashed: impl Fn(u64),
) -> Option<[u8; 32]> {
    let mut whole = two_sha256::Sha256::new();
    let mut hashed = 0u64;
    for (number, buf, permit) in read {
        let mut part = two_sha256::Sha256::new();
        two_sha256::update_both(&mut whole, &mut part, &buf);
        hashed += buf.len() as u64;
        on_hashed(hashed);
        let part = ReadPart {
            number,
            bytes: Bytes::from(buf),
            sha256: part.finalize(),
            permit,
        };
        if tx.blocking_send(part).is_err() {
            return None;
        }
    }
    Some(whole.finalize())
}

/// Reads the parts in order and sends each to the hasher; `false` when the hasher stopped (the
/// pipeline took no more parts).
fn read_in_order(
    path: &Path,
    stamp: &FileStamp,
    layout: &PartLayout,
    buffers: &Arc<Semaphore>,
    to_hasher: &std::sync::mpsc::SyncSender<(u32, Vec<u8>, OwnedSemaphorePermit)>,
) -> Result<bool> {
    let runtime = tokio::runtime::Handle::current();
    let unreadable = |source| Error::SourceUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(unreadable)?;
    let opened_meta = file.metadata().map_err(unreadable)?;
    let opened = FileStamp::of(&opened_meta);
    if let Some(reason) = stamp.difference(&opened) {
        return Err(Error::SourceChanged {
            path: path.to_path_buf(),
            reason,
        });
    }
    let mut read = 0u64;
    for number in 1..=layout.part_count {
        let (_, len) = layout
            .part_range(number)
            .ok_or_else(|| Error::Invalid(format!("part {number} is outside the layout")))?;
        let Ok(permit) = runtime.block_on(buffers.clone().acquire_owned()) else {
            return Ok(false);
        };
        let mut buf = Vec::with_capacity(len as usize);
        (&mut file)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(unreadable)?;
        if buf.len() as u64 != len {
            return Err(Error::SourceChanged {
                path: path.to_path_buf(),
                reason: format!(
                    "ended at byte {}, expected {}",
                    read + buf.len() as u64,
                    layout.size
                ),
            });
        }
        read += len;
        check_unchanged(path, stamp)?;
        // Parts read earlier may have been rewritten since, their times set back: the object
        // would mix old and new bytes.
        let now = file.metadata().map_err(unreadable)?;
        if change_time(&now) != change_time(&opened_meta) {
            return Err(Error::SourceChanged {
                path: path.to_path_buf(),
                reason: "written to while it was read, or its attributes changed".into(),
            });
        }
        if to_hasher.send((number, buf, permit)).is_err() {
            return Ok(false);
        }
    }
    // More bytes than the size said (files in /proc and /sys say 0 or 4096): what was read is
    // not the whole file.
    let mut beyond = [0u8; 1];
    if file.read(&mut beyond).map_err(unreadable)? > 0 {
        return Err(Error::SourceChanged {
            path: path.to_path_buf(),
            reason: format!("it holds more than the {} bytes its size says", layout.size),
        });
    }
    Ok(true)
}

/// SHA-256 of `len` bytes of `path` from `offset`, read in small pieces (no part-sized buffer):
/// used to check a part again after the store said its bytes did not match.
pub(crate) fn hash_range(path: &Path, offset: u64, len: u64) -> Result<[u8; 32]> {
    let unreadable = |source| Error::SourceUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(unreadable)?;
    file.seek(SeekFrom::Start(offset)).map_err(unreadable)?;
    let mut hasher = Sha256::new();
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = file.read(&mut buf[..want]).map_err(unreadable)?;
        if got == 0 {
            return Err(Error::SourceChanged {
                path: path.to_path_buf(),
                reason: "the file got shorter".into(),
            });
        }
        hasher.update(&buf[..got]);
        left -= got as u64;
    }
    Ok(hasher.finalize().into())
}

/// Reads and hashes `path` as an upload to a store that checks SHA-256 only does, without
/// sending: [`read_parts`] on a blocking thread with the pipeline's part buffers for `parallel`
/// senders, its part digests taken as they are. With `rehash_parts`, each part's SHA-256 is
/// computed again on the blocking pool, one part at a time, as the pipeline did before it took
/// the reader's digests. The whole-file SHA-256. For the benchmark `benches/read_hash.rs`.
pub async fn read_and_hash(
    path: &Path,
    part_size: u64,
    parallel: usize,
    rehash_parts: bool,
) -> Result<[u8; 32]> {
    let stamp = FileStamp::read(path)?;
    let layout = PartLayout::new(stamp.size, part_size)
        .map_err(|e| Error::Invalid(format!("no layout for the benchmark: {e}")))?;
    let (capacity, _) = super::pipeline::plan(parallel, part_size);
    let buffers = Arc::new(Semaphore::new(capacity));
    let (tx, mut rx) = mpsc::channel(capacity);
    let reader = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || read_parts(&path, &stamp, &layout, buffers, tx, |_| {}))
    };
    while let Some(part) = rx.recv().await {
        let digest = if rehash_parts {
            let bytes = part.bytes.clone();
            tokio::task::spawn_blocking(move || <[u8; 32]>::from(Sha256::digest(&bytes)))
                .await
                .map_err(|e| Error::Invalid(format!("hashing stopped: {e}")))?
        } else {
            part.sha256
        };
        std::hint::black_box(digest);
    }
    reader
        .await
        .map_err(|e| Error::Invalid(format!("the file reader stopped: {e}")))??
        .ok_or_else(|| Error::Invalid("the file reader stopped early".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_every_part_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let part = valet_protocol::MIN_PART_SIZE as usize;
        let data: Vec<u8> = (0..2 * part + 3).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let stamp = FileStamp::read(&path).unwrap();
        let layout = PartLayout::new(data.len() as u64, part as u64).unwrap();
        let buffers = Arc::new(Semaphore::new(2));
        let (tx, mut rx) = mpsc::channel(4);
        let reader = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                read_parts(&path, &stamp, &layout, buffers, tx, |_| {})
            })
        };
        let mut got = Vec::new();
        while let Some(p) = rx.recv().await {
            got.push((p.number, p.bytes.len()));
            assert_eq!(p.sha256, <[u8; 32]>::from(Sha256::digest(&p.bytes)));
            assert_eq!(
                &p.bytes[..],
                &data[(p.number as usize - 1) * part..][..p.bytes.len()]
            );
        }
        let whole = reader.await.unwrap().unwrap().expect("read to the end");
        assert_eq!(got, vec![(1, part), (2, part), (3, 3)]);
        assert_eq!(whole, <[u8; 32]>::from(Sha256::digest(&data)));
        let again = hash_range(&path, part as u64, part as u64).unwrap();
        assert_eq!(
            again,
            <[u8; 32]>::from(Sha256::digest(&data[part..2 * part]))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_changed_file_stops_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 100]).unwrap();
        let stamp = FileStamp::read(&path).unwrap();
        std::fs::write(&path, vec![2u8; 101]).unwrap();
        let layout = PartLayout::new(100, valet_protocol::MIN_PART_SIZE).unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let e = tokio::task::spawn_blocking(move || {
            read_parts(
                &path,
                &stamp,
                &layout,
                Arc::new(Semaphore::new(1)),
                tx,
                |_| {},
            )
        })
        .await
        .unwrap()
        .expect_err("changed");
        assert_eq!(e.code(), "source_changed");
    }
    /// A part already read is rewritten in place and the modification time set back: size,
    /// time and inode match the stamp, the change time does not.
    #[cfg(unix)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_rewritten_in_place_with_its_old_time_stops_the_reader() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let part = valet_protocol::MIN_PART_SIZE as usize;
        std::fs::write(&path, vec![1u8; 3 * part]).unwrap();
        let stamp = FileStamp::read(&path).unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let layout = PartLayout::new(3 * part as u64, part as u64).unwrap();
        // One buffer: the reader waits for the first part to be taken before reading on.
        let buffers = Arc::new(Semaphore::new(1));
        let (tx, mut rx) = mpsc::channel(1);
        let reader = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                read_parts(&path, &stamp, &layout, buffers, tx, |_| {})
            })
        };
        let first = rx.recv().await.expect("part 1");
        // Past the coarse clock tick the change time is taken from.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        writer.write_all(&vec![2u8; part]).unwrap();
        writer.set_modified(modified).unwrap();
        drop(writer);
        assert_eq!(
            FileStamp::read(&path).unwrap(),
            stamp,
            "the stamp cannot tell"
        );
        drop(first);
        while rx.recv().await.is_some() {}
        let e = reader.await.unwrap().expect_err("rewritten");
        assert_eq!(e.code(), "source_changed");
        assert!(
            e.to_string().contains("written to while it was read"),
            "{e}"
        );
    }
    /// `/proc/version` says it is empty and is not.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_longer_than_its_size_is_refused() {
        let path = std::path::PathBuf::from("/proc/version");
        let stamp = FileStamp::read(&path).unwrap();
        assert_eq!(stamp.size, 0, "the kernel reports no size");
        let layout = PartLayout::new(0, valet_protocol::MIN_PART_SIZE).unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let reader = tokio::task::spawn_blocking(move || {
            read_parts(
                &path,
                &stamp,
                &layout,
                Arc::new(Semaphore::new(1)),
                tx,
                |_| {},
            )
        });
        while rx.recv().await.is_some() {}
        let e = reader.await.unwrap().expect_err("not the whole file");
        assert_eq!(e.code(), "source_changed");
        assert!(e.to_string().contains("more than the 0 bytes"), "{e}");
    }
}
