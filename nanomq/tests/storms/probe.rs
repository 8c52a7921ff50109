//! What the broker process holds, read from /proc: resident memory and open file descriptors.
//! Every socket the broker keeps is a descriptor, so the descriptor count is its open-socket
//! count plus a constant (listeners, epoll, eventfd, stdio).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    try_rss_kib(pid).unwrap_or_else(|| panic!("no VmRSS for process {pid} (is the broker gone?)"))
}

fn try_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    kib.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> usize {
    try_open_fds(pid).unwrap_or_else(|| panic!("no /proc/{pid}/fd (is the broker gone?)"))
}

fn try_open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The highest RSS and descriptor count seen while sampling.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peak {
    pub rss_kib: u64,
    pub fds: usize,
}

/// Samples the broker's RSS and descriptors every 10 ms on a thread of its own (the test's
/// runtime may be too busy to) and keeps the highest values.
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<Peak>>,
}

impl PeakSampler {
    pub fn start(pid: u32) -> PeakSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = Peak::default();
            // A broker that dies mid-storm ends the sampling; the test reports its death.
            while let (Some(rss), Some(fds)) = (try_rss_kib(pid), try_open_fds(pid)) {
                peak.rss_kib = peak.rss_kib.max(rss);
                peak.fds = peak.fds.max(fds);
                if thread_stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        PeakSampler {
            stop,
            sampler: Some(sampler),
        }
    }

    /// Stops sampling; the highest values seen.
    pub fn finish(mut self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        let sampler = self.sampler.take().expect("finished once");
        sampler.join().expect("the sampler thread panicked")
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits until `ready` holds, polling every 50 ms, for at most `limit`; returns whether it did.
pub async fn eventually(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
