//! The daemon under a service manager, without systemd: the test binds the unix datagram socket
//! systemd would, starts the real binary with `NOTIFY_SOCKET` and `WATCHDOG_USEC`, and reads
//! what it is told (READY=1, WATCHDOG=1, RELOADING=1, STOPPING=1) while checking that the broker
//! serves, reloads its config on SIGHUP without dropping anything, and exits 0 on SIGTERM.
#![cfg(feature = "systemd")]

#[allow(dead_code)] // the helpers this suite does not use serve the others
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{unique_dir, Broker};

const NANOMQ: &str = env!("CARGO_BIN_EXE_nanomq");
/// Upper bound for anything a test waits for; generous for a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(20);
const CONFIG: &str =
    "[log]\nlevel = \"info\"\n\n[[listeners]]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n";

/// A broker started as systemd would start a `Type=notify` service, and the socket it reports to.
struct Service {
    broker: Broker,
    notify: UnixDatagram,
    config: PathBuf,
}

impl Service {
    /// Starts the broker with `WATCHDOG_USEC=watchdog_usec` (when given) and waits for its port.
    fn start(watchdog_usec: Option<u32>) -> Service {
        let dir = unique_dir("nanomq-service");
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let config = dir.join("nanomq.toml");
        std::fs::write(&config, CONFIG).expect("write config");
        let socket = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&socket).expect("bind notify socket");
        notify.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut cmd = Command::new(NANOMQ);
        cmd.arg("start").arg("--config").arg(&config);
        cmd.env("NOTIFY_SOCKET", &socket).env_remove("RUST_LOG");
        // Tests run as root in CI, where the broker refuses to start without this.
        cmd.env("NANOMQ_ALLOW_ROOT", "1");
        if let Some(usec) = watchdog_usec {
            cmd.env("WATCHDOG_USEC", usec.to_string());
        }
        let (mut broker, port) = Broker::spawn(dir, cmd);
        broker.port = port.recv_timeout(TIMEOUT).expect("broker port");
        Service {
            broker,
            notify,
            config,
        }
    }

    /// The next notification, ignoring watchdog pings unless `want` is one.
    fn next(&self, want: &str) -> String {
        let mut buf = [0u8; 512];
        loop {
            let n = self.notify.recv(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "no notification (waiting for {want}): {e}; log:\n{}",
                    self.broker.log_text()
                )
            });
            let text = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
            if text != "WATCHDOG=1" || want == "WATCHDOG=1" {
                return text;
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.broker.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits until the broker's log has a line containing `text`.
    fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.broker.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?}; log:\n{}",
                self.broker.log_text()
            );
            sleep(Duration::from_millis(20));
        }
    }
}

/// An MQTT 3.1.1 CONNECT with an empty client id is accepted: the broker serves.
fn mqtt_connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        .unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    s
}

/// A connection is still open: a PINGREQ gets its PINGRESP.
fn assert_alive(s: &mut TcpStream) {
    s.write_all(&[0xc0, 0x00]).unwrap();
    let mut resp = [0u8; 2];
    s.read_exact(&mut resp).expect("PINGRESP");
    assert_eq!(resp, [0xd0, 0x00]);
}

#[test]
fn ready_once_listening_then_watchdog_pings() {
    let service = Service::start(Some(200_000));
    assert_eq!(service.next("READY=1"), "READY=1");
    // READY=1 means clients can connect.
    mqtt_connect(service.broker.port);
    // Pings at half of 200 ms: five of them well within the timeout.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(service.next("WATCHDOG=1"), "WATCHDOG=1");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "pings too fast"
    );
}

#[test]
fn no_watchdog_pings_unless_asked() {
    let service = Service::start(None);
    assert_eq!(service.next("READY=1"), "READY=1");
    service
        .notify
        .set_read_timeout(Some(Duration::from_millis(600)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        service.notify.recv(&mut buf).is_err(),
        "unexpected notification"
    );
}

#[test]
fn sighup_reloads_without_dropping_clients() {
    let service = Service::start(None);
    assert_eq!(service.next("READY=1"), "READY=1");
    let mut client = mqtt_connect(service.broker.port);

    // A live change (log level) and one that waits for a restart (a limit).
    let changed = CONFIG.replace("\"info\"", "\"debug\"") + "\n[limits]\nmax_inflight = 10\n";
    std::fs::write(&service.config, changed).unwrap();
    service.signal("HUP");
    assert_eq!(service.next("RELOADING=1"), "RELOADING=1");
    assert_eq!(service.next("READY=1"), "READY=1");
    service.wait_for_log("log level changed");
    service.wait_for_log("changes to limits.max_inflight take effect after a restart");
    assert_alive(&mut client);

    // A broken file is refused and the broker keeps running on the old config.
    std::fs::write(&service.config, "[limits\n").unwrap();
    service.signal("HUP");
    assert_eq!(service.next("RELOADING=1"), "RELOADING=1");
    assert_eq!(service.next("READY=1"), "READY=1");
    service.wait_for_log("config reload refused, the running config stays");
    assert_alive(&mut client);
    mqtt_connect(service.broker.port);
}

#[test]
fn sigterm_says_stopping_and_exits_0() {
    let mut service = Service::start(Some(1_000_000));
    assert_eq!(service.next("READY=1"), "READY=1");
    service.signal("TERM");
    assert_eq!(service.next("STOPPING=1"), "STOPPING=1");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = service.broker.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "broker did not exit");
        sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}
