//! Files handed in by a folder watch: where a [`ReadyFile`] goes in the list, so that each
//! watched file has one row whose result is reported back to its watch.

use super::{Table, TransferId, TransferState};
use crate::watch::ReadyFile;

/// What [`Table::take_ready`] did with a watched file.
#[derive(Debug)]
pub(crate) enum Taken {
    /// In the list under this row: a new row, the row already waiting or uploading it, or its
    /// failed or cancelled row, queued again.
    Listed(TransferId),
    /// Not listed; the watch was told why and tries again later.
    Declined,
    /// Its last row was verified without a watch knowing (added by hand, or retried by the
    /// user after the watch was told it failed): the caller asks the journal whether this
    /// version is stored already, and if not calls [`Table::push_ready`].
    Check(ReadyFile),
}

impl Table {
    /// Takes a complete file from a folder watch.
    ///
    /// - Not in the list: a new row.
    /// - Waiting, uploading or paused to the same store folder: that row carries the file's
    ///   handle from now on (one upload, reported to the watch).
    /// - Waiting or uploading to another folder (added by hand): declined with the code
    ///   `already_listed`, which the watch tries again later.
    /// - Failed or cancelled: that row is queued again (the watch's retry is the row's).
    /// - Verified and reported to a watch: a new version, a new row. Verified behind the
    ///   watch's back: [`Taken::Check`].
    pub(crate) fn take_ready(&mut self, file: ReadyFile) -> Taken {
        let Some(&id) = self.latest.get(&file.path) else {
            return Taken::Listed(self.push_ready(file));
        };
        let Some(row) = self.rows.get_mut(&id) else {
            return Taken::Listed(self.push_ready(file));
        };
        if self.listed.contains(&file.path) {
            if row.transfer.prefix != file.prefix {
                let message = format!(
                    "{} is already uploading to another folder; tried again later",
                    file.path.display()
                );
                file.failed_as("already_listed", &message, true);
                return Taken::Declined;
            }
            // A handle held from a watch since restarted is dropped: that watch is gone.
            row.transfer.watched_folder = Some(file.root.clone());
            row.watch = Some(file);
            self.touch(id);
            return Taken::Listed(id);
        }
        match row.transfer.state {
            TransferState::Verified if !row.told_watch => Taken::Check(file),
            TransferState::Verified => Taken::Listed(self.push_ready(file)),
            _ => {
                row.transfer.prefix = file.prefix.clone();
                row.transfer.size = file.size;
                if self
                    .requeue(
                        id,
                        &[TransferState::Failed, TransferState::Cancelled],
                        false,
                    )
                    .is_err()
                {
                    return Taken::Listed(self.push_ready(file));
                }
                self.attach(id, file);
                Taken::Listed(id)
            }
        }
    }

    /// A new waiting row for a watched file.
    pub(crate) fn push_ready(&mut self, file: ReadyFile) -> TransferId {
        let id = self.push(file.path.clone(), file.size, file.prefix.clone());
        self.attach(id, file);
        id
    }

    fn attach(&mut self, id: TransferId, file: ReadyFile) {
        if let Some(row) = self.rows.get_mut(&id) {
            row.transfer.watched_folder = Some(file.root.clone());
            row.watch = Some(file);
        }
        self.touch(id);
    }
}
