//! Two SHA-256 digests of the same bytes in one pass: the whole file's and the part's.
//!
//! SHA-NI runs one SHA-256 at the speed its round instruction's latency allows, which leaves the
//! core idle half the time; two independent digests interleaved fill it, so both cost about as
//! much as one. Without SHA-NI each digest is computed on its own by `sha2`.

use sha2::block_api::compress256;

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// A running SHA-256: the state, the bytes short of a block, the length so far.
#[derive(Clone)]
pub(crate) struct Sha256 {
    state: [u32; 8],
    pending: [u8; 64],
    pending_len: usize,
    len: u64,
}

impl Sha256 {
    pub(crate) fn new() -> Self {
        Self {
            state: INITIAL,
            pending: [0; 64],
            pending_len: 0,
            len: 0,
        }
    }

    /// Tops up the pending block from `data` (compressing it once full); the rest of `data`.
    fn fill<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        self.len += data.len() as u64;
        if self.pending_len == 0 {
            return data;
        }
        let take = (64 - self.pending_len).min(data.len());
        self.pending[self.pending_len..][..take].copy_from_slice(&data[..take]);
        self.pending_len += take;
        if self.pending_len == 64 {
            compress256(&mut self.state, &[self.pending]);
            self.pending_len = 0;
        }
        &data[take..]
    }

    /// Keeps the bytes short of a block left after `fill` and the whole blocks, for the next
    /// update. Bytes are left only when `fill` completed the pending block.
    fn keep(&mut self, tail: &[u8]) {
        if tail.is_empty() {
            return;
        }
        debug_assert!(self.pending_len == 0 && tail.len() < 64);
        self.pending[..tail.len()].copy_from_slice(tail);
        self.pending_len = tail.len();
    }

    pub(crate) fn finalize(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut last = [0u8; 128];
        last[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
        last[self.pending_len] = 0x80;
        let blocks = if self.pending_len < 56 { 1 } else { 2 };
        last[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits.to_be_bytes());
        let (full, _) = last[..blocks * 64].as_chunks::<64>();
        compress256(&mut self.state, full);
        let mut out = [0u8; 32];
        for (word, bytes) in self.state.iter().zip(out.chunks_exact_mut(4)) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// Feeds `data` to both `a` and `b`.
pub(crate) fn update_both(a: &mut Sha256, b: &mut Sha256, data: &[u8]) {
    let rest_a = a.fill(data);
    let rest_b = b.fill(data);
    let (blocks_a, tail_a) = rest_a.as_chunks::<64>();
    let (blocks_b, tail_b) = rest_b.as_chunks::<64>();
    let both = blocks_a.len().min(blocks_b.len());
    compress_both(
        &mut a.state,
        &mut b.state,
        &blocks_a[..both],
        &blocks_b[..both],
    );
    compress256(&mut a.state, &blocks_a[both..]);
    compress256(&mut b.state, &blocks_b[both..]);
    a.keep(tail_a);
    b.keep(tail_b);
}

fn compress_both(a: &mut [u32; 8], b: &mut [u32; 8], blocks_a: &[[u8; 64]], blocks_b: &[[u8; 64]]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sha")
        && std::arch::is_x86_feature_detected!("sse4.1")
        && std::arch::is_x86_feature_detected!("ssse3")
    {
        // SAFETY: the CPU has the features the function is compiled for (checked above).
        unsafe { shani::compress_both(a, b, blocks_a, blocks_b) };
        return;
    }
    compress256(a, blocks_a);
    compress256(b, blocks_b);
}

/// The SHA-NI block function of `sha2` (its `x86_sha` backend), run on two states at once.
#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::*;

    /// FIPS 180-4 §4.2.2.
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// One state in SHA-NI's register order.
    struct Lane {
        abef: __m128i,
        cdgh: __m128i,
    }

    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn load(state: &[u32; 8]) -> Lane {
        let [dcba, hgfe]: [__m128i; 2] = core::array::from_fn(|i| {
            _mm_set_epi32(
                state[4 * i + 3] as i32,
                state[4 * i + 2] as i32,
                state[4 * i + 1] as i32,
                state[4 * i] as i32,
            )
        });
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
        Lane {
            abef: _mm_alignr_epi8(cdab, efgh, 8),
            cdgh: _mm_blend_epi16(efgh, cdab, 0xF0),
        }
    }

    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn store(lane: &Lane, state: &mut [u32; 8]) {
        let feba = _mm_shuffle_epi32(lane.abef, 0x1B);
        let dchg = _mm_shuffle_epi32(lane.cdgh, 0xB1);
        let halves = [
            _mm_blend_epi16(feba, dchg, 0xF0),
            _mm_alignr_epi8(dchg, feba, 8),
        ];
        for (i, half) in halves.into_iter().enumerate() {
            state[4 * i] = _mm_extract_epi32(half, 0) as u32;
            state[4 * i + 1] = _mm_extract_epi32(half, 1) as u32;
            state[4 * i + 2] = _mm_extract_epi32(half, 2) as u32;
            state[4 * i + 3] = _mm_extract_epi32(half, 3) as u32;
        }
    }

    /// The block's 16 words, big-endian.
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn words(block: &[u8; 64]) -> [__m128i; 4] {
        let swap = _mm_set_epi64x(0x0C0D_0E0F_0809_0A0B, 0x0405_0607_0001_0203);
        core::array::from_fn(|i| {
            let bytes: [u8; 16] = block[16 * i..][..16].try_into().expect("16 bytes");
            // SAFETY: `bytes` is 16 readable bytes; the load takes any alignment.
            let w = unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) };
            _mm_shuffle_epi8(w, swap)
        })
    }

    /// Four rounds, `r` to `r + 3`, with their scheduled words `w`.
    #[inline]
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn rounds4(lane: &mut Lane, r: usize, w: __m128i) {
        let k = _mm_set_epi32(
            K[4 * r + 3] as i32,
            K[4 * r + 2] as i32,
            K[4 * r + 1] as i32,
            K[4 * r] as i32,
        );
        let t1 = _mm_add_epi32(w, k);
        lane.cdgh = _mm_sha256rnds2_epu32(lane.cdgh, lane.abef, t1);
        let t2 = _mm_shuffle_epi32(t1, 0x0E);
        lane.abef = _mm_sha256rnds2_epu32(lane.abef, lane.cdgh, t2);
    }

    /// The next four message words in `w[i]`.
    #[inline]
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn schedule(w: &mut [__m128i; 4], i: usize) {
        let t1 = _mm_sha256msg1_epu32(w[i], w[(i + 1) % 4]);
        let t2 = _mm_alignr_epi8(w[(i + 3) % 4], w[(i + 2) % 4], 4);
        w[i] = _mm_sha256msg2_epu32(_mm_add_epi32(t1, t2), w[(i + 3) % 4]);
    }

    /// `a` over `blocks_a` and `b` over `blocks_b` (as many), each round of one lane next to the
    /// same round of the other.
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    pub(super) fn compress_both(
        a: &mut [u32; 8],
        b: &mut [u32; 8],
        blocks_a: &[[u8; 64]],
        blocks_b: &[[u8; 64]],
    ) {
        debug_assert_eq!(blocks_a.len(), blocks_b.len());
        let mut x = load(a);
        let mut y = load(b);
        for (block_a, block_b) in blocks_a.iter().zip(blocks_b) {
            let (x_abef, x_cdgh, y_abef, y_cdgh) = (x.abef, x.cdgh, y.abef, y.cdgh);
            let mut wx = words(block_a);
            let mut wy = words(block_b);
            for i in 0..4 {
                rounds4(&mut x, i, wx[i]);
                rounds4(&mut y, i, wy[i]);
            }
            for r in (4..16).step_by(4) {
                for i in 0..4 {
                    schedule(&mut wx, i);
                    schedule(&mut wy, i);
                    rounds4(&mut x, r + i, wx[i]);
                    rounds4(&mut y, r + i, wy[i]);
                }
            }
            x.abef = _mm_add_epi32(x.abef, x_abef);
            x.cdgh = _mm_add_epi32(x.cdgh, x_cdgh);
            y.abef = _mm_add_epi32(y.abef, y_abef);
            y.cdgh = _mm_add_epi32(y.cdgh, y_cdgh);
        }
        store(&x, a);
        store(&y, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn reference(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    #[test]
    fn both_digests_match_sha2_for_any_length_and_split() {
        let data: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        // Whole stream across "parts" of awkward sizes; each part also on its own.
        for part in [
            1usize, 55, 56, 63, 64, 65, 127, 128, 1000, 4096, 6999, 20_000,
        ] {
            let mut whole = Sha256::new();
            for chunk in data.chunks(part) {
                let mut one = Sha256::new();
                // The part fed in two uneven pieces, as reads may return.
                let (first, second) = chunk.split_at(chunk.len() / 3);
                update_both(&mut whole, &mut one, first);
                update_both(&mut whole, &mut one, second);
                assert_eq!(one.finalize(), reference(chunk), "part of {part}");
            }
            assert_eq!(
                whole.finalize(),
                reference(&data),
                "whole in parts of {part}"
            );
        }
        assert_eq!(Sha256::new().finalize(), reference(b""));
    }
}
