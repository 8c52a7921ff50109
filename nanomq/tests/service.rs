//! The daemon under a service manager, without systemd: the test binds the unix datagram socket
//! systemd would, starts the real binary with `NOTIFY_SOCKET` and `WATCHDOG_USEC`, and reads
//! what it is told (READY=1, WATCHDOG=1, RELOADING=1, STOPPING=1) while checking that the broker
//! serves, reloads its config on SIGHUP without dropping anything, and exits 0 on SIGTERM; that
//! STATUS= counts clients and messages; that the watchdog pings stop when a component is made to
//! stall (`NANOMQ_TEST_STALL`); and, with a real systemd-journald in a private mount namespace,
//! that connection log lines carry CLIENT_ID, PEER, LISTENER and REASON.
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
    /// What `config` holds.
    config_text: String,
}

impl Service {
    /// Starts the broker with `WATCHDOG_USEC=watchdog_usec` (when given) and waits for its port.
    fn start(watchdog_usec: Option<u32>) -> Service {
        Self::start_with(watchdog_usec, &[])
    }

    /// [`Service::start`] with more environment variables.
    fn start_with(watchdog_usec: Option<u32>, env: &[(&str, &str)]) -> Service {
        let dir = unique_dir("nanomq-service");
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let config = dir.join("nanomq.toml");
        // With a state directory, READY=1 also waits for the state database, and the watchdog
        // watches its writer.
        let state = if cfg!(feature = "persistence") {
            format!(
                "\n[persistence]\ndir = {:?}\n",
                dir.join("state").display().to_string()
            )
        } else {
            String::new()
        };
        let config_text = format!("{CONFIG}{state}");
        std::fs::write(&config, &config_text).expect("write config");
        let socket = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&socket).expect("bind notify socket");
        notify.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut cmd = Command::new(NANOMQ);
        cmd.arg("start").arg("--config").arg(&config);
        cmd.env("NOTIFY_SOCKET", &socket).env_remove("RUST_LOG");
        cmd.envs(env.iter().copied());
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
            config_text,
        }
    }

    /// The next notification, ignoring watchdog pings and status lines unless `want` is one.
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
            let periodic = text == "WATCHDOG=1" || text.starts_with("STATUS=");
            if !periodic || text.starts_with(want) {
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

    /// Waits until the broker's log has a line containing `then` after one containing `first`.
    fn wait_for_log_after(&self, first: &str, then: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let log = self.broker.log_text();
            if let Some(at) = log.find(first) {
                if log[at..].contains(then) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {then:?} after {first:?}; log:\n{log}"
            );
            sleep(Duration::from_millis(20));
        }
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
    let got = collect(&service, Duration::from_millis(600));
    assert!(
        got.iter().all(|n| n.starts_with("STATUS=")),
        "unexpected notification: {got:?}"
    );
}

#[test]
fn sighup_reloads_without_dropping_clients() {
    let service = Service::start(None);
    assert_eq!(service.next("READY=1"), "READY=1");
    let mut client = mqtt_connect(service.broker.port);

    // A live change (log level) and one that waits for a restart (a limit).
    let changed =
        service.config_text.replace("\"info\"", "\"debug\"") + "\n[limits]\nmax_inflight = 10\n";
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

/// A raw MQTT packet: `header`, remaining length, body.
fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![header];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        if len == 0 {
            p.push(byte);
            break;
        }
        p.push(byte | 0x80);
    }
    p.extend_from_slice(body);
    p
}

/// `text` with its 2-byte length prefix.
fn mqtt_str(text: &str) -> Vec<u8> {
    let mut s = (text.len() as u16).to_be_bytes().to_vec();
    s.extend_from_slice(text.as_bytes());
    s
}

/// The number before `unit` in a STATUS line: `STATUS=2 clients, 6.7 msg/s in, ...`.
fn status_number(line: &str, unit: &str) -> f64 {
    let before = &line[..line
        .find(unit)
        .unwrap_or_else(|| panic!("{unit} in {line}"))];
    let number = before.trim_end().rsplit([' ', '=']).next().unwrap();
    number
        .parse()
        .unwrap_or_else(|_| panic!("number before {unit} in {line}"))
}

