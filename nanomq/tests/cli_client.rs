//! End-to-end tests of the `nanomq` binary's commands. `pub` and `sub` run against Debian's
//! mosquitto: the real binary, the project's own codec, a real broker. Each test starts its own
//! mosquitto on a free port and kills every child process it started, even when an assertion
//! fails. `check-config` and `start` need no broker.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const NANOMQ: &str = env!("CARGO_BIN_EXE_nanomq");
/// Upper bound for anything a test waits for; generous for a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A child process killed and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Waits up to [`TIMEOUT`] for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit in time");
            sleep(Duration::from_millis(20));
        }
    }

    fn has_exited(&mut self) -> bool {
        self.0.try_wait().unwrap().is_some()
    }

    /// Everything the process wrote to the piped stream `which` ("stdout" or "stderr").
    fn read(&mut self, which: &str) -> String {
        let mut text = String::new();
        match which {
            "stdout" => self.0.stdout.take().unwrap().read_to_string(&mut text),
            _ => self.0.stderr.take().unwrap().read_to_string(&mut text),
        }
        .unwrap();
        text
    }
}

/// A mosquitto listening on 127.0.0.1 at a port of its own; `None` when mosquitto is absent.
fn mosquitto() -> Option<(Running, u16)> {
    if !Path::new(MOSQUITTO).exists() {
        println!("skipped: {MOSQUITTO} is not installed");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(MOSQUITTO)
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut broker = Running(child);
    let deadline = Instant::now() + TIMEOUT;
    while !listening(port) {
        let exited = broker.0.try_wait().ok().flatten();
        assert!(exited.is_none(), "mosquitto exited: {exited:?}");
        assert!(Instant::now() < deadline, "mosquitto did not start");
        sleep(Duration::from_millis(20));
    }
    Some((broker, port))
}

/// True when something listens on the port. A connection whose two ends are the same address
/// is Linux's TCP self-connect to a port nobody listens on, not a listener.
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}

/// Starts `nanomq ARGS... -h 127.0.0.1 -p PORT` with stdout and stderr piped.
fn nanomq(port: u16, args: &[&str]) -> Running {
    let child = Command::new(NANOMQ)
        .args(args)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running(child)
}

/// Runs `nanomq ARGS...` to completion; returns its status and stderr.
fn run(port: u16, args: &[&str]) -> (ExitStatus, String) {
    let mut child = nanomq(port, args);
    let status = child.wait();
    (status, child.read("stderr"))
}

/// Publishes with `pub_args` again and again until `sub` exits, so the test does not depend on
/// when the subscription becomes active; returns the subscriber's stdout.
fn publish_until_received(port: u16, sub: &mut Running, pub_args: &[&str]) -> String {
    let deadline = Instant::now() + TIMEOUT;
    while !sub.has_exited() {
        assert!(Instant::now() < deadline, "subscriber received nothing");
        let (status, stderr) = run(port, pub_args);
        assert!(status.success(), "pub failed: {stderr}");
        sleep(Duration::from_millis(100));
    }
    let status = sub.wait();
    let stderr = sub.read("stderr");
    assert!(status.success(), "sub failed: {stderr}");
    sub.read("stdout")
}

#[test]
#[cfg_attr(
    not(feature = "clients"),
    ignore = "`pub` and `sub` need the clients feature"
)]
fn pub_and_sub_at_every_qos_and_version() {
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    for version in ["5", "311", "31"] {
        for qos in ["0", "1", "2"] {
            let topic = format!("cli/{version}/{qos}");
            let payload = format!("hello v{version} qos{qos}");
            let mut sub = nanomq(
                port,
                &["sub", "-V", version, "-q", qos, "-t", &topic, "-C", "1"],
            );
            let pub_args = [
                "pub", "-V", version, "-q", qos, "-t", &topic, "-m", &payload,
            ];
            let out = publish_until_received(port, &mut sub, &pub_args);
            assert_eq!(out, format!("{payload}\n"), "v{version} qos{qos}");
        }
    }
}

#[test]
#[cfg_attr(
    not(feature = "clients"),
    ignore = "`pub` and `sub` need the clients feature"
)]
fn sub_count_and_verbose() {
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let mut sub = nanomq(port, &["sub", "-t", "multi/#", "-q", "2", "-C", "3", "-v"]);
    let out = publish_until_received(
        port,
        &mut sub,
        &["pub", "-t", "multi/x", "-q", "1", "-m", "m"],
    );
    assert_eq!(out, "multi/x m\n".repeat(3));
}

#[test]
#[cfg_attr(
    not(feature = "clients"),
    ignore = "`pub` and `sub` need the clients feature"
)]
fn retained_message_reaches_a_later_subscriber() {
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let (status, stderr) = run(
        port,
        &["pub", "-t", "kept", "-m", "last value", "-r", "-q", "2"],
    );
    assert!(status.success(), "{stderr}");
    for version in ["5", "311"] {
        let mut sub = nanomq(
            port,
            &[
                "sub", "-V", version, "-t", "kept", "-C", "1", "-v", "-W", "10",
            ],
        );
        assert!(sub.wait().success(), "{}", sub.read("stderr"));
        assert_eq!(sub.read("stdout"), "kept last value\n");
    }
}

