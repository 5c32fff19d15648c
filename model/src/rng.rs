//! The model's only source of randomness: a seeded ChaCha20 generator.
//!
//! Token bytes, service ids, event ids, certificate serials and retry jitter all come from here,
//! so the same seed and the same inputs give the same outputs, byte for byte. ChaCha20 is a
//! cryptographically secure generator: a server seeds it with 32 bytes from the operating system
//! and its tokens cannot be predicted; a simulation seeds it from a printed `u64` and replays.

use base64::Engine as _;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// The 32-byte seed of the model's generator.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl From<u64> for Seed {
    /// Expands a small seed (simulation, tests) into a full one, as `seed_from_u64` does.
    fn from(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        Seed(bytes)
    }
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A production seed is a secret: tokens are derived from it.
        f.write_str("Seed(..)")
    }
}

/// A certificate serial number: big-endian bytes in lowercase hex.
///
/// Serials the model issues are 16 bytes whose first byte is in `0x01..=0x7f`, so the DER
/// encoding is exactly these bytes (positive, no leading zero) and the hex round-trips.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CertSerial(pub String);

impl CertSerial {
    /// The serial's bytes, as the shell puts them into the certificate.
    pub fn to_bytes(&self) -> Vec<u8> {
        (0..self.0.len() / 2)
            .filter_map(|i| u8::from_str_radix(&self.0[2 * i..2 * i + 2], 16).ok())
            .collect()
    }

    /// The serial of big-endian bytes read from a certificate.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        CertSerial(crate::hex::lower(bytes))
    }
}

/// The seeded generator.
#[derive(Clone, Debug)]
pub struct SeededRng(ChaCha20Rng);

impl SeededRng {
    /// A generator from a seed.
    pub fn new(seed: Seed) -> Self {
        SeededRng(ChaCha20Rng::from_seed(seed.0))
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill_bytes(buf);
    }

    /// A random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform value in `0..bound` (`0` when `bound` is `0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Rejection sampling keeps the distribution uniform.
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let v = self.0.next_u64();
            if v < zone {
                return v % bound;
            }
        }
    }

    /// A connector token: `len` random bytes in URL-safe base64 with padding, as Kyma's
    /// `base64.URLEncoding` (64 bytes give 88 characters ending in `==`).
    pub fn token(&mut self, len: usize) -> String {
        let mut bytes = vec![0u8; len];
        self.fill(&mut bytes);
        base64::engine::general_purpose::URL_SAFE.encode(bytes)
    }

    /// A random (version 4) UUID in its hyphenated lowercase form.
    pub fn uuid_v4(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.fill(&mut bytes);
        // Encoded into a buffer and copied once: `to_string` goes through the formatting
        // machinery and grows the string as it writes (one per published event without id).
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        uuid.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .to_owned()
    }

    /// A fresh certificate serial (see [`CertSerial`]).
    pub fn serial(&mut self) -> CertSerial {
        let mut bytes = [0u8; 16];
        self.fill(&mut bytes);
        bytes[0] &= 0x7f;
        if bytes[0] == 0 {
            bytes[0] = 1;
        }
        CertSerial::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_88_url_safe_characters_with_padding() {
        let mut rng = SeededRng::new(Seed::from(1));
        let t = rng.token(64);
        assert_eq!(t.len(), 88);
        assert!(t.ends_with("=="));
        assert!(!t.contains('+') && !t.contains('/'));
    }

    #[test]
    fn same_seed_gives_same_values_and_other_seeds_differ() {
        let mut a = SeededRng::new(Seed::from(7));
        let mut b = SeededRng::new(Seed::from(7));
        let mut c = SeededRng::new(Seed::from(8));
        assert_eq!(a.token(64), b.token(64));
        assert_eq!(a.uuid_v4(), b.uuid_v4());
        assert_ne!(a.token(64), c.token(64));
    }

    #[test]
    fn uuids_are_version_4() {
        let mut rng = SeededRng::new(Seed::from(3));
        for _ in 0..100 {
            let id = rng.uuid_v4();
            assert_eq!(id.len(), 36);
            assert_eq!(&id[14..15], "4");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        }
    }

    #[test]
    fn serials_are_positive_without_leading_zero_and_round_trip() {
        let mut rng = SeededRng::new(Seed::from(5));
        for _ in 0..1000 {
            let s = rng.serial();
            let bytes = s.to_bytes();
            assert_eq!(bytes.len(), 16);
            assert!((1..=0x7f).contains(&bytes[0]));
            assert_eq!(CertSerial::from_bytes(&bytes), s);
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SeededRng::new(Seed::from(9));
        assert_eq!(rng.below(0), 0);
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
        }
    }
}
