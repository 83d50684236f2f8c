"""What every Python benchmark in bench/ shares: where things are, bounded subprocesses,
draining a server's output, and the appliance daemon started the way a user runs it
(auth on: an administrator and an all-scopes API key made with its CLI).

Benchmarks import it as a sibling module (`from harness import …`); run them as scripts.
"""

import os
import pathlib
import platform
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or pathlib.Path.home() / ".cache/appliance/target")
MODELS = pathlib.Path(os.environ.get("TEST_MODELS_DIR") or pathlib.Path.home() / ".cache/appliance/models")
START_TIMEOUT = 120  # s, daemon start


class BenchError(Exception):
    pass


def fail(message):
    raise BenchError(message)


def run(args, timeout, **kw):
    """Runs a command to completion within `timeout` s; its output, or a BenchError."""
    try:
        r = subprocess.run(args, text=True, capture_output=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        fail(f"`{' '.join(map(str, args))}` did not finish within {timeout} s")
    if r.returncode != 0:
        fail(f"`{' '.join(map(str, args))}` failed with status {r.returncode}:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
    return r


def build_release(binary):
    """`cargo build --release` into TARGET; returns the binary to use."""
    print("building the release binary…", file=sys.stderr)
    run(["cargo", "build", "--release", "--locked", "--quiet"], 3600, cwd=ROOT,
        env=dict(os.environ, CARGO_TARGET_DIR=str(TARGET)))
    return TARGET / "release/appliance" if binary is None else binary


def require_executable(path, hint):
    if not os.access(path, os.X_OK):
        fail(f"{path} missing or not executable: {hint}")


class Output:
    """Drains a process's output on a thread (so the pipe never fills) and keeps it."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self.all = []
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream):
        for line in stream:
            self.all.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern, deadline, what):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"{what}: no line matching {pattern!r} within {START_TIMEOUT} s; output so far:\n{self.tail()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                fail(f"{what}: exited before printing {pattern!r}; output:\n{self.tail()}")
            match = re.search(pattern, line)
            if match:
                return match

    def tail(self, n=40):
        return "".join(self.all[-n:])


class Server:
    """A server process with its output drained."""

    name = "?"
    url = ""
    headers = {}
    proc = None
    out = None

    def _stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                print(f"warning: {self.name} did not stop within 20 s of SIGTERM; killed", file=sys.stderr)

    def check_alive(self):
        if self.proc.poll() is not None:
            fail(f"{self.name} exited with status {self.proc.returncode}; output:\n{self.out.tail()}")


class ApplianceDaemon(Server):
    """`appliance serve` in a fresh data dir with the default models dir, `--set` settings
    applied, auth on; `headers` carry an all-scopes API key."""

    name = "appliance"

    def __init__(self, binary, settings=(), config_text=""):
        self.root = tempfile.mkdtemp(prefix="appliance-bench-")
        config = pathlib.Path(self.root, "config.toml")
        config.write_text(config_text)
        base = [str(binary), "--config", str(config), "--data-dir", f"{self.root}/data", "--log-dir",
                f"{self.root}/logs", "--runtime-dir", f"{self.root}/run", "--models-dir", str(MODELS)]
        env = dict(os.environ, HOME=self.root)
        # For CLI commands against this daemon (over its Unix socket): base + [command].
        self.base, self.env = base, env
        run(base + ["users", "add", "--admin", "admin"], 60, env=env, stdin=subprocess.DEVNULL)
        key = run(base + ["keys", "create", "--owner", "admin", "--scopes", "all"], 60, env=env,
                  stdin=subprocess.DEVNULL).stdout.strip()
        if not re.fullmatch(r"\S{16,}", key):
            fail(f"`keys create` printed no key: {key!r}")
        self.headers = {"Authorization": f"Bearer {key}"}
        settings = ["log.file=false", *settings]
        args = base + ["--port", "0"] + [a for s in settings for a in ("--set", s)] + ["serve"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     stdin=subprocess.DEVNULL)
        self.out = Output(self.proc.stdout)
        self.url = self.out.wait_for(r"listening on (https?://[0-9.:]+)", time.monotonic() + START_TIMEOUT,
                                     "appliance serve").group(1)

    def stop(self):
        self._stop()
        shutil.rmtree(self.root, ignore_errors=True)


def commit():
    """The commit measured, marked when src or the lock file has uncommitted changes."""
    try:
        rev = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], 30).stdout.strip()
        if run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
               30).stdout:
            rev += " (+ uncommitted changes)"
        return rev
    except BenchError:
        return "?"


def cpu_model():
    return next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                platform.processor() or "?")


def median(values):
    """The median, NaN (a missing measure) ignored; NaN when nothing is left."""
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")
