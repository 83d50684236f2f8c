"""The Unix socket: the host's CLI works without a key (peer authentication, like
PostgreSQL's `peer`), and other Unix users get nothing they were not given.

The tests run as root, which acts as the built-in administrator `local-admin`; the
other Unix user is `nobody` (uid 65534), through setpriv."""

import json
import os
import stat
import subprocess

import httpx
import pytest

from conftest import MODEL, Daemon

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# A client nobody can run (the test's venv lives in root's home): one GET over the
# socket, printing the status line and body, or EACCES when connecting is refused.
CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % sys.argv[2]).encode())
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
print(head.split("\r\n")[0])
print(body)
"""


def socket_path(d: Daemon) -> str:
    return os.path.join(d.root, "run", "appliance.sock")


def as_nobody(d: Daemon, path: str = "/api/v1/status") -> list[str]:
    out = subprocess.run(NOBODY + ["/usr/bin/python3", "-c", CLIENT, socket_path(d), path], capture_output=True,
                         text=True, timeout=30, cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def open_to_others(d: Daemon):
    """Lets other users reach the socket's directory (the temp dirs are 0700)."""
    for directory in (d.root, os.path.dirname(socket_path(d))):
        os.chmod(directory, 0o711)


@pytest.fixture(scope="module")
def local():
    d = Daemon()
    yield d
    d.stop()


def test_root_talks_to_the_daemon_over_the_socket_as_the_local_administrator(local):
    mode = os.stat(socket_path(local)).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    with httpx.Client(transport=httpx.HTTPTransport(uds=socket_path(local)), base_url="http://localhost",
                      timeout=30) as client:
        status = client.get("/api/v1/status")
        assert status.status_code == 200, status.text
        assert status.json()["pid"] == local.proc.pid
        me = client.get("/api/v1/auth/me").json()
        assert me["user"]["name"] == "local-admin" and me["via"] == "peer"
    # TCP without a key is unchanged.
    assert httpx.get(local.url + "/api/v1/status", timeout=30).status_code == 401


def test_the_cli_needs_no_key_on_the_host(local):
    env = {"PATH": os.environ["PATH"], "HOME": local.root}
    assert "APPLIANCE_CLIENT_API_KEY" not in env
    status = subprocess.run(local.base + ["status"], capture_output=True, text=True, timeout=60, env=env)
    assert status.returncode == 0, status.stderr
    assert f"pid {local.proc.pid}" in status.stdout and "unix:" in status.stdout
    chat = subprocess.run(local.base + ["chat", "-m", MODEL, "-p", "What is the capital of France?",
                                       "--temperature", "0", "--max-tokens", "16"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip(), "a reply was streamed"


def test_other_unix_users_are_refused(local):
    open_to_others(local)
    # 0660: the kernel refuses the connection itself.
    assert as_nobody(local) == ["EACCES"]
    # Opened up for the test, the peer check refuses them.
    os.chmod(socket_path(local), 0o666)
    try:
        status_line, body = as_nobody(local)[:2]
    finally:
        os.chmod(socket_path(local), 0o660)
    assert " 401 " in status_line, (status_line, body)
    message = json.loads(body)["error"]["message"]
    assert "nobody" in message and "server.peer_users" in message, message


def test_a_listed_unix_user_acts_as_its_appliance_user():
    d = Daemon('server.peer_users=["nobody=guest"]')
    try:
        env = {"PATH": os.environ["PATH"], "HOME": d.root}
        subprocess.run(d.base + ["users", "add", "guest"], check=True, capture_output=True, env=env)
        open_to_others(d)
        os.chmod(socket_path(d), 0o666)
        status_line, body = as_nobody(d, "/api/v1/auth/me")[:2]
        assert " 200 " in status_line, (status_line, body)
        me = json.loads(body)
        assert me["user"]["name"] == "guest" and me["user"]["role"] == "user" and me["via"] == "peer"
        # With that user's role: no administration.
        status_line, _ = as_nobody(d, "/api/v1/status")[:2]
        assert " 403 " in status_line, status_line
    finally:
        d.stop()
