//! The header at the start of every benchmark payload, and the clock its timestamps come from.
//!
//! Little-endian: publisher index `u32`, sequence number `u64` (per publisher, from 0), send time
//! `u64` in nanoseconds of `CLOCK_MONOTONIC`. That clock is system-wide on Linux, so a `bench sub`
//! in one process can measure the latency of what a `bench pub` in another one sent. The rest of
//! the payload is zeros up to `--size`.

use anyhow::bail;
use nix::time::{clock_gettime, ClockId};

/// Bytes of the header; the smallest `--size` allowed.
pub(super) const HEADER_LEN: usize = 20;

/// What a subscriber needs to know about a message to measure it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// Index of the publisher that sent it.
    pub(super) publisher: u32,
    /// Its position in that publisher's stream, from 0.
    pub(super) seq: u64,
    /// [`monotonic_ns`] when it was encoded.
    pub(super) sent_ns: u64,
}

impl Header {
    /// Writes the header over the first [`HEADER_LEN`] bytes of `payload`, which must be at least
    /// that long (see [`check_size`]).
    pub(super) fn write_to(&self, payload: &mut [u8]) {
        payload[0..4].copy_from_slice(&self.publisher.to_le_bytes());
        payload[4..12].copy_from_slice(&self.seq.to_le_bytes());
        payload[12..20].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// Reads the header of a payload; `None` when it is too short to be one of ours.
    pub(super) fn read_from(payload: &[u8]) -> Option<Header> {
        let header = payload.get(..HEADER_LEN)?;
        let u64_at = |i: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&header[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let mut publisher = [0; 4];
        publisher.copy_from_slice(&header[0..4]);
        Some(Header {
            publisher: u32::from_le_bytes(publisher),
            seq: u64_at(4),
            sent_ns: u64_at(12),
        })
    }
}

/// Refuses a `--size` too small to carry the header, saying why.
pub(super) fn check_size(size: usize) -> anyhow::Result<()> {
    if size < HEADER_LEN {
        bail!(
            "--size {size} is too small: every payload starts with a {HEADER_LEN}-byte header \
             (publisher index, sequence number, send time), so use --size {HEADER_LEN} or more"
        );
    }
    Ok(())
}

/// Nanoseconds of `CLOCK_MONOTONIC`: comparable between processes on one Linux machine, unlike
/// [`std::time::Instant`], which cannot be written into a payload.
pub(super) fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC exists on every Linux; clock_gettime fails only for an unknown clock id.
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always readable");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_is_little_endian() {
        let h = Header {
            publisher: 0x0403_0201,
            seq: u64::MAX - 1,
            sent_ns: 0x1122_3344_5566_7788,
        };
        let mut payload = vec![0xAA; 64];
        h.write_to(&mut payload);
        assert_eq!(payload[..4], [1, 2, 3, 4]);
        assert_eq!(payload[12], 0x88);
        assert!(payload[HEADER_LEN..].iter().all(|&b| b == 0xAA));
        assert_eq!(Header::read_from(&payload), Some(h));
        assert_eq!(Header::read_from(&payload[..HEADER_LEN]), Some(h));
        assert_eq!(Header::read_from(&payload[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn size_must_hold_the_header() {
        check_size(HEADER_LEN).unwrap();
        check_size(16 * 1024).unwrap();
        let err = check_size(HEADER_LEN - 1).unwrap_err().to_string();
        assert!(
            err.contains("--size 19 is too small") && err.contains("20-byte header"),
            "{err}"
        );
    }

    #[test]
    fn clock_moves_forward() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }
}
