//! The broker process that end-to-end tests run against: the real `nanomq` binary (or
//! `NANOMQ_BIN`) with a config that binds `127.0.0.1:0`; the port comes from the
//! `listening on tcp HOST:PORT` line on stderr, which a thread keeps draining so the pipe never
//! fills. Killed when dropped; its log is printed when a test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a broker may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A broker process on 127.0.0.1 with its own temp directory; killed on drop.
pub struct Broker {
    /// The broker process.
    pub child: Child,
    /// Where it listens.
    pub port: u16,
    dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory name under the system temp dir, `PREFIX-PID-N-NANOS`.
pub fn unique_dir(prefix: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()))
}

/// The port from a `listening on tcp HOST:PORT` line, ANSI colours ignored.
pub fn parse_listening(line: &str) -> Option<u16> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let rest = &plain[plain.find("listening on tcp ")? + "listening on tcp ".len()..];
    let addr = rest.split_whitespace().next()?;
    let (_, port) = addr.rsplit_once(':')?;
    port.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

impl Broker {
    /// Spawns `cmd` in `dir` with stderr collected into the log; the receiver gets the port of
    /// the first `listening on tcp` line.
    pub fn spawn(dir: PathBuf, mut cmd: Command) -> (Broker, mpsc::Receiver<u16>) {
        let mut child = cmd
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn broker");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let thread_log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(port) = parse_listening(&line) {
                        sent = port_tx.send(port).is_ok();
                    }
                }
                if let Ok(mut log) = thread_log.lock() {
                    log.push(line);
                }
            }
        });
        let broker = Broker {
            child,
            port: 0,
            dir,
            log,
        };
        (broker, port_rx)
    }

    /// Starts nanomq in `dir` with `config` (which must bind port 0 on 127.0.0.1) and waits
    /// for its port.
    pub fn start_nanomq(dir: PathBuf, config_text: &str) -> Broker {
        let config = dir.join("nanomq.toml");
        std::fs::write(&config, config_text).expect("write config");
        // NANOMQ_BIN (as for the other suites) overrides the binary cargo built.
        // A relative NANOMQ_BIN is taken from the repository root.
        let bin = match std::env::var_os("NANOMQ_BIN").map(PathBuf::from) {
            Some(p) if p.is_relative() => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p),
            Some(p) => p,
            None => PathBuf::from(env!("CARGO_BIN_EXE_nanomq")),
        };
        let mut cmd = Command::new(bin);
        cmd.arg("start").arg("--config").arg(&config);
        // Tests run as root in CI, where the broker refuses to start without this.
        cmd.env("NANOMQ_ALLOW_ROOT", "1");
        let (mut broker, port_rx) = Self::spawn(dir, cmd);
        match port_rx.recv_timeout(START_TIMEOUT) {
            Ok(port) => broker.port = port,
            Err(_) => {
                let status = broker.child.try_wait().ok().flatten();
                panic!(
                    "nanomq did not print 'listening on tcp HOST:PORT' within {START_TIMEOUT:?} \
                     (exit status: {status:?}); log:\n{}",
                    broker.log_text()
                );
            }
        }
        broker
    }

    /// Everything the broker wrote to stderr so far.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .map(|l| l.join("\n"))
            .unwrap_or_else(|_| "(log lock poisoned)".into())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- broker log (127.0.0.1:{}) ----\n{}",
                self.port,
                self.log_text()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An MQTT 5 client over a plain socket, packet by packet, for tests that need exact control
/// (or to see a refusal) where an SDK would hide it.
pub struct PacketStream {
    stream: std::net::TcpStream,
    rbuf: bytes::BytesMut,
}

impl PacketStream {
    /// Connects to the broker's port; every read gives up after `timeout`.
    pub fn open(port: u16, timeout: Duration) -> PacketStream {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(timeout)).unwrap();
        PacketStream {
            stream,
            rbuf: bytes::BytesMut::new(),
        }
    }

    /// Sends one packet; an error means the broker has closed the socket.
    pub fn send(&mut self, p: &nanomq::mqtt::Packet) -> std::io::Result<()> {
        use std::io::Write;
        let mut out = bytes::BytesMut::new();
        nanomq::mqtt::encode(p, nanomq::mqtt::ProtocolVersion::V5, &mut out);
        self.stream.write_all(&out)
    }

    /// The next packet, or None once the socket is closed (or the read timed out).
    pub fn recv(&mut self) -> Option<nanomq::mqtt::Packet> {
        use std::io::Read;
        let v5 = nanomq::mqtt::ProtocolVersion::V5;
        loop {
            if let Some(p) = nanomq::mqtt::decode(&mut self.rbuf, v5, u32::MAX).unwrap() {
                return Some(p);
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(n) if n > 0 => self.rbuf.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
    }
}
