//! What the engine reports while it works. The engine never prints: a shell (the CLI's progress
//! bars, the desktop app's UI events) turns these into something a person sees.

use std::path::PathBuf;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// One thing that happened to one upload. `upload` is the journal's id of the upload
/// ([`crate::JournalEntry::id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An upload started (or resumed) on the service.
    Started {
        /// Journal id.
        upload: i64,
        /// The file.
        path: PathBuf,
        /// Bytes in the file.
        size: u64,
        /// Parts in the layout.
        part_count: u32,
        /// Bytes the store already holds from an earlier run (not sent again).
        already_stored: u64,
        /// Whether an earlier run of this upload is being continued.
        resumed: bool,
    },
    /// The service chose another part size than the one asked for, to fit the store's limits
    /// (sent before [`Event::Started`] of a new upload). Memory in use follows the part size.
    PartSizeChanged {
        /// Journal id.
        upload: i64,
        /// The file.
        path: PathBuf,
        /// The part size asked for (`--part-size`, or the default).
        asked: u64,
        /// The part size the upload uses.
        chosen: u64,
        /// Parts in the layout.
        part_count: u32,
        /// Why, for a person: which limit of the store moved it.
        reason: String,
    },
    /// The whole-file hash has covered this many bytes (one pass over the file, in order).
    Hashing {
        /// Journal id.
        upload: i64,
        /// Bytes read and hashed so far.
        bytes_hashed: u64,
    },
    /// Body bytes went to the store (counted as they are handed to the connection; retries
    /// included).
    PartSent {
        /// Journal id.
        upload: i64,
        /// Part number.
        part: u32,
        /// Bytes in this step.
        bytes: u64,
    },
    /// An attempt to send a part failed and the part will be sent again; `resent` bytes already
    /// reported by [`Event::PartSent`] for that attempt will be sent once more.
    PartRetry {
        /// Journal id.
        upload: i64,
        /// Part number.
        part: u32,
        /// Attempts so far.
        attempt: u32,
        /// Why (status or transport error; never a URL query).
        reason: String,
        /// Bytes of the failed attempt.
        resent: u64,
    },
    /// A part got a new key (the old one was about to expire, or had).
    KeyRenewed {
        /// Journal id.
        upload: i64,
        /// Part number.
        part: u32,
    },
    /// The store accepted a part and its receipt is journaled.
    PartDone {
        /// Journal id.
        upload: i64,
        /// Part number.
        part: u32,
        /// Bytes in the part.
        size: u64,
    },
    /// Every part is stored; the service is checking them and completing the object.
    Verifying {
        /// Journal id.
        upload: i64,
    },
    /// The service verified the object.
    Verified {
        /// Journal id.
        upload: i64,
        /// Where the object is.
        object_key: String,
        /// Whole-file SHA-256, hex.
        sha256: String,
    },
    /// The upload failed.
    Failed {
        /// Journal id.
        upload: i64,
        /// [`crate::Error::code`].
        code: &'static str,
        /// What happened.
        message: String,
    },
}

/// Where events go: nowhere, or into a channel the shell reads. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Events {
    tx: Option<UnboundedSender<Event>>,
}

impl Events {
    /// Events are dropped.
    pub fn none() -> Self {
        Self::default()
    }

    /// Events go into the returned receiver. Sending never blocks the engine; a receiver that
    /// was dropped just stops receiving.
    pub fn channel() -> (Self, UnboundedReceiver<Event>) {
        let (tx, rx) = unbounded_channel();
        (Self { tx: Some(tx) }, rx)
    }

    pub(crate) fn emit(&self, event: Event) {
        if let Some(tx) = &self.tx {
            let _receiver_gone = tx.send(event);
        }
    }
}
