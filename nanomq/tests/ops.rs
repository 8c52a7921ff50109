//! Operating the real binary: `nanomq reload` (the config checked first, then SIGHUP to the pid
//! in `pid_file`) applies new limits and log level without dropping clients and refuses a
//! broken config without signalling; the pid file comes and goes with the broker; started as
//! root, the broker drops to `user` after binding, and refuses to stay root unless allowed.

#[allow(dead_code)] // the helpers this suite does not use serve the others
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nanomq::mqtt::{Connect, Packet, ProtocolVersion, ReasonCode};

use common::{unique_dir, Broker, PacketStream, START_TIMEOUT};

const NANOMQ: &str = env!("CARGO_BIN_EXE_nanomq");
/// Upper bound for anything a test waits for; generous for a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A blocking MQTT 5 client on the project's codec.
struct Client(PacketStream);

impl Client {
    /// Opens a socket and sends CONNECT; returns the client and CONNACK's reason code, or
    /// None when the broker closed the socket without answering.
    fn connect(port: u16) -> (Client, Option<ReasonCode>) {
        let mut c = Client(PacketStream::open(port, TIMEOUT));
        c.send(Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            ..Connect::default()
        })));
        let reason = match c.recv() {
            Some(Packet::ConnAck(a)) => Some(a.reason),
            None => None,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        (c, reason)
    }

    fn send(&mut self, p: Packet) {
        // A refused socket may be closed already; the answer (none) tells.
        let _ = self.0.send(&p);
    }

    fn recv(&mut self) -> Option<Packet> {
        self.0.recv()
    }

    fn assert_alive(&mut self) {
        self.send(Packet::PingReq);
        assert_eq!(self.recv(), Some(Packet::PingResp));
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "no {what}; log:\n{}", log());
        sleep(Duration::from_millis(20));
    }
}

fn wait_for_log(broker: &Broker, text: &str) {
    wait_for(
        text,
        || broker.log_text().contains(text),
        || broker.log_text(),
    );
}

/// Runs `nanomq ARGS` to completion, with a deadline.
fn nanomq(args: &[&str], allow_root: bool) -> Output {
    let mut cmd = Command::new(NANOMQ);
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("NANOMQ_ALLOW_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if allow_root {
        cmd.env("NANOMQ_ALLOW_ROOT", "1");
    }
    let mut child = cmd.spawn().expect("run nanomq");
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nanomq {args:?} did not finish within {TIMEOUT:?}");
        }
        sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn broker_config(pid_file: &Path, max_connections: u32, level: &str) -> String {
    format!(
        "pid_file = {:?}\n\n[log]\nlevel = {level:?}\n\n[[listeners]]\nbind = \"127.0.0.1:0\"\n\n\
         [limits]\nmax_connections = {max_connections}\n",
        pid_file.display().to_string()
    )
}

#[test]
fn reload_command_applies_limits_without_dropping_clients_and_refuses_a_broken_config() {
    let dir = unique_dir("nanomq-reload");
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("nanomq.pid");
    let mut broker = Broker::start_nanomq(dir.clone(), &broker_config(&pid_file, 10, "info"));
    let config = dir.join("nanomq.toml");
    let config_arg = config.to_str().unwrap();
    let pid = broker.child.id().to_string();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{pid}\n")
    );

    let (mut first, reason) = Client::connect(broker.port);
    assert_eq!(reason, Some(ReasonCode::SUCCESS));
    let (mut second, _) = Client::connect(broker.port);

    std::fs::write(&config, broker_config(&pid_file, 2, "debug")).unwrap();
    let out = nanomq(&["reload", "--config", config_arg], false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("sent SIGHUP to nanomq (pid {pid})")),
        "{}",
        text(&out.stdout)
    );
    wait_for_log(&broker, "limits.max_connections changed to 2");
    wait_for_log(&broker, "log level changed");
    assert!(
        !broker.log_text().contains("after a restart"),
        "{}",
        broker.log_text()
    );
    first.assert_alive();
    second.assert_alive();
    let (_third, reason) = Client::connect(broker.port);
    assert_eq!(reason, None, "over the lowered limit: closed at once");

    // A broken config: reported with its line, and the broker is not signalled.
    let reloads = broker.log_text().matches("config reloaded").count();
    std::fs::write(&config, broker_config(&pid_file, 0, "info")).unwrap();
    let out = nanomq(&["reload", "--config", config_arg], false);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the broker was not told to reload")
            && stderr.contains(&format!(
                "{config_arg}:10:1: limits.max_connections: 0 is below the minimum of 1"
            )),
        "{stderr}"
    );
    sleep(Duration::from_millis(300));
    let log = broker.log_text();
    assert_eq!(log.matches("config reloaded").count(), reloads, "{log}");
    assert!(!log.contains("reload refused"), "{log}");
    first.assert_alive();

    // Without a pid file in the config, the broker must be named; the broker reads its own
    // config, repaired meanwhile.
    std::fs::write(&config, broker_config(&pid_file, 2, "debug")).unwrap();
    let bare = dir.join("bare.toml");
    std::fs::write(&bare, "[[listeners]]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let out = nanomq(&["reload", "--config", bare.to_str().unwrap()], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--pid"), "{}", text(&out.stderr));
    let out = nanomq(
        &["reload", "--config", bare.to_str().unwrap(), "--pid", &pid],
        false,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for(
        "second reload",
        || broker.log_text().matches("config reloaded").count() > reloads,
        || broker.log_text(),
    );

    // SIGTERM: a clean exit removes the pid file.
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + TIMEOUT;
    while broker.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "broker did not stop on SIGTERM");
        sleep(Duration::from_millis(20));
    }
    assert!(
        !pid_file.exists(),
        "pid file left behind after a clean exit"
    );
}

