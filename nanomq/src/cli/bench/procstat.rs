//! The broker's CPU time and memory, read from `/proc/PID/stat` and `/proc/PID/status` at the
//! start and end of the measured window (`--pid`).

use anyhow::Context;
use nix::unistd::{sysconf, SysconfVar};

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProcSample {
    /// User plus system CPU time, in clock ticks.
    pub(super) cpu_ticks: u64,
    /// Resident set size (VmRSS), KiB.
    pub(super) rss_kib: u64,
    /// Peak resident set size since the process started (VmHWM), KiB.
    pub(super) hwm_kib: u64,
}

/// What the broker spent between two samples, as the report shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct BrokerUsage {
    /// CPU seconds (user + system) between the samples.
    pub(super) cpu_s: f64,
    /// CPU microseconds per delivered message; `None` when nothing was delivered.
    pub(super) cpu_us_per_msg: Option<f64>,
    /// RSS at the first sample, KiB.
    pub(super) rss_start_kib: u64,
    /// RSS at the second sample, KiB.
    pub(super) rss_end_kib: u64,
    /// Peak RSS of the broker's whole life up to the second sample, KiB.
    pub(super) rss_peak_kib: u64,
    /// RSS growth per connection (`conn` only).
    pub(super) rss_per_conn_bytes: Option<f64>,
}

/// Reads the counters of process `pid`.
pub(super) fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let read = |file: &str| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {path} (--pid {pid})"))
    };
    let cpu_ticks = parse_stat(&read("stat")?)
        .with_context(|| format!("unexpected format of /proc/{pid}/stat"))?;
    let (rss_kib, hwm_kib) = parse_status(&read("status")?)
        .with_context(|| format!("no VmRSS/VmHWM in /proc/{pid}/status"))?;
    Ok(ProcSample {
        cpu_ticks,
        rss_kib,
        hwm_kib,
    })
}

/// Clock ticks per second, the unit of `utime` and `stime`.
pub(super) fn ticks_per_second() -> anyhow::Result<u64> {
    let ticks = sysconf(SysconfVar::CLK_TCK).context("cannot read sysconf(_SC_CLK_TCK)")?;
    ticks
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .context("sysconf(_SC_CLK_TCK) gave no tick rate")
}

/// What the broker spent from `start` to `end`. `delivered` messages give CPU per message,
/// `connections` RSS growth per connection.
pub(super) fn usage(
    start: ProcSample,
    end: ProcSample,
    ticks_per_second: u64,
    delivered: u64,
    connections: Option<u64>,
) -> BrokerUsage {
    let cpu_s = end.cpu_ticks.saturating_sub(start.cpu_ticks) as f64 / ticks_per_second as f64;
    BrokerUsage {
        cpu_s,
        cpu_us_per_msg: (delivered > 0).then(|| cpu_s * 1e6 / delivered as f64),
        rss_start_kib: start.rss_kib,
        rss_end_kib: end.rss_kib,
        rss_peak_kib: end.hwm_kib,
        rss_per_conn_bytes: connections
            .filter(|&n| n > 0)
            .map(|n| (end.rss_kib as f64 - start.rss_kib as f64) * 1024.0 / n as f64),
    }
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2)
/// is in parentheses and may itself contain spaces and parentheses, so fields are counted after
/// the last `)`.
fn parse_stat(text: &str) -> Option<u64> {
    let after_name = &text[text.rfind(')')? + 1..];
    // after_name starts with field 3 (state); utime is field 14.
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` and `VmHWM` of a `/proc/PID/status` file, in KiB.
fn parse_status(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (nano mq) (x)) S 1 4242 4242 0 -1 4194560 1391 0 0 0 \
                        250 75 0 0 20 0 3 0 123456 12345678 900 18446744073709551615\n";

    const STATUS: &str = "Name:\tnanomq\nUmask:\t0022\nState:\tS (sleeping)\n\
                          VmPeak:\t  120000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t    5432 kB\n\
                          Threads:\t3\n";

    #[test]
    fn stat_fixture() {
        assert_eq!(parse_stat(STAT), Some(325));
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_fixture() {
        assert_eq!(parse_status(STATUS), Some((5432, 9876)));
        assert_eq!(parse_status("VmRSS:\t 1 kB\n"), None);
    }

    #[test]
    fn own_process() {
        let own = sample(std::process::id()).unwrap();
        assert!(own.rss_kib > 0 && own.hwm_kib >= own.rss_kib, "{own:?}");
        let ticks = ticks_per_second().unwrap();
        // Burn some CPU so the tick counter moves.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(7));
        }
        std::hint::black_box(x);
        let later = sample(std::process::id()).unwrap();
        assert!(later.cpu_ticks >= own.cpu_ticks);
        let u = usage(own, later, ticks, 1000, None);
        assert!(u.cpu_s >= 0.0 && u.rss_per_conn_bytes.is_none());
        assert!(sample(u32::MAX).is_err());
    }

    #[test]
    fn usage_arithmetic() {
        let a = ProcSample {
            cpu_ticks: 100,
            rss_kib: 1000,
            hwm_kib: 1200,
        };
        let b = ProcSample {
            cpu_ticks: 350,
            rss_kib: 3000,
            hwm_kib: 3100,
        };
        let u = usage(a, b, 100, 500_000, Some(1024));
        assert_eq!(u.cpu_s, 2.5);
        assert_eq!(u.cpu_us_per_msg, Some(5.0));
        assert_eq!(
            (u.rss_start_kib, u.rss_end_kib, u.rss_peak_kib),
            (1000, 3000, 3100)
        );
        assert_eq!(u.rss_per_conn_bytes, Some(2000.0));
        assert_eq!(usage(a, b, 100, 0, Some(0)).cpu_us_per_msg, None);
    }
}
