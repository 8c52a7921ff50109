"""What the benchmark scripts in tests/bench share: ports, the release build, and running
`nanomq bench` for its JSON result line."""

import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = Path(sys.argv[0]).name


def log(msg):
    print(f"{TOOL}: {msg}", file=sys.stderr, flush=True)


def raise_fd_limit():
    """Children inherit it: the brokers and the load generator each need one per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(proc, port, what, log_path):
    """Until `port` on loopback accepts connections; a process that exits or is not listening
    within 15 s is killed and reported, so a failed run leaves nothing behind."""
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    raise RuntimeError(f"{what} did not start; see {log_path}")


def cargo_build(extra, target_dir=None):
    env = dict(os.environ)
    if target_dir:
        env["CARGO_TARGET_DIR"] = str(target_dir)
    cmd = ["cargo", "build", "--release", "-p", "nanomq", *extra]
    log(" ".join(cmd))
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=sys.stderr)
    return Path(target_dir or ROOT / "target") / "release" / "nanomq"


def run_bench(nanomq_bin, args, port, label, limit, pid=None):
    """Runs `nanomq bench ARGS -p PORT [--pid PID]`; returns its JSON line as a dict."""
    cmd = [str(nanomq_bin), "bench", *args, "-p", str(port)]
    if pid is not None:
        cmd += ["--pid", str(pid)]
    log(f"{label}: {' '.join(cmd[1:])}")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else None
    if p.returncode != 0 or result is None:
        sys.stderr.write(p.stderr[-2000:])
        raise RuntimeError(f"bench against {label} failed (exit {p.returncode})")
    return result


def get(result, *path):
    for key in path:
        if result is None:
            return None
        result = result.get(key)
    return result
