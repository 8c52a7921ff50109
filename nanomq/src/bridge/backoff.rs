//! How long a bridge waits before it dials its upstream again.

use std::time::Duration;

/// Exponential backoff with jitter: each wait is drawn between half and all of a ceiling that
/// doubles from `min` up to `max`, so many devices that lost the same cloud do not all come
/// back in the same second.
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
    seed: u64,
}

impl Backoff {
    pub(super) fn new(min_ms: u64, max_ms: u64) -> Self {
        let min = Duration::from_millis(min_ms.max(1));
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Backoff {
            min,
            max: Duration::from_millis(max_ms).max(min),
            ceiling: min,
            seed: u64::from_le_bytes(seed) | 1,
        }
    }

    pub(super) fn reset(&mut self) {
        self.ceiling = self.min;
    }

    pub(super) fn next(&mut self) -> Duration {
        // xorshift64: jitter needs no cryptographic quality.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let fraction = (self.seed % 1000) as f64 / 1000.0;
        let wait = self.ceiling.mul_f64(0.5 + fraction / 2.0);
        self.ceiling = (self.ceiling * 2).min(self.max);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(100, 1000);
        let waits: Vec<_> = (0..8).map(|_| b.next().as_millis()).collect();
        for (w, ceiling) in waits
            .iter()
            .zip([100, 200, 400, 800, 1000, 1000, 1000, 1000])
        {
            assert!((ceiling / 2..=ceiling).contains(w), "{waits:?}");
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
