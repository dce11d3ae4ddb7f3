//! How a file is cut into parts. The client names the part size it prefers; the service, which
//! knows the store, chooses the layout within that store's [`StoreLimits`] and answers it; the
//! client follows the answer and checks it against the limits of the store kind it names.

use serde::{Deserialize, Serialize};

use crate::StoreKind;

/// 1 MiB.
pub const MIB: u64 = 1024 * 1024;
/// The smallest part S3 accepts, except the last one (S3 `EntityTooSmall` below it).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// The largest part on any store: S3's limit, and the most one part buffer of the client holds.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// The most parts one S3 multipart upload may have.
pub const MAX_PARTS: u32 = 10_000;
/// The largest object the service takes, on every store: 5 TiB (S3's and GCS's largest object).
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;
/// The most part keys one `POST /v1/uploads/{id}/keys` may ask for.
pub const MAX_KEYS_PER_REQUEST: usize = 100;
/// Part size the client prefers unless told otherwise: memory in use is about this times the
/// parts in flight, and a lost connection re-sends at most this much per part.
pub const DEFAULT_PART_SIZE: u64 = 8 * MIB;

/// What one store takes in one upload: how small and how large a part may be, and how many
/// parts there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes in the smallest part but the last.
    pub min_part_size: u64,
    /// Bytes in the largest part.
    pub max_part_size: u64,
    /// Parts in one upload.
    pub max_parts: u32,
}

impl StoreLimits {
    /// S3 multipart upload: parts of 5 MiB (but the last) to 5 GiB, at most 10,000 (Amazon S3
    /// User Guide, "Amazon S3 multipart upload limits").
    pub const S3: Self = Self {
        min_part_size: MIN_PART_SIZE,
        max_part_size: MAX_PART_SIZE,
        max_parts: MAX_PARTS,
    };
    /// Azure block blob: at most 50,000 blocks of at most 4000 MiB (Put Block, service version
    /// 2019-12-12 and later). Azure has no smallest block; the 1 MiB floor is ours: smaller
    /// parts cost a key and a request each and buy nothing.
    pub const AZURE: Self = Self {
        min_part_size: MIB,
        max_part_size: 4000 * MIB,
        max_parts: 50_000,
    };
    /// GCS parallel composite upload: a composite object has at most 1024 components (Cloud
    /// Storage docs, "Composite objects"), so an upload has at most 1024 parts. A part is an
    /// ordinary object: no smallest size (the 1 MiB floor is ours, as for Azure), and the
    /// largest is ours too, one part buffer: 1024 parts of 5 GiB make the 5 TiB
    /// [`MAX_OBJECT_SIZE`].
    pub const GCS: Self = Self {
        min_part_size: MIB,
        max_part_size: MAX_PART_SIZE,
        max_parts: 1024,
    };
    /// The loosest of all stores: a layout outside it fits none. What a layout read back from
    /// a journal, before its store is known, must at least satisfy.
    pub const ANY_STORE: Self = Self {
        min_part_size: MIB,
        max_part_size: MAX_PART_SIZE,
        max_parts: 50_000,
    };

    /// The limits of stores of `kind`.
    pub fn of(kind: StoreKind) -> Self {
        match kind {
            StoreKind::S3 => Self::S3,
            StoreKind::Azure => Self::AZURE,
            StoreKind::Gcs => Self::GCS,
        }
    }

    /// The largest file these limits take: [`max_parts`](Self::max_parts) parts of
    /// [`max_part_size`](Self::max_part_size) bytes, and never more than [`MAX_OBJECT_SIZE`].
    pub fn max_size(&self) -> u64 {
        u64::from(self.max_parts)
            .saturating_mul(self.max_part_size)
            .min(MAX_OBJECT_SIZE)
    }