#[test]
#[cfg_attr(
    not(feature = "clients"),
    ignore = "`pub` and `sub` need the clients feature"
)]
fn repeat_publishes_every_copy() {
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    // A persistent session queues the messages while the subscriber is away, so no race.
    let session = ["-c", "-i", "cli-test-repeat", "-q", "1", "-t", "queued"];
    let (status, stderr) = run(port, &[&["sub", "-W", "1"], &session[..]].concat());
    assert!(status.success(), "{stderr}");
    let (status, stderr) = run(
        port,
        &[
            "pub", "-t", "queued", "-q", "2", "-m", "r", "--repeat", "25",
        ],
    );
    assert!(status.success(), "{stderr}");
    let mut sub = nanomq(
        port,
        &[&["sub", "-C", "25", "-W", "10"], &session[..]].concat(),
    );
    assert!(sub.wait().success(), "{}", sub.read("stderr"));
    assert_eq!(sub.read("stdout"), "r\n".repeat(25));
}

#[test]
#[cfg_attr(
    not(feature = "clients"),
    ignore = "`pub` and `sub` need the clients feature"
)]
fn failures_exit_1_with_a_message() {
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let (status, stderr) = run(port, &["sub", "-t", "silent", "-C", "1", "-W", "1"]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("timed out: 0 of 1 messages received"),
        "{stderr}"
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (status, stderr) = run(closed, &["pub", "-t", "t", "-m", "x"]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("cannot connect to 127.0.0.1:"), "{stderr}");
}

/// A config file in a fresh temporary directory, removed on drop.
struct TempConfig(std::path::PathBuf);

impl TempConfig {
    fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nanomq-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nanomq.toml");
        std::fs::write(&path, text).unwrap();
        TempConfig(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

/// Runs `nanomq ARGS...` (no broker options) to completion: status, stdout, stderr.
fn command(args: &[&str]) -> (ExitStatus, String, String) {
    let child = Command::new(NANOMQ)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let status = child.wait();
    (status, child.read("stdout"), child.read("stderr"))
}

#[test]
fn check_config_reports_ok_or_the_line() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/nanomq.example.toml");
    let (status, stdout, _) = command(&["check-config", example]);
    assert!(status.success());
    assert!(
        stdout.ends_with(&format!("\n# {example}: OK\n")),
        "{stdout}"
    );
    let annotated = stdout
        .lines()
        .find(|l| l.starts_with("max_connections = 100000 "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(annotated.ends_with(&format!(" # {example}")), "{annotated}");
    // --quiet, as the systemd unit runs it: the verdict alone.
    let (status, stdout, _) = command(&["check-config", "--quiet", example]);
    assert!(status.success());
    assert_eq!(stdout, format!("{example}: OK\n"));

    let bad = TempConfig::new("check", "[limits]\n\n  max_conections = 5\n");
    let (status, stdout, stderr) = command(&["check-config", bad.path()]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(stdout, "");
    let expected = format!("{}:3:3: unknown field `max_conections`", bad.path());
    assert!(stderr.contains(&expected), "{stderr}");
}

/// check-config reads the certificate files a TLS listener names, as a start would, and names
/// the file at fault once.
#[cfg(feature = "tls")]
#[test]
fn check_config_reads_certificate_files() {
    let missing = std::env::temp_dir().join(format!("nanomq-no-such-{}.crt", std::process::id()));
    let text = format!(
        "[[listeners]]\nkind = \"tls\"\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         cert = {0:?}\nkey = {0:?}\n",
        missing.display().to_string()
    );
    let bad = TempConfig::new("check-tls", &text);
    let (status, stdout, stderr) = command(&["check-config", bad.path()]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(stdout, "");
    let path = missing.display().to_string();
    assert_eq!(stderr.matches(&path).count(), 1, "{stderr}");
    assert!(stderr.contains("certificate chain"), "{stderr}");
}

#[test]
fn start_refuses_a_bad_config_and_stops_on_sigterm() {
    let bad = TempConfig::new("start-bad", "[mqtt]\nmax_qos = 3\n");
    let (status, _, stderr) = command(&["start", "--config", bad.path()]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains(":2:1: mqtt.max_qos: 3 is not a QoS"),
        "{stderr}"
    );
    let (status, _, stderr) = command(&["start", "--config", "/nonexistent/nanomq.toml"]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("cannot read config file /nonexistent/nanomq.toml"),
        "{stderr}"
    );

    let good = TempConfig::new("start-good", "[[listeners]]\nbind = \"127.0.0.1:0\"\n");
    let child = Command::new(NANOMQ)
        .args(["start", "--config", good.path()])
        .env("RUST_LOG", "info")
        .env("NANOMQ_ALLOW_ROOT", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut broker = Running(child);
    sleep(Duration::from_millis(500));
    assert!(!broker.has_exited(), "{}", broker.read("stderr"));
    let pid = broker.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = broker.wait();
    let stderr = broker.read("stderr");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("received SIGTERM"), "{stderr}");
}
