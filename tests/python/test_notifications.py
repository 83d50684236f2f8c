"""Notifications from the real daemon to a real local webhook receiver: a failed job and
login throttling arrive as JSON and Slack-shaped posts, on the live event stream, and in
the delivery list; the webhook URL (a secret) is never shown."""

import json
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx

from conftest import Daemon, binary, wait_until


class Receiver:
    def __init__(self):
        self.posts = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                outer.posts.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_failed_jobs_and_login_throttling_notify_every_target_and_the_live_stream():
    receiver = Receiver()
    hooks = json.dumps([f"json:{receiver.url}/json/s3cret", f"slack:{receiver.url}/slack/t0ken"])
    daemon = Daemon(f"notify.webhooks={hooks}")
    try:
        h = daemon.http()
        view = h.get("/api/v1/notifications").json()
        assert view["targets"] == [{"kind": "json", "host": "127.0.0.1"}, {"kind": "slack", "host": "127.0.0.1"}]
        assert "s3cret" not in json.dumps(view)

        # The live stream, as the UI follows it.
        seen = []

        def follow():
            with httpx.stream("GET", f"{daemon.url}/api/v1/events", headers=daemon.headers, timeout=60) as r:
                event = None
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "notification":
                        seen.append(json.loads(line[5:]))
                        return

        stream = threading.Thread(target=follow, daemon=True)
        stream.start()
        time.sleep(0.5)

        # A document with no text fails its indexing job: `job_failed`.
        c = h.post("/api/v1/collections", json={"name": "n"}).json()["id"]
        r = h.post(f"/api/v1/collections/{c}/documents", files={"file": ("blank.txt", b"\n\n  \n", "text/plain")})
        assert r.status_code == 202, r.text
        assert wait_until(lambda: len(receiver.posts) >= 2, timeout=60, step=0.2), receiver.posts
        by_path = {path.split("/")[1]: body for path, body in receiver.posts}
        assert by_path["json"]["event"] == "job_failed" and by_path["json"]["severity"] == "warning"
        assert by_path["slack"]["text"].startswith("[appliance] A document.ingest job failed")
        stream.join(timeout=10)
        assert seen and seen[0]["event"] == "job_failed", seen

        # Repeated wrong passwords: `login_throttled`, once.
        with httpx.Client(base_url=daemon.url, timeout=30) as anon:
            for _ in range(12):
                anon.post("/api/v1/auth/login", json={"name": "admin", "password": "wrong password!"})
        assert wait_until(lambda: any(b.get("event") == "login_throttled" for _, b in receiver.posts),
                          timeout=30, step=0.2), receiver.posts

        # The test button reaches every target; deliveries are listed without the URLs.
        assert h.post("/api/v1/notifications/test", json={}).json() == {"queued": 2}
        assert wait_until(lambda: sum(b.get("event") == "test" or "Test notification" in b.get("text", "")
                                      for _, b in receiver.posts) == 2, timeout=30, step=0.2)

        def listed():
            recent = h.get("/api/v1/notifications").json()["recent"]
            return len(recent) >= 6 and all(d["success"] for d in recent)

        assert wait_until(listed, timeout=30, step=0.3)
        recent = h.get("/api/v1/notifications").json()["recent"]
        assert {d["event"] for d in recent} >= {"job_failed", "login_throttled", "test"}
        assert {d["target"] for d in recent} == {"json 127.0.0.1", "slack 127.0.0.1"}
        assert "s3cret" not in json.dumps(recent) and "t0ken" not in json.dumps(recent)

        # Only administrators see or send notifications.
        key = daemon.cli("users", "add", "viewer", "--role", "user") and daemon.cli(
            "keys", "create", "--owner", "viewer", "--scopes", "chat").strip()
        with httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {key}"}) as user:
            assert user.get("/api/v1/notifications").status_code == 403
            assert user.post("/api/v1/notifications/test", json={}).status_code == 403
    finally:
        daemon.stop()
        receiver.close()


class Relay:
    """A real SMTP server (aiosmtpd) on a free loopback port, keeping what it receives,
    and requiring a sign-in when `password` is given."""

    def __init__(self, password=None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages = []
        self.logins = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode()))
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = password is not None and auth_data.password.decode() == password
            outer.logins.append((auth_data.login.decode(), ok))
            # handled=False: aiosmtpd answers the failure itself (535).
            return AuthResult(success=ok, handled=False)

        extra = {"authenticator": authenticate, "auth_require_tls": False, "auth_required": True} if password else {}
        # A free port first: the controller checks it started by connecting to its port.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **extra)
        self.controller.start()

    def close(self):
        self.controller.stop()


