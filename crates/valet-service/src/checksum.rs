//! SHA-256 digests as S3 and the protocol carry them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

/// Decodes a part digest as sent in a key request: standard base64 of exactly 32 bytes.
pub fn decode_part_sha256(b64: &str) -> Option<[u8; 32]> {
    let bytes = STANDARD.decode(b64).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// Standard base64 decoded, for the digests key requests carry.
pub fn decode_base64(b64: &str) -> Option<Vec<u8>> {
    STANDARD.decode(b64).ok()
}

/// Whether `hex` is a lowercase hex SHA-256 (64 characters), as the client reports a file's.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The checksum S3 reports for a multipart object created with `x-amz-checksum-algorithm:
/// SHA256` (composite type): base64 of the SHA-256 of the concatenated raw part digests, then
/// `-` and the part count. See "Checking object integrity" in the S3 user guide, "Using part-level
/// checksums for multipart uploads".
pub fn composite_sha256(part_digests: &[[u8; 32]]) -> String {
    let mut outer = Sha256::new();
    for digest in part_digests {
        outer.update(digest);
    }
    let outer: [u8; 32] = outer.finalize().into();
    format!("{}-{}", STANDARD.encode(outer), part_digests.len())
}

/// Lowercase hex of a digest.
pub fn to_hex(digest: &[u8; 32]) -> String {
    hex::encode(digest)
}

/// Standard base64 of a digest.
pub fn to_base64(digest: &[u8; 32]) -> String {
    STANDARD.encode(digest)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_checksum_is_the_digest_of_part_digests() {
        let parts = [sha256(b"first part"), sha256(b"second")];
        let mut concatenated = Vec::new();
        concatenated.extend_from_slice(&parts[0]);
        concatenated.extend_from_slice(&parts[1]);
        let expected = format!("{}-2", to_base64(&sha256(&concatenated)));
        assert_eq!(composite_sha256(&parts), expected);
        assert!(composite_sha256(&parts[..1]).ends_with("-1"));
    }

    #[test]
    fn composite_checksum_matches_an_independent_computation() {
        // Two 5 MiB parts, all 0x00 then all 0x01; the expected value was computed with
        // Python's hashlib, independently of this code.
        let a = sha256(&vec![0u8; 5 * 1024 * 1024]);
        let b = sha256(&vec![1u8; 5 * 1024 * 1024]);
        assert_eq!(
            composite_sha256(&[a, b]),
            "X2xVbDgfqxC4Crnz0iRiVdplfva7ILBOxgwkVgUO6Oc=-2"
        );
        assert_ne!(
            composite_sha256(&[b, a]),
            composite_sha256(&[a, b]),
            "part order matters"
        );
    }

    #[test]
    fn part_digests_must_be_32_bytes_of_standard_base64() {
        let good = to_base64(&sha256(b"x"));
        assert_eq!(decode_part_sha256(&good), Some(sha256(b"x")));
        assert_eq!(decode_part_sha256("AAAA"), None, "too short");
        assert_eq!(decode_part_sha256("not base64!"), None);
        let url_safe = good.replace('+', "-").replace('/', "_");
        if url_safe != good {
            assert_eq!(decode_part_sha256(&url_safe), None);
        }
    }

    #[test]
    fn file_digests_are_lowercase_hex() {
        assert!(is_sha256_hex(&to_hex(&sha256(b""))));
        assert!(!is_sha256_hex(&to_hex(&sha256(b"")).to_uppercase()));
        assert!(!is_sha256_hex("abc"));
    }
}
