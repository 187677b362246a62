//! [`PreHashed`]: the hasher of maps whose keys are hashes or random
//! numbers already.

use std::hash::Hasher;

/// A hasher for keys that are hashes, or random numbers this process drew,
/// already: a `u64` key is its own hash, a `u128` key its low half (keys an
/// untrusted peer chooses must not use it). Anything else is hashed with
/// FNV-1a.
#[derive(Default)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u128(&mut self, v: u128) {
        // Truncation on purpose: the low half of a random key.
        self.0 = v as u64;
    }
}
