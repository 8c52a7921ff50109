//! `nanomq reload`: checks the config as the broker will read it, then sends the broker SIGHUP.
//! A config that does not load is reported here, with its file and line, and the broker is not
//! disturbed (it would refuse the config too, but only its log would say why).

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::args::ReloadArgs;
use crate::auth::Authenticator;
use crate::config::{image_path, Layered};
use crate::service::PidFile;

/// Runs `nanomq reload`.
pub(super) fn run(args: ReloadArgs) -> anyhow::Result<()> {
    let layered = Layered::load(image_path(args.config.as_deref()).as_deref())
        .context("config refused; the broker was not told to reload")?;
    let config = &layered.config;
    Authenticator::load(&config.auth)
        .context("config refused; the broker was not told to reload")?;
    crate::broker::check_transports(config)
        .context("config refused; the broker was not told to reload")?;
    let pid = match (args.pid, &config.pid_file) {
        (Some(pid), _) => pid,
        (None, Some(path)) => PidFile::read(path)?,
        (None, None) => bail!(
            "cannot find the broker: the config sets no pid_file; give its process id with --pid"
        ),
    };
    check_is_broker(pid)?;
    kill(Pid::from_raw(pid), Signal::SIGHUP)
        .with_context(|| format!("cannot send SIGHUP to process {pid}"))?;
    println!(
        "{}: OK; sent SIGHUP to nanomq (pid {pid})",
        layered.describe()
    );
    Ok(())
}

/// Makes sure `pid` is a running process of this program: a pid file left behind by a broker
/// that was killed may name a process that has since taken the number, and SIGHUP ends most.
fn check_is_broker(pid: i32) -> anyhow::Result<()> {
    if pid <= 0 {
        bail!("{pid} is not a process id");
    }
    let comm = |path: &str| std::fs::read_to_string(path).map(|s| s.trim_end().to_owned());
    let theirs = comm(&format!("/proc/{pid}/comm"))
        .with_context(|| format!("no process {pid}: is the broker running?"))?;
    match comm("/proc/self/comm") {
        Ok(ours) if ours != theirs => {
            bail!("process {pid} is {theirs:?}, not {ours:?}: a stale pid file? Not signalling it")
        }
        _ => Ok(()),
    }
}