def test_email_notifications_go_through_a_real_smtp_relay_with_the_password_from_a_file(tmp_path):
    relay = Relay(password="relay-s3cret")
    password_file = tmp_path / "smtp-password"
    password_file.write_text("relay-s3cret\n")
    daemon = Daemon('notify.email_to=["Ops <ops@example.com>", "oncall@example.com"]',
                    'notify.email_from=appliance@example.com', 'notify.smtp_host=127.0.0.1',
                    f"notify.smtp_port={relay.port}", 'notify.smtp_security=none',
                    'notify.smtp_username=mailer', f'notify.smtp_password_file={password_file}')
    try:
        h = daemon.http()
        assert h.get("/api/v1/notifications").json()["targets"] == [{"kind": "email", "host": "127.0.0.1"}]
        assert h.post("/api/v1/notifications/test", json={}).json() == {"queued": 1}
        assert wait_until(lambda: relay.messages, timeout=30, step=0.2)
        sender, recipients, content = relay.messages[0]
        assert sender == "appliance@example.com"
        assert sorted(recipients) == ["oncall@example.com", "ops@example.com"]
        assert "Subject: [appliance] Test notification" in content
        assert "event: test" in content and "severity: info" in content
        assert relay.logins == [("mailer", True)]

        def audited():
            recent = h.get("/api/v1/notifications").json()["recent"]
            return recent and recent[0]["success"] and recent[0]["target"] == "email 127.0.0.1"

        assert wait_until(audited, timeout=30, step=0.3)
        # The password is in no answer and no log line.
        assert "relay-s3cret" not in json.dumps(h.get("/api/v1/notifications").json())
        assert "relay-s3cret" not in daemon.log()
    finally:
        daemon.stop()
        relay.close()


def test_a_refused_sign_in_fails_once_and_is_audited_without_retries(tmp_path):
    relay = Relay(password="right")
    password_file = tmp_path / "smtp-password"
    password_file.write_text("wrong")
    daemon = Daemon('notify.email_to=["ops@example.com"]', 'notify.smtp_host=localhost',
                    f"notify.smtp_port={relay.port}", 'notify.smtp_security=none',
                    'notify.smtp_username=mailer', f'notify.smtp_password_file={password_file}')
    try:
        h = daemon.http()
        h.post("/api/v1/notifications/test", json={})

        def failed():
            recent = h.get("/api/v1/notifications").json()["recent"]
            return recent and not recent[0]["success"] and recent[0]

        assert wait_until(failed, timeout=30, step=0.3)
        entry = failed()
        assert entry["attempts"] == 1 and entry["status"] == 535, entry
        assert relay.messages == [] and len(relay.logins) == 1
    finally:
        daemon.stop()
        relay.close()


def test_bad_email_settings_are_refused_at_start_with_the_key_named(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("")
    base = [binary(), "--config", str(config), "--data-dir", str(tmp_path / "data"),
            "--runtime-dir", str(tmp_path / "run"), "--log-dir", str(tmp_path / "logs"), "--port", "0"]
    cases = [
        # Plain SMTP to another host would send the password in the clear.
        (['notify.smtp_host=smtp.example.com', 'notify.smtp_security=none'],
         "notify.smtp_security"),
        (['notify.email_from=not an address'], "notify.email_from"),
        (['notify.email_to=["ops@example.com\\r\\nBcc: x@evil.example"]'], "notify.email_to"),
        (['notify.smtp_username=u'], "notify.smtp_password_file"),
        # Set but unreadable: found when the daemon starts, before it serves.
        (['notify.smtp_username=u', f'notify.smtp_password_file={tmp_path / "absent"}'],
         "notify.smtp_password_file"),
    ]
    for settings, key in cases:
        args = list(base)
        for s in ['notify.email_to=["ops@example.com"]'] + settings:
            args += ["--set", s]
        out = subprocess.run(args + ["serve"], capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and key in out.stderr, (settings, out.stdout, out.stderr)
        assert "listening on" not in out.stdout


def test_the_event_stream_is_also_a_websocket_and_refuses_other_origins():
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    daemon = Daemon()
    try:
        ws_url = daemon.url.replace("http://", "ws://") + "/api/v1/events"
        auth = {"Authorization": daemon.headers["Authorization"]}
        with connect(ws_url, additional_headers=auth, open_timeout=10) as ws:
            time.sleep(0.3)
            assert daemon.http().post("/api/v1/notifications/test", json={}).status_code == 202
            message = json.loads(ws.recv(timeout=30))
            assert message["event"] == "notification" and message["data"]["event"] == "test", message
        # Same origin is fine; another site's page cannot open it with the user's cookie.
        with connect(ws_url, additional_headers=auth, origin=daemon.url, open_timeout=10):
            pass
        try:
            with connect(ws_url, additional_headers=auth, origin="http://evil.example", open_timeout=10):
                raise AssertionError("a cross-origin WebSocket was accepted")
        except InvalidStatus as e:
            assert e.response.status_code == 403
        try:
            with connect(ws_url, open_timeout=10):
                raise AssertionError("a WebSocket without credentials was accepted")
        except InvalidStatus as e:
            assert e.response.status_code == 401
    finally:
        daemon.stop()
