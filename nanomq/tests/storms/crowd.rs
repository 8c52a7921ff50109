//! Running thousands of short-lived hostile clients: a bounded pool of workers, a
//! deterministic source of garbage, and a tally of what happened to each kind of client.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A small deterministic pseudo-random generator (xorshift64*), so a failing case can be
/// replayed by its index.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Runs `case(i)` for every `i` in `0..total`, at most `concurrency` at a time. A panicking
/// case fails the whole run.
pub async fn run_bounded<F, Fut>(total: usize, concurrency: usize, case: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let case = Arc::new(case);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, case) = (next.clone(), case.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                case(i).await;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done {
            match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("storm worker: {e}"),
            }
        }
    }
}

/// How many clients of each kind there were, and how long the slowest took to be dealt with.
#[derive(Default)]
pub struct Tally(Mutex<BTreeMap<&'static str, (usize, Duration)>>);

impl Tally {
    pub fn add(&self, what: &'static str, took: Duration) {
        let mut counts = self.0.lock().unwrap();
        let (n, slowest) = counts.entry(what).or_default();
        *n += 1;
        *slowest = (*slowest).max(took);
    }

    /// Clients counted as `what`.
    pub fn count(&self, what: &str) -> usize {
        self.0.lock().unwrap().get(what).map_or(0, |c| c.0)
    }

    /// Clients counted under any name.
    pub fn total(&self) -> usize {
        self.0.lock().unwrap().values().map(|c| c.0).sum()
    }

    /// One line per kind of client, for `--nocapture`.
    pub fn print(&self, title: &str) {
        println!("{title}:");
        for (what, (n, slowest)) in self.0.lock().unwrap().iter() {
            println!("  {n:>5} {what} (slowest {slowest:.1?})");
        }
    }
}
