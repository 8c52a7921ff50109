//! Authentication end to end with the real binary: `nanomq passwd` creates, updates and deletes
//! users (mode 0600, the file replaced by rename, prompts without echo on a terminal), a broker
//! started on that file lets the users in with their passwords, a bad ACL file stops the start
//! naming its line, and SIGHUP reloads both files without dropping connected clients: new rules
//! apply to their next PUBLISH, and a broken file is refused with the old rules kept.

#[allow(dead_code)] // the helpers this suite does not use serve the others
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use nanomq::mqtt::{
    decode, encode, Connect, Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode,
};

use common::{unique_dir, Broker};

const NANOMQ: &str = env!("CARGO_BIN_EXE_nanomq");
/// Upper bound for anything a test waits for; generous for a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(20);

fn passwd(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(NANOMQ)
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nanomq passwd");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A blocking MQTT client on the project's codec.
struct Client {
    stream: TcpStream,
    rbuf: BytesMut,
    version: ProtocolVersion,
}

impl Client {
    /// Connects and returns the client with CONNACK's reason code.
    fn connect(port: u16, user: Option<&str>, password: Option<&str>) -> (Client, ReasonCode) {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Client {
            stream,
            rbuf: BytesMut::new(),
            version: ProtocolVersion::V5,
        };
        c.send(Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            client_id: String::new(),
            username: user.map(str::to_owned),
            password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            ..Connect::default()
        })));
        match c.recv() {
            Some(Packet::ConnAck(a)) => (c, a.reason),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        encode(&p, self.version, &mut out);
        self.stream.write_all(&out).unwrap();
    }

    fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode(&mut self.rbuf, self.version, u32::MAX).unwrap() {
                return Some(p);
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(n) if n > 0 => self.rbuf.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason code.
    fn publish(&mut self, topic: &str) -> ReasonCode {
        self.send(Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id: 1,
            payload: Bytes::from_static(b"x"),
            ..Publish::default()
        }));
        match self.recv() {
            Some(Packet::PubAck(PubAck { reason, .. })) => reason,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    fn assert_alive(&mut self) {
        self.send(Packet::PingReq);
        assert_eq!(self.recv(), Some(Packet::PingResp));
    }
}

fn config(dir: &Path) -> String {
    format!(
        "[log]\nlevel = \"info\"\n\n[[listeners]]\nbind = \"127.0.0.1:0\"\n\n[auth]\n\
         password_file = \"{}\"\nacl_file = \"{}\"\n",
        dir.join("passwd").display(),
        dir.join("acl").display()
    )
}

fn wait_for_log(broker: &Broker, text: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !broker.log_text().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no log line with {text:?}; log:\n{}",
            broker.log_text()
        );
        sleep(Duration::from_millis(20));
    }
}

