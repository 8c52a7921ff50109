//! The `nanomq` command line: `start` (the default) runs the broker, `check-config` validates
//! the config and shows where each value comes from, `reload` makes the running broker read it
//! again, `passwd` manages the password file, and `pub` / `sub` are mosquitto_pub /
//! mosquitto_sub look-alikes built on the project's own codec, for testing a broker from a
//! shell (cargo feature `clients`, on by default). `bench` (cargo feature `bench`, on by
//! default) is a load generator for comparing brokers.
//!
//! Errors here are `anyhow`: each command either succeeds (exit 0) or prints one message,
//! with its causes, on stderr and exits 1. Usage errors exit 2, as clap does.

mod args;
#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "clients")]
mod client;
#[cfg(feature = "clients")]
mod client_args;
mod passwd;
#[cfg(feature = "clients")]
mod pub_cmd;
mod reload;
mod start;
#[cfg(feature = "clients")]
mod sub_cmd;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// Entry point of the `nanomq` binary: parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Start(cli.start)) {
        Command::Start(args) => start::start(args),
        Command::CheckConfig(args) => start::check_config(args),
        Command::Reload(args) => reload::run(args),
        Command::Passwd(args) => passwd::run(args),
        #[cfg(feature = "clients")]
        Command::Pub(args) => pub_cmd::run(args),
        #[cfg(feature = "clients")]
        Command::Sub(args) => sub_cmd::run(args),
        #[cfg(feature = "bench")]
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises this process's open-file soft limit to its hard limit (every connection is a
/// descriptor, and distributions start services with a soft limit of 1024), then grows the
/// kernel's descriptor table to hold `expected` descriptors (at most the limit). Returns the
/// limit now in force.
///
/// Call it before any thread starts. The kernel grows the table by doubling, and in a process
/// with more than one thread each growth waits for an RCU grace period (10 to 20 ms): a broker
/// accepting connections would stall once per doubling, and every client connecting meanwhile
/// with it. Growing it up front, single-threaded, is instant; the table costs kernel memory
/// (8 bytes per slot), not RSS.
fn raise_open_file_limit(expected: u64) -> nix::Result<u64> {
    use nix::fcntl::{fcntl, FcntlArg};
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use std::os::fd::{FromRawFd, OwnedFd};

    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    // `rlim_t` is u32 on 32-bit glibc targets (armv7, mipsel) and u64 on 64-bit ones.
    #[allow(clippy::useless_conversion)]
    let hard = u64::from(hard);
    let slots = expected.min(hard);
    if let (Ok(top), Ok(probe)) = (i32::try_from(slots), std::fs::File::open("/dev/null")) {
        // Best effort: without it the broker still works, with the stalls described above.
        if let Ok(high) = fcntl(&probe, FcntlArg::F_DUPFD_CLOEXEC(top.max(1) - 1)) {
            // SAFETY: `high` was just returned by F_DUPFD and nothing else owns it.
            drop(unsafe { OwnedFd::from_raw_fd(high) });
        }
    }
    Ok(hard)
}

/// A single-threaded runtime: the clients drive one connection and need no more.
#[cfg(feature = "clients")]
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

/// Waits for more bytes from the broker and appends them to `buf`; a closed connection is an
/// error. Cancel-safe: nothing is lost if the future is dropped. Shared by the clients and
/// `bench`.
#[cfg(any(feature = "clients", feature = "bench"))]
async fn read_more(
    stream: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::io::AsyncReadExt;

    let n = stream
        .read_buf(buf)
        .await
        .context("cannot read from broker")?;
    if n == 0 {
        anyhow::bail!("connection closed by broker");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The descriptor table is grown up front: `FDSize` in /proc counts its slots.
    #[test]
    fn descriptor_table_is_grown_to_the_expected_size() {
        let fd_slots = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let limit = super::raise_open_file_limit(0).unwrap();
        let want = limit.min(4096);
        super::raise_open_file_limit(want).unwrap();
        assert!(fd_slots() >= want, "FDSize {} < {want}", fd_slots());
    }
}
