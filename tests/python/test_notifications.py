"""Notifications from the real daemon to a real local webhook receiver: a failed job and
login throttling arrive as JSON and Slack-shaped posts, on the live event stream, and in
the delivery list; the webhook URL (a secret) is never shown."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx

from conftest import Daemon, wait_until


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