fn sighup(broker: &Broker) {
    let status = Command::new("kill")
        .args(["-HUP", &broker.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn passwd_manages_users_and_the_broker_lets_them_in() {
    let dir = unique_dir("nanomq-passwd");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    let path = file.to_str().unwrap();

    assert_ok(&passwd(&[path, "alice", "--password", "first"], None));
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "a new file is 0600"
    );
    // From standard input (not a terminal): one line.
    assert_ok(&passwd(&[path, "bob"], Some("bob-pw\n")));
    // An update replaces the file (a new inode: written beside it and renamed).
    let before = std::fs::metadata(&file).unwrap();
    assert_ok(&passwd(&[path, "alice", "-p", "second"], None));
    let updated = std::fs::metadata(&file).unwrap();
    assert_ne!(
        before.ino(),
        updated.ino(),
        "replaced, not rewritten in place"
    );
    assert_eq!(updated.permissions().mode() & 0o777, 0o600);
    assert_ok(&passwd(&["--delete", path, "bob"], None));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("alice:$argon2id$v=19$m=4096,t=3,p=1$"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    // Refusals: an unknown user to delete, an empty password.
    let out = passwd(&["-D", path, "bob"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user \"bob\""));
    let out = passwd(&[path, "carol"], Some("\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty password"));

    std::fs::write(dir.join("acl"), "allow all both #\n").unwrap();
    let broker = Broker::start_nanomq(dir.clone(), &config(&dir));
    let (mut alice, reason) = Client::connect(broker.port, Some("alice"), Some("second"));
    assert_eq!(reason, ReasonCode::SUCCESS);
    alice.assert_alive();
    for (user, password) in [("alice", "first"), ("bob", "bob-pw")] {
        let (_, reason) = Client::connect(broker.port, Some(user), Some(password));
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{user}");
    }
    let (_, reason) = Client::connect(broker.port, None, None);
    assert_eq!(reason, ReasonCode::NOT_AUTHORIZED);
}

/// On a terminal the password is asked twice and not echoed.
#[test]
fn passwd_prompts_without_echo_on_a_terminal() {
    use nix::pty::openpty;

    let dir = unique_dir("nanomq-passwd-tty");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    let pty = openpty(None, None).expect("openpty");
    let terminal = || Stdio::from(pty.slave.try_clone().unwrap());
    let mut child = Command::new(NANOMQ)
        .args(["passwd", file.to_str().unwrap(), "carol"])
        .stdin(terminal())
        .stdout(terminal())
        .stderr(terminal())
        .spawn()
        .expect("run nanomq passwd");
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut screen = Vec::new();
    let mut read_until = |master: &mut std::fs::File, text: &str| {
        let deadline = Instant::now() + TIMEOUT;
        while !String::from_utf8_lossy(&screen).contains(text) {
            assert!(Instant::now() < deadline, "no {text:?} in {screen:?}");
            let mut buf = [0u8; 256];
            match master.read(&mut buf) {
                Ok(n) if n > 0 => screen.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&screen).into_owned()
    };
    read_until(&mut master, "Password: ");
    master.write_all(b"tty-secret\n").unwrap();
    read_until(&mut master, "Reenter password: ");
    master.write_all(b"tty-secret\n").unwrap();
    let shown = read_until(&mut master, "carol: added");
    assert!(child.wait().unwrap().success(), "{shown}");
    assert!(
        !shown.contains("tty-secret"),
        "the password was echoed: {shown:?}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    // `carol:HASH:SCRAM-VERIFIER`
    let hash = nanomq::auth::StoredHash::parse(text.trim().split(':').nth(1).unwrap()).unwrap();
    assert!(hash.verify(b"tty-secret"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_acl_file_stops_the_start_and_check_config_naming_its_line() {
    let dir = unique_dir("nanomq-bad-acl");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("passwd"), "").unwrap();
    std::fs::write(dir.join("acl"), "default deny\nallow all publsh a\n").unwrap();
    let config = dir.join("nanomq.toml");
    std::fs::write(&config, self::config(&dir)).unwrap();
    let out = Command::new(NANOMQ)
        .args(["start", "--config", config.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .env("NANOMQ_ALLOW_ROOT", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let expected = format!(
        "ACL file {}:2: unknown action `publsh`",
        dir.join("acl").display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    // check-config reads the files the config names too.
    let out = Command::new(NANOMQ)
        .args(["check-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&expected));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_reloads_passwords_and_acl_without_dropping_clients() {
    let dir = unique_dir("nanomq-auth-reload");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    assert_ok(&passwd(
        &[file.to_str().unwrap(), "alice", "-p", "old"],
        None,
    ));
    std::fs::write(dir.join("acl"), "allow all publish a/#\n").unwrap();
    let broker = Broker::start_nanomq(dir.clone(), &config(&dir));
    let (mut alice, reason) = Client::connect(broker.port, Some("alice"), Some("old"));
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(alice.publish("a/1"), ReasonCode::NO_MATCHING_SUBSCRIBERS);
    assert_eq!(alice.publish("b/1"), ReasonCode::NOT_AUTHORIZED);

    // New password, new rules.
    assert_ok(&passwd(
        &[file.to_str().unwrap(), "alice", "-p", "new"],
        None,
    ));
    std::fs::write(dir.join("acl"), "# moved\nallow all publish b/#\n").unwrap();
    sighup(&broker);
    wait_for_log(&broker, "auth reloaded");
    // Still connected; the new rules apply to its next PUBLISH.
    alice.assert_alive();
    assert_eq!(alice.publish("a/1"), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(alice.publish("b/1"), ReasonCode::NO_MATCHING_SUBSCRIBERS);
    let (_, reason) = Client::connect(broker.port, Some("alice"), Some("old"));
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (_, reason) = Client::connect(broker.port, Some("alice"), Some("new"));
    assert_eq!(reason, ReasonCode::SUCCESS);

    // A broken ACL is refused, naming the file and line; the rules (and passwords) in use stay.
    assert_ok(&passwd(
        &[file.to_str().unwrap(), "alice", "-p", "newer"],
        None,
    ));
    std::fs::write(dir.join("acl"), "allow all publish a/#\nallow all\n").unwrap();
    sighup(&broker);
    let expected = format!(
        "auth reload refused, the password file and ACL in use stay: ACL file {}:2:",
        dir.join("acl").display()
    );
    wait_for_log(&broker, &expected);
    alice.assert_alive();
    assert_eq!(alice.publish("b/1"), ReasonCode::NO_MATCHING_SUBSCRIBERS);
    assert_eq!(alice.publish("a/1"), ReasonCode::NOT_AUTHORIZED);
    let (_, reason) = Client::connect(broker.port, Some("alice"), Some("new"));
    assert_eq!(reason, ReasonCode::SUCCESS);
}
