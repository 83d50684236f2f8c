"""HTTPS with a self-signed certificate made by `appliance tls self-signed`, verified by
real clients (httpx, the openai SDK), and reloaded on SIGHUP."""

import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import httpx
import openai
import pytest

from conftest import MODEL, Daemon, binary, wait_until


def served_cert_der(url):
    host, port = url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port))) as raw, ctx.wrap_socket(raw, server_hostname=host) as tls:
        return tls.getpeercert(binary_form=True)


def trust(cert):
    return ssl.create_default_context(cafile=cert)


def pem_to_der(path):
    return ssl.PEM_cert_to_DER_cert(open(path).read())


@pytest.fixture()
def tls_daemon():
    tls_dir = tempfile.mkdtemp(prefix="appliance-tls-")
    env = {"PATH": os.environ["PATH"], "HOME": tls_dir}
    out = subprocess.run([binary(), "--data-dir", tls_dir, "tls", "self-signed", "--out", tls_dir],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    cert, key = os.path.join(tls_dir, "cert.pem"), os.path.join(tls_dir, "key.pem")
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    d = Daemon(f"tls.cert={cert}", f"tls.key={key}")
    d.cert, d.tls_dir = cert, tls_dir
    yield d
    d.stop()


def test_https_is_verified_by_real_clients(tls_daemon):
    d = tls_daemon
    assert d.url.startswith("https://")
    r = httpx.get(d.url + "/healthz", verify=trust(d.cert))
    assert r.status_code == 200
    assert r.headers["strict-transport-security"].startswith("max-age=")
    # Without trusting the certificate, verification fails: no silent downgrade.
    with pytest.raises(httpx.ConnectError):
        httpx.get(d.url + "/healthz")
    client = openai.OpenAI(base_url=d.url + "/v1", api_key=d.key, max_retries=0,
                           http_client=httpx.Client(verify=trust(d.cert)))
    assert MODEL in [m.id for m in client.models.list()]
    login = httpx.post(d.url + "/api/v1/auth/login", verify=trust(d.cert), json={"name": "admin", "password": "wrong password"})
    assert login.status_code == 401


def test_sighup_reloads_the_certificate(tls_daemon):
    d = tls_daemon
    before = served_cert_der(d.url)
    assert before == pem_to_der(d.cert)
    env = {"PATH": os.environ["PATH"], "HOME": d.tls_dir}
    subprocess.run([binary(), "--data-dir", d.tls_dir, "tls", "self-signed", "--out", d.tls_dir, "--force",
                    "--host", "appliance.test"], check=True, capture_output=True, env=env)
    d.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: served_cert_der(d.url) == pem_to_der(d.cert), timeout=10)
    assert served_cert_der(d.url) != before
    assert httpx.get(d.url + "/healthz", verify=trust(d.cert)).status_code == 200


def test_the_certificates_expiry_is_checked_exported_and_doctored(tls_daemon):
    d = tls_daemon
    with httpx.Client(base_url=d.url, headers=d.headers, verify=trust(d.cert)) as h:
        ready = h.get("/readyz").json()
        check = next(c for c in ready["checks"] if c["name"] == "certificate")
        assert check["status"] == "ok" and "valid until" in check["detail"], check
        metrics = h.get("/metrics").text
    line = next(l for l in metrics.splitlines() if l.startswith("appliance_tls_certificate_expiry_timestamp_seconds "))
    expires = float(line.split()[1])
    assert time.time() + 300 * 86400 < expires < time.time() + 400 * 86400 * 10
    doctor = subprocess.run(d.base + ["--set", f"tls.cert={d.cert}", "--set", f"tls.key={d.cert.replace('cert', 'key')}",
                                      "doctor"], capture_output=True, text=True, env=d.env)
    assert "certificate" in doctor.stdout and "valid until" in doctor.stdout, doctor.stdout
