"""Fixtures: the real `appliance` daemon on a free port with a temp data dir and the
real default models (fetched by scripts/fetch-models into $TEST_MODELS_DIR)."""

import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time

import httpx
import pytest

MODEL = "SmolLM2-135M-Instruct-Q4_1"
# A test-only instruct model whose template renders tools (models/test-models.toml).
QWEN = "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M"


def binary() -> str:
    path = os.environ.get("TEST_APPLIANCE_BIN") or str(
        pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/appliance/target"))
        / "debug"
        / "appliance"
    )
    assert os.path.exists(path), f"{path} missing: build with `cargo build` first (scripts/test does)"
    return path


def models_dir() -> str:
    path = os.environ.get("TEST_MODELS_DIR") or str(pathlib.Path.home() / ".cache/appliance/models")
    assert os.path.exists(os.path.join(path, MODEL + ".gguf")), (
        f"default models missing in {path}: run scripts/fetch-models {path}"
    )
    return path


class Daemon:
    """A running `appliance serve`."""

    def __init__(self, *settings: str, models: str | None = None, auth: bool = True,
                 data_dir: str | None = None):
        self.root = tempfile.mkdtemp(prefix="appliance-test-")
        self.data_dir = data_dir or os.path.join(self.root, "data")
        config = os.path.join(self.root, "config.toml")
        open(config, "w").close()
        base = [binary(), "--config", config, "--data-dir", self.data_dir,
                "--log-dir", os.path.join(self.root, "logs"), "--runtime-dir", os.path.join(self.root, "run"),
                "--models-dir", models or models_dir()]
        self.base = base
        env = {"PATH": os.environ.get("PATH", ""), "HOME": self.root}
        self.key = None
        if auth:
            # An administrator and an all-scopes key, made with the CLI as a person would.
            subprocess.run(base + ["users", "add", "--admin", "admin"], check=True, capture_output=True, env=env)
            out = subprocess.run(base + ["keys", "create", "--owner", "admin", "--scopes", "all"],
                                 check=True, capture_output=True, text=True, env=env)
            self.key = out.stdout.strip()
        else:
            settings = settings + ("auth.enabled=false",)
        args = base + ["--port", "0", "--set", "log.format=json", "--set", "engine.threads=2"]
        for s in settings:
            args += ["--set", s]
        self.args, self.env = args, env
        self.stderr = open(os.path.join(self.root, "stderr.log"), "w+")
        self.start()

    def start(self):
        """Starts (or, after kill(), restarts) the daemon on the same data dir."""
        self.proc = subprocess.Popen(self.args + ["serve"], stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, env=self.env)
        line = self.proc.stdout.readline()
        match = re.search(r"https?://[0-9.:]+", line)
        assert match, f"daemon did not start: {line!r} {self.log()}"
        self.url = match.group(0)

    def kill(self):
        """SIGKILL, as a crash or an OOM killer would."""
        self.proc.kill()
        self.proc.wait(timeout=15)

    def cli(self, *args: str) -> str:
        """Runs an `appliance` CLI command against this daemon's files; returns stdout."""
        out = subprocess.run(self.base + list(args), check=True, capture_output=True, text=True, env=self.env)
        return out.stdout

    def log(self) -> str:
        self.stderr.flush()
        with open(self.stderr.name) as f:
            return f.read()

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, headers=self.headers)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon():
    d = Daemon()
    yield d
    d.stop()


@pytest.fixture()
def make_daemon():
    started = []

    def make(*settings, **kw):
        # Engine behaviour tests run without authentication (loopback only); the
        # access-control tests live in tests/it/auth.rs and test_auth_clients.py.
        kw.setdefault("auth", False)
        d = Daemon(*settings, **kw)
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


@pytest.fixture(scope="module")
def tool_daemon():
    """A daemon (one per test module) whose models dir holds SmolLM2 and the test-only
    Qwen model, which is kept out of the shared models dir's listing."""
    qwen = os.path.join(models_dir(), "test-only", QWEN + ".gguf")
    assert os.path.exists(qwen), "run scripts/fetch-models --manifest models/test-models.toml"
    models = tempfile.mkdtemp(prefix="appliance-tool-models-")
    os.symlink(qwen, os.path.join(models, QWEN + ".gguf"))
    os.symlink(os.path.join(models_dir(), MODEL + ".gguf"), os.path.join(models, MODEL + ".gguf"))
    d = Daemon("engine.ctx_per_slot=4096", models=models)
    yield d
    d.stop()
    shutil.rmtree(models, ignore_errors=True)


def wait_until(predicate, timeout=10.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