    /// The part size for a file of `size` bytes, from the `preferred` one.
    ///
    /// Memory in use is about part size × parts in flight, and a part lost to a broken
    /// connection is sent again whole, so the preference is kept whenever the file fits it:
    /// it is raised to the store's smallest part, lowered to its largest, and raised further,
    /// to whole MiB, only as far as the file needs to fit in the store's most parts. With the
    /// 8 MiB default, S3 keeps 8 MiB parts up to 78 GiB and a 5 TiB file gets 525 MiB parts;
    /// GCS keeps them up to 8 GiB and a 5 TiB file gets 5 GiB parts.
    ///
    /// Fails only when no part size fits: the file is larger than [`Self::max_size`].
    pub fn choose_part_size(&self, size: u64, preferred: u64) -> Result<u64, LayoutError> {
        if size > self.max_size() {
            return Err(LayoutError::TooLarge {
                size,
                max: self.max_size(),
            });
        }
        // At most max_part_size, since size <= max_parts × max_part_size.
        let least = size.div_ceil(u64::from(self.max_parts.max(1)));
        let least_whole_mib = (least.div_ceil(MIB) * MIB).min(self.max_part_size);
        Ok(preferred
            .clamp(self.min_part_size, self.max_part_size)
            .max(least_whole_mib))
    }

    /// The layout for a file of `size` bytes with the part size
    /// [`choose_part_size`](Self::choose_part_size) picks from `preferred`.
    pub fn choose_layout(&self, size: u64, preferred: u64) -> Result<PartLayout, LayoutError> {
        self.check(size, self.choose_part_size(size, preferred)?)
    }

    /// Checks a layout chosen elsewhere: parts of `part_size` for a file of `size` bytes.
    pub fn check(&self, size: u64, part_size: u64) -> Result<PartLayout, LayoutError> {
        if size > self.max_size() {
            return Err(LayoutError::TooLarge {
                size,
                max: self.max_size(),
            });
        }
        if !(self.min_part_size..=self.max_part_size).contains(&part_size) {
            return Err(LayoutError::PartSize {
                part_size,
                min: self.min_part_size,
                max: self.max_part_size,
            });
        }
        if size.div_ceil(part_size) > u64::from(self.max_parts) {
            return Err(LayoutError::TooManyParts {
                size,
                part_size,
                max_parts: self.max_parts,
            });
        }
        Ok(PartLayout {
            size,
            part_size,
            part_count: part_count(size, part_size),
        })
    }
}

/// Parts needed for `size` bytes in parts of `part_size`. An empty file is one empty part, so
/// every upload, whatever its size, is the same multipart sequence.
pub fn part_count(size: u64, part_size: u64) -> u32 {
    if size == 0 {
        return 1;
    }
    // Checked by `StoreLimits::check`; saturate rather than wrap if called with nonsense.
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
    /// The file is larger than the store takes in one upload (whatever the part size).
    #[error("file of {size} bytes is larger than the {max} bytes this store takes in one upload")]
    TooLarge {
        /// Bytes in the file.
        size: u64,
        /// The most the store takes.
        max: u64,
    },
    /// The part size is outside the store's limits.
    #[error("part size {part_size} is outside this store's {min}..={max} bytes")]
    PartSize {
        /// The refused part size.
        part_size: u64,
        /// The store's smallest part (but the last).
        min: u64,
        /// The store's largest part.
        max: u64,
    },
    /// The file would need more parts than the store allows.
    #[error(
        "{size} bytes in parts of {part_size} would need more than this store's {max_parts} parts"
    )]
    TooManyParts {
        /// Bytes in the file.
        size: u64,
        /// The part size asked for.
        part_size: u64,
        /// The store's most parts.
        max_parts: u32,
    },
}

