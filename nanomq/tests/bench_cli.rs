//! End-to-end tests of `nanomq bench` against the real broker binary: every mode runs briefly
//! against a broker of its own (`common::Broker`, port 0), and the one JSON line each prints is
//! checked for figures that agree with each other.
//!
//! Every process is killed when its guard drops, even when an assertion fails, and every wait
//! has a timeout.
#![cfg(feature = "bench")]

#[allow(dead_code)] // the helpers this suite does not use serve the others
mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{unique_dir, Broker};

const NANOMQ: &str = env!("CARGO_BIN_EXE_nanomq");

/// Upper bound for one benchmark process; generous for a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A broker without the end-to-end suites' small queue and in-flight limits, which a load test
/// would only measure the refusals of; `info`, the level of the `listening on` line.
const CONFIG: &str =
    "[log]\nlevel = \"info\"\n\n[[listeners]]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n";

fn broker() -> Broker {
    let dir = unique_dir("nanomq-bench-cli");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    Broker::start_nanomq(dir, CONFIG)
}

/// A running `nanomq bench`: stderr lines arrive on a channel as they are written, stdout is
/// collected by a thread. Killed on drop.
struct Bench {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
    stdout: Option<JoinHandle<String>>,
}

impl Bench {
    fn start(port: u16, args: &[&str]) -> Bench {
        let mut child = Command::new(NANOMQ)
            .arg("bench")
            .args(args)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nanomq bench");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        Bench {
            child,
            stderr_lines,
            stderr: Vec::new(),
            stdout: Some(stdout),
        }
    }

    /// Waits until a stderr line contains `needle`.
    fn wait_for_stderr(&mut self, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!("no {needle:?} on stderr:\n{}", self.stderr.join("\n")),
            }
        }
    }

    /// Waits for the exit; returns the status, stdout and stderr.
    fn finish(mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "nanomq bench did not exit in time"
            );
            sleep(Duration::from_millis(20));
        };
        let stdout = self.stdout.take().map(|t| t.join().unwrap_or_default());
        // The process is gone, so the stderr reader ends once it has read everything.
        let stderr_lines = std::mem::replace(&mut self.stderr_lines, mpsc::channel().1);
        self.stderr.extend(stderr_lines.iter());
        (status, stdout.unwrap_or_default(), self.stderr.join("\n"))
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `nanomq bench ARGS` to completion, asserts success and returns its JSON result.
fn bench_json(port: u16, args: &[&str]) -> Value {
    let (status, stdout, stderr) = Bench::start(port, args).finish();
    assert!(status.success(), "bench {args:?} failed:\n{stderr}");
    json_line(&stdout, &stderr)
}

/// The one line of stdout, parsed.
fn json_line(stdout: &str, stderr: &str) -> Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must be one JSON line:\n{stdout}\nstderr:\n{stderr}"
    );
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {v}"))
}

/// The checks every `run` result must pass: rates match counts, nothing is received that was
/// not sent, latency was measured for what arrived.
fn check_run(v: &Value, scenario: &str, qos: u64) {
    assert_eq!(
        (v["mode"].as_str(), v["scenario"].as_str()),
        (Some("run"), Some(scenario))
    );
    assert_eq!((u(v, "qos"), u(v, "size")), (qos, 64));
    assert_eq!(
        (u(v, "publishers"), u(v, "subscribers"), u(v, "connections")),
        (8, 1, 9)
    );
    let (sent, received, expected, lost) = (
        u(v, "sent"),
        u(v, "received"),
        u(v, "expected"),
        u(v, "lost"),
    );
    assert!(received > 0, "{v}");
    assert!(received <= sent, "{v}");
    assert_eq!(
        expected, sent,
        "one subscriber: one delivery per message; {v}"
    );
    assert_eq!(lost, expected - received, "{v}");
    assert_eq!(u(v, "duplicates"), 0, "{v}");
    assert_eq!(u(&v["latency_us"], "count"), received, "{v}");
    assert_eq!(u(&v["connack_us"], "count"), 9, "{v}");
    let duration = v["duration_s"].as_f64().unwrap();
    assert!(duration > 0.5 && duration <= 1.0, "{v}");
    let rate = v["received_per_s"].as_f64().unwrap();
    assert!((rate - received as f64 / duration).abs() < 1.0, "{v}");
    assert!(v["broker"].is_null(), "no --pid, no broker figures: {v}");
    assert_eq!(u(v, "failed"), 0);
}