#[test]
fn status_counts_clients_and_message_rates() {
    let service = Service::start(None);
    assert_eq!(service.next("READY=1"), "READY=1");
    // The first status line follows READY=1 at once.
    let first = service.next("STATUS=");
    assert!(
        first.starts_with("STATUS=0 clients, 0 msg/s in, 0 msg/s out, "),
        "{first}"
    );
    // `$SYS` topics are retained too.
    let retained_before = status_number(&first, "retained");

    let mut subscriber = mqtt_connect(service.broker.port);
    let mut body = vec![0, 1];
    body.extend(mqtt_str("status/t"));
    body.push(0);
    subscriber.write_all(&packet(0x82, &body)).unwrap();
    let mut suback = [0u8; 5];
    subscriber.read_exact(&mut suback).expect("SUBACK");
    assert_eq!(suback, [0x90, 0x03, 0, 1, 0]);
    let mut publisher = mqtt_connect(service.broker.port);
    let mut publish = mqtt_str("status/t");
    publish.extend_from_slice(b"hello");
    let retained = packet(0x31, &publish);
    let publish = packet(0x30, &publish);
    publisher.write_all(&retained).unwrap();
    for _ in 0..30 {
        publisher.write_all(&publish).unwrap();
    }
    // The subscriber reads all 31, so they were counted as sent.
    let mut delivered = vec![0u8; 31 * publish.len()];
    subscriber.read_exact(&mut delivered).expect("deliveries");

    // The line whose interval saw the messages; later ones may show 0 msg/s again.
    let line = loop {
        let line = service.next("STATUS=");
        assert!(line.starts_with("STATUS="), "{line}");
        if status_number(&line, "msg/s in") > 0.0 {
            break line;
        }
    };
    assert_eq!(status_number(&line, "client"), 2.0, "{line}");
    assert!(status_number(&line, "msg/s out") > 0.0, "{line}");
    assert!(
        status_number(&line, "retained") >= retained_before + 1.0,
        "{line}"
    );
}

/// Notifications for `window`, in order.
fn collect(service: &Service, window: Duration) -> Vec<String> {
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    let end = Instant::now() + window;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        service
            .notify
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok(n) = service.notify.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
        }
    }
    service.notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    got
}

fn pings(notifications: &[String]) -> usize {
    notifications.iter().filter(|n| *n == "WATCHDOG=1").count()
}

#[test]
fn healthy_idle_broker_keeps_pinging() {
    let service = Service::start(Some(2_000_000));
    assert_eq!(service.next("READY=1"), "READY=1");
    // Pings every second: four or five in four seconds, at least three on a loaded machine.
    let got = collect(&service, Duration::from_secs(4));
    assert!(pings(&got) >= 3, "{got:?}");
    assert!(
        !service.broker.log_text().contains("not pinging"),
        "a healthy broker skipped a ping; log:\n{}",
        service.broker.log_text()
    );
}

/// With `component` wedged after one second, the pings stop and a warning names it.
fn pings_stop_when_stalled(component: &str) {
    let stall = format!("{component}:1");
    let service = Service::start_with(Some(1_000_000), &[("NANOMQ_TEST_STALL", &stall)]);
    assert_eq!(service.next("READY=1"), "READY=1");
    assert_eq!(
        service.next("WATCHDOG=1"),
        "WATCHDOG=1",
        "pings before the stall"
    );
    service.wait_for_log_after(
        "NANOMQ_TEST_STALL",
        &format!("no progress from {component}"),
    );
    // Whatever was sent before the warning is queued ahead of what follows it.
    service.notify.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    while service.notify.recv(&mut buf).is_ok() {}
    service.notify.set_nonblocking(false).unwrap();
    // Four ping periods without a ping.
    let got = collect(&service, Duration::from_secs(2));
    assert_eq!(
        pings(&got),
        0,
        "pinged while {component} is stalled: {got:?}"
    );
}

#[test]
fn pings_stop_when_the_router_stalls() {
    pings_stop_when_stalled("router");
}

#[test]
fn pings_stop_when_an_accept_loop_stalls() {
    pings_stop_when_stalled("listener");
}

#[cfg(feature = "persistence")]
#[test]
fn pings_stop_when_the_state_database_writer_stalls() {
    pings_stop_when_stalled("store");
}

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// Why the journald test cannot run here, if it cannot: it needs root (for a private mount
/// namespace with its own `/run`), `unshare`, `systemd-journald` and `journalctl`.
fn journald_unavailable() -> Option<String> {
    if !std::path::Path::new(JOURNALD).exists() {
        return Some(format!("no {JOURNALD} (apt-get install systemd)"));
    }
    let works = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    if !works(Command::new("journalctl").arg("--version")) {
        return Some("no journalctl".into());
    }
    if !works(Command::new("unshare").args(["--mount", "--pid", "--fork", "true"])) {
        return Some("unshare --mount --pid is not permitted (needs root)".into());
    }
    None
}

/// The broker logging to a real systemd-journald, both in a private mount and PID namespace
/// (killing `unshare` kills them both); the journal files land in `journal` on the host.
struct Journald {
    broker: Broker,
    journal: PathBuf,
}