impl PartLayout {
    /// Checks `part_size` for a file of `size` bytes against the loosest limits of any store
    /// ([`StoreLimits::ANY_STORE`]); a store's own limits are [`StoreLimits::check`].
    pub fn new(size: u64, part_size: u64) -> Result<Self, LayoutError> {
        StoreLimits::ANY_STORE.check(size, part_size)
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

    const GIB: u64 = 1024 * MIB;
    const TIB: u64 = 1024 * GIB;
    const STORES: [(&str, StoreLimits); 3] = [
        ("s3", StoreLimits::S3),
        ("azure", StoreLimits::AZURE),
        ("gcs", StoreLimits::GCS),
    ];

    #[test]
    fn small_files_keep_the_preferred_part_size() {
        for (name, limits) in STORES {
            for size in [0, 1, 4 * GIB] {
                assert_eq!(
                    limits.choose_part_size(size, DEFAULT_PART_SIZE),
                    Ok(DEFAULT_PART_SIZE),
                    "{name}: {size} bytes"
                );
            }
        }
    }

    #[test]
    fn an_empty_file_is_one_empty_part_on_every_store() {
        for (name, limits) in STORES {
            let layout = limits.choose_layout(0, DEFAULT_PART_SIZE).unwrap();
            assert_eq!(layout.part_count, 1, "{name}");
            assert_eq!(layout.part_range(1), Some((0, 0)), "{name}");
        }
    }

    #[test]
    fn a_preference_outside_the_store_is_moved_inside_it() {
        assert_eq!(
            StoreLimits::S3.choose_part_size(1, MIB),
            Ok(MIN_PART_SIZE),
            "raised to S3's 5 MiB"
        );
        assert_eq!(
            StoreLimits::GCS.choose_part_size(40 * MIB, MIB),
            Ok(MIB),
            "GCS takes 1 MiB parts"
        );
        assert_eq!(StoreLimits::GCS.choose_part_size(1, 0), Ok(MIB));
        assert_eq!(
            StoreLimits::AZURE.choose_part_size(10 * GIB, 5 * GIB),
            Ok(4000 * MIB),
            "lowered to Azure's largest block"
        );
    }

    /// At exactly max_parts × preferred the preference holds; one byte more and the part
    /// grows by the least whole MiB that fits.
    #[test]
    fn parts_grow_at_exactly_one_byte_over_the_part_count() {
        // (store, bytes per part once grown, parts then)
        let cases = [
            (StoreLimits::S3, 9 * MIB, 8889),
            (StoreLimits::AZURE, 9 * MIB, 44_445),
            (StoreLimits::GCS, 9 * MIB, 911),
        ];
        for (limits, grown, parts) in cases {
            let at_limit = u64::from(limits.max_parts) * DEFAULT_PART_SIZE;
            let layout = limits.choose_layout(at_limit, DEFAULT_PART_SIZE).unwrap();
            assert_eq!(
                (layout.part_size, layout.part_count),
                (DEFAULT_PART_SIZE, limits.max_parts),
                "{limits:?}: exactly the limit"
            );
            let layout = limits
                .choose_layout(at_limit + 1, DEFAULT_PART_SIZE)
                .unwrap();
            assert_eq!(
                (layout.part_size, layout.part_count),
                (grown, parts),
                "{limits:?}: one byte over"
            );
        }
    }

    #[test]
    fn five_tib_fits_every_store_and_one_byte_more_none() {
        let cases = [
            (StoreLimits::S3, 525 * MIB, 9987),
            (StoreLimits::AZURE, 105 * MIB, 49_933),
            (StoreLimits::GCS, 5 * GIB, 1024),
        ];
        assert_eq!(MAX_OBJECT_SIZE, 5 * TIB);
        for (limits, part_size, parts) in cases {
            let layout = limits
                .choose_layout(MAX_OBJECT_SIZE, DEFAULT_PART_SIZE)
                .unwrap();
            assert_eq!(
                (layout.part_size, layout.part_count),
                (part_size, parts),
                "{limits:?}"
            );
            assert_eq!(
                limits.choose_part_size(MAX_OBJECT_SIZE + 1, DEFAULT_PART_SIZE),
                Err(LayoutError::TooLarge {
                    size: MAX_OBJECT_SIZE + 1,
                    max: MAX_OBJECT_SIZE
                }),
                "{limits:?}"
            );
        }
    }

    /// A deployment may allow fewer parts than its store (`max_parts` in its config): the
    /// same rule, a lower count.
    #[test]
    fn fewer_parts_allowed_means_larger_parts() {
        let limits = StoreLimits {
            max_parts: 16,
            ..StoreLimits::GCS
        };
        let layout = limits.choose_layout(40 * MIB, MIB).unwrap();
        assert_eq!((layout.part_size, layout.part_count), (3 * MIB, 14));
        assert_eq!(limits.max_size(), 80 * GIB);
        assert!(
            limits.choose_layout(80 * GIB, MIB).is_ok(),
            "exactly the limit"
        );
        assert_eq!(
            limits.choose_layout(80 * GIB + 1, MIB),
            Err(LayoutError::TooLarge {
                size: 80 * GIB + 1,
                max: 80 * GIB
            })
        );
    }

    /// Whatever the size and preference, the chosen layout passes the store's own check,
    /// covers the file, and keeps the preference unless the file cannot fit it.
    #[test]
    fn every_chosen_layout_fits_its_store() {
        let mut size = 1u64;
        let mut sizes = vec![0];
        while size <= MAX_OBJECT_SIZE {
            sizes.extend([size - 1, size, size + 1, size / 3 * 2 + 7]);
            size = size * 3 + 1;
        }
        sizes.push(MAX_OBJECT_SIZE);
        for (name, limits) in STORES {
            for &size in &sizes {
                for preferred in [0, 1, MIB, MIN_PART_SIZE + 1, DEFAULT_PART_SIZE, 6 * GIB] {
                    let layout = limits
                        .choose_layout(size, preferred)
                        .unwrap_or_else(|e| panic!("{name}: {size} / {preferred}: {e}"));
                    assert!(layout.part_count <= limits.max_parts, "{name}: {layout:?}");
                    let (offset, len) = layout.part_range(layout.part_count).unwrap();
                    assert_eq!(offset + len, size, "{name}: the parts cover the file");
                    let kept = preferred.clamp(limits.min_part_size, limits.max_part_size);
                    if size.div_ceil(kept) <= u64::from(limits.max_parts) {
                        assert_eq!(layout.part_size, kept, "{name}: {size} keeps {preferred}");
                    } else {
                        assert!(layout.part_size > kept, "{name}: {size} grows {preferred}");
                        assert!(
                            size.div_ceil(layout.part_size - MIB) > u64::from(limits.max_parts),
                            "{name}: {size}: grown by no more than a MiB past need ({layout:?})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn any_store_is_the_loosest_of_all() {
        for (name, limits) in STORES {
            let any = StoreLimits::ANY_STORE;
            assert!(any.min_part_size <= limits.min_part_size, "{name}");
            assert!(any.max_part_size >= limits.max_part_size, "{name}");
            assert!(any.max_parts >= limits.max_parts, "{name}");
        }
        assert_eq!(StoreLimits::of(StoreKind::Gcs), StoreLimits::GCS);
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
    fn bad_layouts_are_refused() {
        assert!(matches!(
            StoreLimits::S3.check(1, MIB),
            Err(LayoutError::PartSize { .. })
        ));
        assert!(StoreLimits::GCS.check(1, MIB).is_ok());
        assert!(matches!(
            StoreLimits::S3.check(MAX_PARTS as u64 * MIN_PART_SIZE + 1, MIN_PART_SIZE),
            Err(LayoutError::TooManyParts { .. })
        ));
        assert!(matches!(
            StoreLimits::GCS.check(1024 * MIB + 1, MIB),
            Err(LayoutError::TooManyParts {
                max_parts: 1024,
                ..
            })
        ));
        assert!(matches!(
            PartLayout::new(MAX_OBJECT_SIZE + 1, MAX_PART_SIZE),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(matches!(
            PartLayout::new(1, MAX_PART_SIZE + 1),
            Err(LayoutError::PartSize { .. })
        ));
    }
}
