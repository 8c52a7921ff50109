//! A tiny deterministic random generator for randomized tests, so failures reproduce.

/// xorshift64; the seed must be non-zero.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    /// Uniform enough in `0..n` for tests.
    pub(super) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as usize % n
    }
}