/// `check-config` and `reload` without a pid file refuse a process that is not a broker.
#[test]
fn reload_never_signals_another_program() {
    let dir = unique_dir("nanomq-reload-other");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("nanomq.toml");
    std::fs::write(&config, "").unwrap();
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let out = nanomq(
        &[
            "reload",
            "--config",
            config.to_str().unwrap(),
            "--pid",
            &pid,
        ],
        false,
    );
    let alive = sleeper.try_wait().unwrap().is_none();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not \"nanomq\""),
        "{}",
        text(&out.stderr)
    );
    assert!(alive, "sleep got SIGHUP");
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// The `Uid:` or `Gid:` line of /proc/PID/status: real, effective, saved, file system.
fn ids(pid: u32, which: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(which))
        .unwrap_or_else(|| panic!("no {which} in {status}"));
    line.split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn root_drops_to_user_after_binding() {
    if !is_root() {
        eprintln!("not root: nothing to drop, skipped");
        return;
    }
    let dir = unique_dir("nanomq-drop");
    std::fs::create_dir_all(&dir).unwrap();
    let broker = Broker::start_nanomq(
        dir,
        "user = \"nobody\"\n\n[[listeners]]\nbind = \"127.0.0.1:0\"\n",
    );
    wait_for_log(&broker, "dropped root");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let pid = broker.child.id();
    assert_eq!(ids(pid, "Uid:"), vec![nobody.uid.as_raw(); 4]);
    assert_eq!(ids(pid, "Gid:"), vec![nobody.gid.as_raw(); 4]);
    let (mut client, reason) = Client::connect(broker.port);
    assert_eq!(reason, Some(ReasonCode::SUCCESS), "still serving MQTT");
    client.assert_alive();
}

#[test]
fn root_without_user_is_refused_unless_allowed() {
    if !is_root() {
        eprintln!("not root: nothing to refuse, skipped");
        return;
    }
    let dir = unique_dir("nanomq-root");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("nanomq.toml");
    std::fs::write(&config, "[[listeners]]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let path = config.to_str().unwrap();
    let out = nanomq(&["start", "--config", path], false);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("refusing to run as root")
            && stderr.contains("allow_root = true")
            && !stderr.contains("listening on"),
        "{stderr}"
    );

    std::fs::write(
        &config,
        "user = \"no-such-user-nanomq\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = nanomq(&["start", "--config", path], true);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("user = \"no-such-user-nanomq\": no such user"),
        "{stderr}"
    );

    // Allowed, by the flag without `start`: it serves as root.
    std::fs::write(&config, "[[listeners]]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let mut cmd = Command::new(NANOMQ);
    cmd.args(["--allow-root", "--config", path])
        .env_remove("NANOMQ_ALLOW_ROOT");
    let (broker, port) = Broker::spawn(dir, cmd);
    let port = port.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
        panic!("no 'listening on' line; log:\n{}", broker.log_text());
    });
    assert_eq!(ids(broker.child.id(), "Uid:"), vec![0; 4]);
    let (_client, reason) = Client::connect(port);
    assert_eq!(reason, Some(ReasonCode::SUCCESS));
}

/// `check-config` reads the runtime layer in `persistence.dir` as `start` does, shows which
/// file each value came from, and names the runtime layer's line when it is broken; SIGHUP
/// reads it again.
#[test]
fn the_runtime_layer_is_checked_shown_and_reloaded() {
    let dir = unique_dir("nanomq-runtime-layer");
    std::fs::create_dir_all(&dir).unwrap();
    let image = format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n\n[persistence]\ndir = {:?}\n",
        dir.display().to_string()
    );
    let runtime = dir.join("runtime.toml");
    std::fs::write(&runtime, "[limits]\nmax_connections = 3\n").unwrap();
    let broker = Broker::start_nanomq(dir.clone(), &image);
    let config = dir.join("nanomq.toml");
    let config_arg = config.to_str().unwrap();

    let out = nanomq(&["check-config", config_arg], false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{stdout}"))
            .to_owned()
    };
    let r = runtime.display().to_string();
    assert!(line("max_connections = 3 ").ends_with(&format!("# {r}")));
    assert!(line("[[listeners]]").ends_with(&format!("# {config_arg}")));
    assert!(line("max_inflight = 32 ").ends_with("# default"));
    assert!(
        stdout.ends_with(&format!("# {config_arg} + {r}: OK\n")),
        "{stdout}"
    );

    std::fs::write(&runtime, "[limits]\nmax_connections = 1\n").unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &broker.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_log(&broker, "limits.max_connections changed to 1");

    std::fs::write(&runtime, "[limits]\n\nmax_connections = -1\n").unwrap();
    let out = nanomq(&["check-config", config_arg], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{r}:3:19: ")),
        "{}",
        text(&out.stderr)
    );
}
