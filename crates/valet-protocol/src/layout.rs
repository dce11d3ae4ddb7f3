//! How a file is cut into parts. Both sides apply these rules: the client picks the part size,
//! the service checks it before it creates the upload on the store.

use serde::{Deserialize, Serialize};

/// 1 MiB.
pub const MIB: u64 = 1024 * 1024;
/// The smallest part S3 accepts, except the last one (S3 `EntityTooSmall` below it).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// The most parts one S3 multipart upload may have.
pub const MAX_PARTS: u32 = 10_000;
/// The largest object S3 stores: 5 TiB.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;
/// The most part keys one `POST /v1/uploads/{id}/keys` may ask for.
pub const MAX_KEYS_PER_REQUEST: usize = 100;
/// Part size the client uses when the file is small enough: memory in use is about this times
/// the parts in flight, and a lost connection re-sends at most this much per part.
pub const DEFAULT_PART_SIZE: u64 = 8 * MIB;

/// The part size for a file of `size` bytes: `preferred` (clamped to S3's limits), grown in
/// whole MiB only when the file would otherwise need more than [`MAX_PARTS`] parts.
///
/// With the 8 MiB default, files up to 78 GiB keep 8 MiB parts; a 5 TiB file gets 525 MiB parts.
pub fn choose_part_size(size: u64, preferred: u64) -> u64 {
    let smallest_that_fits = size.div_ceil(u64::from(MAX_PARTS)).div_ceil(MIB) * MIB;
    preferred
        .max(smallest_that_fits)
        .clamp(MIN_PART_SIZE, MAX_PART_SIZE)
}

/// Parts needed for `size` bytes in parts of `part_size`. An empty file is one empty part, so
/// every upload, whatever its size, is the same multipart sequence.
pub fn part_count(size: u64, part_size: u64) -> u32 {
    if size == 0 {
        return 1;
    }
    // Checked by `PartLayout::new`; saturate rather than wrap if called with nonsense.
    u32::try_from(size.div_ceil(part_size.max(1))).unwrap_or(u32::MAX)
}

/// A checked part layout: which byte range each part number covers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartLayout {
    /// Bytes in the whole file.
    pub size: u64,
    /// Bytes in every part but the last.
    pub part_size: u64,
    /// Number of parts, numbered 1..=part_count.
    pub part_count: u32,
}

/// Why a layout is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The file is larger than any store accepts.
    #[error("file of {size} bytes is larger than the {MAX_OBJECT_SIZE}-byte maximum object size")]
    TooLarge {
        /// Bytes in the file.
        size: u64,
    },
    /// The part size is outside S3's limits.
    #[error("part size {part_size} is outside {MIN_PART_SIZE}..={MAX_PART_SIZE} bytes")]
    PartSize {
        /// The refused part size.
        part_size: u64,
    },
    /// The file would need more parts than S3 allows.
    #[error("{size} bytes in parts of {part_size} would need more than {MAX_PARTS} parts")]
    TooManyParts {
        /// Bytes in the file.
        size: u64,
        /// The part size asked for.
        part_size: u64,
    },
}

impl PartLayout {
    /// Checks `part_size` for a file of `size` bytes against the store limits.
    pub fn new(size: u64, part_size: u64) -> Result<Self, LayoutError> {
        if size > MAX_OBJECT_SIZE {
            return Err(LayoutError::TooLarge { size });
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(LayoutError::PartSize { part_size });
        }
        if size.div_ceil(part_size) > u64::from(MAX_PARTS) {
            return Err(LayoutError::TooManyParts { size, part_size });
        }
        Ok(Self {
            size,
            part_size,
            part_count: part_count(size, part_size),
        })
    }

    /// Byte offset and length of part `number` (1-based), or `None` outside 1..=part_count.
    pub fn part_range(&self, number: u32) -> Option<(u64, u64)> {
        if number == 0 || number > self.part_count {
            return None;
        }
        let offset = u64::from(number - 1) * self.part_size;
        Some((offset, self.part_size.min(self.size - offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_keep_the_preferred_part_size() {
        assert_eq!(choose_part_size(0, DEFAULT_PART_SIZE), DEFAULT_PART_SIZE);
        assert_eq!(
            choose_part_size(4 << 30, DEFAULT_PART_SIZE),
            DEFAULT_PART_SIZE
        );
        assert_eq!(
            choose_part_size(1, MIB),
            MIN_PART_SIZE,
            "clamped up to S3's minimum"
        );
    }

    #[test]
    fn huge_files_grow_parts_to_stay_within_the_part_count() {
        for size in [78 << 30, 100 << 30, 1 << 40, MAX_OBJECT_SIZE] {
            let part_size = choose_part_size(size, DEFAULT_PART_SIZE);
            let layout = PartLayout::new(size, part_size).expect("chosen sizes are valid");
            assert!(
                layout.part_count <= MAX_PARTS,
                "{size}: {} parts",
                layout.part_count
            );
            assert_eq!(part_size % MIB, 0);
        }
    }

    #[test]
    fn ranges_cover_the_file_exactly() {
        let layout = PartLayout::new(2 * MIN_PART_SIZE + 1, MIN_PART_SIZE).unwrap();
        assert_eq!(layout.part_count, 3);
        assert_eq!(layout.part_range(1), Some((0, MIN_PART_SIZE)));
        assert_eq!(layout.part_range(3), Some((2 * MIN_PART_SIZE, 1)));
        assert_eq!(layout.part_range(0), None);
        assert_eq!(layout.part_range(4), None);
    }

    #[test]
    fn empty_file_is_one_empty_part() {
        let layout = PartLayout::new(0, MIN_PART_SIZE).unwrap();
        assert_eq!(layout.part_count, 1);
        assert_eq!(layout.part_range(1), Some((0, 0)));
    }

    #[test]
    fn bad_layouts_are_refused() {
        assert!(matches!(
            PartLayout::new(1, MIB),
            Err(LayoutError::PartSize { .. })
        ));
        assert!(matches!(
            PartLayout::new(MAX_PARTS as u64 * MIN_PART_SIZE + 1, MIN_PART_SIZE),
            Err(LayoutError::TooManyParts { .. })
        ));
        assert!(matches!(
            PartLayout::new(MAX_OBJECT_SIZE + 1, MAX_PART_SIZE),
            Err(LayoutError::TooLarge { .. })
        ));
    }
}