#[test]
fn run_fan_in_qos0() {
    let broker = broker();
    let v = bench_json(
        broker.port,
        &["run", "--scenario", "fan-in", "-d", "1", "-w", "0"],
    );
    check_run(&v, "fan-in", 0);
}

#[test]
fn run_fan_in_qos1_loses_nothing() {
    let broker = broker();
    let v = bench_json(
        broker.port,
        &["run", "--scenario", "fan-in-qos1", "-d", "1", "-w", "0"],
    );
    check_run(&v, "fan-in-qos1", 1);
    assert_eq!(u(&v, "lost"), 0, "{v}");
    assert_eq!(u(&v, "received"), u(&v, "sent"), "{v}");
}

#[test]
fn conn_measures_broker_memory_per_connection() {
    let broker = broker();
    let pid = broker.child.id().to_string();
    let v = bench_json(broker.port, &["conn", "-c", "50", "--pid", &pid, "-d", "1"]);
    assert_eq!(v["mode"], "conn");
    assert_eq!(
        (u(&v, "connections"), u(&v, "requested"), u(&v, "failed")),
        (50, 50, 0)
    );
    assert_eq!(u(&v["connack_us"], "count"), 50);
    assert!(v["latency_us"].is_null() && v["sent"].is_null());
    let b = &v["broker"];
    assert!(b["cpu_s"].as_f64().unwrap() >= 0.0, "{v}");
    assert!(
        u(b, "rss_start_kib") > 0 && u(b, "rss_peak_kib") >= u(b, "rss_end_kib"),
        "{v}"
    );
    assert!(b["rss_per_conn_bytes"].is_number(), "{v}");
    assert!(b["cpu_us_per_msg"].is_null(), "{v}");
}

#[test]
fn sub_and_pub_in_two_processes() {
    let broker = broker();
    let pid = broker.child.id().to_string();
    let mut sub = Bench::start(
        broker.port,
        &[
            "sub", "-c", "2", "-q", "1", "-t", "two/#", "-d", "4", "-w", "0",
        ],
    );
    sub.wait_for_stderr("clients connected");
    let p = bench_json(
        broker.port,
        &[
            "pub", "-c", "2", "-q", "1", "-t", "two/%i", "-L", "500", "-d", "3", "-w", "0",
            "--pid", &pid,
        ],
    );
    assert_eq!(
        (p["mode"].as_str(), u(&p, "publishers"), u(&p, "sent")),
        (Some("pub"), 2, 1000)
    );
    assert!(p["received"].is_null() && p["latency_us"].is_null(), "{p}");
    assert!(p["broker"]["cpu_s"].as_f64().unwrap() >= 0.0, "{p}");
    assert!(
        p["broker"]["cpu_us_per_msg"].as_f64().unwrap() >= 0.0,
        "{p}"
    );

    let (status, stdout, stderr) = sub.finish();
    assert!(status.success(), "bench sub failed:\n{stderr}");
    let s = json_line(&stdout, &stderr);
    assert_eq!((s["mode"].as_str(), u(&s, "subscribers")), (Some("sub"), 2));
    assert!(s["sent"].is_null(), "{s}");
    // Both subscribers get every message of both publishers.
    assert_eq!(
        (u(&s, "received"), u(&s, "lost"), u(&s, "duplicates")),
        (2000, 0, 0),
        "{s}"
    );
    assert_eq!(u(&s, "expected"), 2000, "{s}");
    assert_eq!(u(&s["latency_us"], "count"), 2000, "{s}");
    assert!(
        stderr.contains("bench sub: 0 publishers, 2 subscribers"),
        "{stderr}"
    );
}

#[test]
fn failures_exit_non_zero_with_a_clear_message() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (status, stdout, stderr) = Bench::start(closed, &["conn", "-c", "3", "-d", "0.1"]).finish();
    assert!(!status.success());
    assert!(
        stderr.contains("3 of 3 clients failed; first error: cannot connect"),
        "{stderr}"
    );
    let v = json_line(&stdout, &stderr);
    assert_eq!((u(&v, "connections"), u(&v, "failed")), (0, 3));

    let (status, stdout, stderr) = Bench::start(closed, &["run", "--scenario", "fan-in"]).finish();
    assert!(!status.success() && stdout.is_empty());
    assert!(
        stderr.contains("9 of 9 clients could not connect"),
        "{stderr}"
    );

    let (status, _, stderr) = Bench::start(closed, &["pub", "-s", "10"]).finish();
    assert!(!status.success());
    assert!(stderr.contains("--size 10 is too small"), "{stderr}");
}