impl Journald {
    /// Starts journald with `/run` on a tmpfs, then the broker with `JOURNAL_STREAM` naming its
    /// stderr, as systemd does for `StandardError=journal`.
    fn start(config_text: &str) -> Journald {
        let dir = unique_dir("nanomq-journald");
        let journal = dir.join("journal");
        std::fs::create_dir_all(&journal).expect("create journal dir");
        let config = dir.join("nanomq.toml");
        std::fs::write(&config, config_text).expect("write config");
        let script = r#"
            set -e
            mount -t tmpfs tmpfs /run
            mkdir -p /run/log/journal
            mount --bind "$1" /run/log/journal
            "$2" &
            i=0
            while [ ! -S /run/systemd/journal/socket ]; do
                i=$((i + 1)); [ "$i" -lt 200 ] || { echo "journald did not start" >&2; exit 3; }
                sleep 0.05
            done
            JOURNAL_STREAM="$(stat -L -c %d:%i /proc/self/fd/2)"
            export JOURNAL_STREAM
            exec "$3" start --config "$4"
        "#;
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", script, "sh"])
        .arg(&journal)
        .arg(JOURNALD)
        .arg(NANOMQ)
        .arg(&config)
        .env("NANOMQ_ALLOW_ROOT", "1")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET");
        let (broker, _) = Broker::spawn(dir, cmd);
        let mut service = Journald { broker, journal };
        let listening = service.wait_for(|e| {
            e["MESSAGE"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening on tcp "))
        });
        let message = listening["MESSAGE"].as_str().unwrap_or_default();
        service.broker.port = message
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        service
    }

    /// Every entry of the journal so far, as `journalctl -o json` shows it.
    fn entries(&self) -> Vec<serde_json::Value> {
        let out = Command::new("journalctl")
            .arg("-D")
            .arg(&self.journal)
            .args(["-o", "json", "--no-pager"])
            .output()
            .expect("run journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first entry that `matches`, waiting for it.
    fn wait_for(&self, matches: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(e) = self.entries().into_iter().find(&matches) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no such journal entry; journal:\n{:#?}\nstderr:\n{}",
                self.entries(),
                self.broker.log_text()
            );
            sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn journald_entries_carry_client_peer_listener_and_reason() {
    if let Some(why) = journald_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let config = "[log]\nlevel = \"info\"\n\n[[listeners]]\nkind = \"tcp\"\n\
                  bind = \"127.0.0.1:0\"\nmax_connections = 1\n";
    let journald = Journald::start(config);
    let port = journald.broker.port;
    let field = |e: &serde_json::Value, name: &str| e[name].as_str().unwrap_or_default().to_owned();

    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut body = mqtt_str("MQTT");
    body.extend_from_slice(&[4, 2, 0, 60]);
    body.extend(mqtt_str("journal-client"));
    client.write_all(&packet(0x10, &body)).unwrap();
    let mut connack = [0u8; 4];
    client.read_exact(&mut connack).expect("CONNACK");
    let peer = client.local_addr().unwrap().to_string();
    let listener = format!("tcp 127.0.0.1:{port}");

    let connected = journald.wait_for(|e| {
        field(e, "MESSAGE") == "client connected" && field(e, "CLIENT_ID") == "journal-client"
    });
    assert_eq!(field(&connected, "PEER"), peer, "{connected:#}");
    assert_eq!(field(&connected, "LISTENER"), listener, "{connected:#}");
    assert_eq!(field(&connected, "PRIORITY"), "5", "info: {connected:#}");

    // A second socket is over the listener's limit: refused, a warning with the reason.
    let refused_socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let refused = journald.wait_for(|e| field(e, "MESSAGE").starts_with("connection refused"));
    assert_eq!(
        field(&refused, "REASON"),
        "connection limit reached",
        "{refused:#}"
    );
    assert_eq!(field(&refused, "LISTENER"), listener, "{refused:#}");
    assert_eq!(
        field(&refused, "PEER"),
        refused_socket.local_addr().unwrap().ip().to_string(),
        "{refused:#}"
    );
    assert_eq!(field(&refused, "PRIORITY"), "4", "warn: {refused:#}");

    client.write_all(&[0xe0, 0x00]).unwrap();
    let gone = journald
        .wait_for(|e| field(e, "CLIENT_ID") == "journal-client" && !field(e, "REASON").is_empty());
    assert_eq!(field(&gone, "REASON"), "client disconnected", "{gone:#}");
    assert_eq!(field(&gone, "PEER"), peer, "{gone:#}");
    assert_eq!(field(&gone, "LISTENER"), listener, "{gone:#}");
    assert_eq!(field(&gone, "PRIORITY"), "5", "{gone:#}");
}

/// An MQTT 5 client `id` that has subscribed to `filter`.
fn mqtt5_subscriber(port: u16, id: &str, filter: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut body = mqtt_str("MQTT");
    body.extend_from_slice(&[5, 2, 0, 60, 0]);
    body.extend(mqtt_str(id));
    s.write_all(&packet(0x10, &body)).unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).expect("CONNACK");
    assert_eq!(head[0], 0x20);
    let mut rest = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut rest).expect("CONNACK body");
    assert_eq!(rest[1], 0, "CONNACK reason");
    let mut body = vec![0, 1, 0];
    body.extend(mqtt_str(filter));
    body.push(0);
    s.write_all(&packet(0x82, &body)).unwrap();
    let mut suback = [0u8; 6];
    s.read_exact(&mut suback).expect("SUBACK");
    assert_eq!(suback, [0x90, 0x04, 0, 1, 0, 0]);
    s
}

/// Reads until the broker closes; returns the last bytes before the close.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    all
}

#[test]
fn sigterm_with_a_client_that_does_not_read_exits_0_within_the_grace() {
    let mut service = Service::start(None);
    assert_eq!(service.next("READY=1"), "READY=1");
    let port = service.broker.port;
    let mut reader = mqtt5_subscriber(port, "reads", "idle/t");
    let _stuck = mqtt5_subscriber(port, "never-reads", "flood/t");
    // 16 MiB for a subscriber that reads nothing: its socket and the broker's write buffer fill.
    let mut publisher = mqtt_connect(port);
    let mut body = mqtt_str("flood/t");
    body.extend(vec![b'x'; 64 * 1024]);
    let flood = packet(0x30, &body);
    for _ in 0..256 {
        publisher.write_all(&flood).unwrap();
    }
    assert_alive(&mut publisher);

    let signalled = Instant::now();
    service.signal("TERM");
    assert_eq!(service.next("STOPPING=1"), "STOPPING=1");
    // The client that reads is told why: DISCONNECT 0x8B (server shutting down).
    let goodbye = read_to_close(&mut reader);
    assert_eq!(goodbye, [0xe0, 0x01, 0x8b], "v5 goodbye");
    let status = loop {
        if let Some(status) = service.broker.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < signalled + TIMEOUT, "broker did not exit");
        sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    // Bounded: the goodbye to a client that does not read gives up after 2 s, and shutdown
    // waits 5 s at most for all connections (plus slack for a loaded machine).
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "exit took {:?}",
        signalled.elapsed()
    );
    service.wait_for_log("broker shutting down client_id=never-reads");
}

#[test]
fn log_file_takes_the_lines_and_rotates() {
    let dir = unique_dir("nanomq-logfile");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let log = dir.join("nanomq.log");
    let config_path = dir.join("nanomq.toml");
    let config = format!(
        "[log]\nlevel = \"info\"\nfile = {:?}\nmax_size_kb = 1\nkeep = 2\n\n\
         [[listeners]]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n",
        log.display().to_string()
    );
    std::fs::write(&config_path, config).expect("write config");
    let mut cmd = Command::new(NANOMQ);
    cmd.arg("start").arg("--config").arg(&config_path);
    cmd.env("NANOMQ_ALLOW_ROOT", "1");
    cmd.env_remove("RUST_LOG").env_remove("NOTIFY_SOCKET");
    let (mut broker, _) = Broker::spawn(dir, cmd);
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    let deadline = Instant::now() + TIMEOUT;
    broker.port = loop {
        if let Some(port) = read(&log).lines().find_map(common::parse_listening) {
            break port;
        }
        assert!(
            Instant::now() < deadline,
            "no listening line in {}",
            log.display()
        );
        sleep(Duration::from_millis(20));
    };
    // Each connect and disconnect is a line of about 150 bytes: 1 KiB fills in a few.
    for _ in 0..20 {
        mqtt_connect(broker.port);
    }
    let mut rotated = log.clone().into_os_string();
    rotated.push(".2");
    let rotated = PathBuf::from(rotated);
    while read(&rotated).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} never written",
            rotated.display()
        );
        sleep(Duration::from_millis(20));
    }
    assert!(read(&rotated).contains("client"), "{}", read(&rotated));
    for path in [&log, &rotated] {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        assert!(len <= 1024, "{} is {len} bytes", path.display());
    }
    let mut third = log.into_os_string();
    third.push(".3");
    assert!(!PathBuf::from(third).exists(), "keep = 2");
    broker.child.kill().ok();
    assert_eq!(broker.log_text(), "", "stderr is quiet when a file is set");
}
