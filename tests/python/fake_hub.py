"""A local stand-in for huggingface.co, serving the URLs and headers the daemon's pull
uses (so the same code works against the real hub or a mirror):

- `GET /api/models/ORG/REPO/tree/main?recursive=true`: a JSON list of files with their
  size, git oid and LFS sha256;
- `GET /ORG/REPO/resolve/main/PATH`: 302 to a "CDN" path, with `X-Linked-Etag` (the
  sha256) and `X-Linked-Size`;
- `GET /cdn/ORG/REPO/PATH`: the bytes, honouring `Range: bytes=N-` with 206.

Faults and variations for tests: drop the connection after K bytes (once), hang after
K bytes (until released), list a wrong sha256 or a huge size, list in pages, redirect
to another origin. It also answers as an HTTP forward proxy for any host name. Every request is recorded with its headers.
"""

import hashlib
import http.server
import json
import os
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class HubFile:
    """One file of a fake repository."""

    path: str
    source: str | None = None  # a file on disk
    data: bytes | None = None  # or bytes
    listed_sha256: str | None = None  # default: the real one
    listed_size: int | None = None  # default: the real one
    lfs: bool = True

    def content_size(self) -> int:
        return os.path.getsize(self.source) if self.source else len(self.data or b"")

    def read(self, start: int, end: int) -> bytes:
        if self.source:
            with open(self.source, "rb") as f:
                f.seek(start)
                return f.read(end - start)
        return (self.data or b"")[start:end]

    def sha256(self) -> str:
        if self.listed_sha256:
            return self.listed_sha256
        h = hashlib.sha256()
        if self.source:
            with open(self.source, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        else:
            h.update(self.data or b"")
        return h.hexdigest()


@dataclass
class Request:
    method: str
    path: str
    headers: dict


@dataclass
class Faults:
    drop_after: int | None = None  # close the first CDN response after this many bytes
    hang_after: int | None = None  # stop sending after this many bytes until released
    released: threading.Event = field(default_factory=threading.Event)
    dropped: bool = False


class FakeHub:
    def __init__(self):
        self.repos: dict[str, list[HubFile]] = {}
        self.requests: list[Request] = []
        self.faults = Faults()
        self.page_size: int | None = None  # list in pages linked by `Link: rel="next"`
        self.cdn_base = ""  # where resolve redirects to: "" is this server, relatively
        self.proxied: list[str] = []  # absolute-form requests (this server as a proxy)
        self._sha_cache: dict[int, str] = {}
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.requests.append(Request("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
                try:
                    hub.handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_repo(self, repo_id: str, files: list[HubFile]):
        self.repos[repo_id] = files

    def cdn_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.startswith("/cdn/")]

    def close(self):
        self.faults.released.set()
        self.server.shutdown()
        self.server.server_close()

    def _sha(self, f: HubFile) -> str:
        key = id(f)
        if key not in self._sha_cache:
            self._sha_cache[key] = f.sha256()
        return self._sha_cache[key]

    def _find(self, repo_id: str, path: str) -> HubFile | None:
        return next((f for f in self.repos.get(repo_id, []) if f.path == path), None)

    def handle(self, h: http.server.BaseHTTPRequestHandler):
        target = h.path
        if target.startswith("http://"):
            # Absolute form: this server is being used as a forward proxy.
            self.proxied.append(target)
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
            h.path = target
        path = target.split("?", 1)[0]
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and parts[4:6] == ["tree", "main"]:
            repo_id = "/".join(parts[2:4])
            if repo_id not in self.repos:
                return self.send_json(h, 404, {"error": "Repository not found"})
            listing = []
            for f in self.repos[repo_id]:
                size = f.listed_size if f.listed_size is not None else f.content_size()
                entry = {"type": "file", "oid": "0" * 40, "size": size, "path": f.path}
                if f.lfs:
                    entry["lfs"] = {"oid": self._sha(f), "size": size, "pointerSize": 134}
                listing.append(entry)
            if self.page_size:
                query = h.path.split("?", 1)[1] if "?" in h.path else ""
                cursor = next((int(p[len("cursor="):]) for p in query.split("&") if p.startswith("cursor=")), 0)
                page = listing[cursor:cursor + self.page_size]
                more = cursor + self.page_size < len(listing)
                link = f'<{self.url}/api/models/{repo_id}/tree/main?recursive=true&cursor={cursor + self.page_size}>; rel="next"'
                return self.send_json(h, 200, page, {"Link": link} if more else {})
            return self.send_json(h, 200, listing)
        if len(parts) >= 5 and parts[2:4] == ["resolve", "main"]:
            repo_id, file_path = "/".join(parts[:2]), "/".join(parts[4:])
            f = self._find(repo_id, file_path)
            if f is None:
                return self.send_json(h, 404, {"error": "Entry not found"})
            h.send_response(302)
            h.send_header("Location", f"{self.cdn_base}/cdn/{repo_id}/{file_path}")
            h.send_header("X-Linked-Etag", f'"{self._sha(f)}"')
            h.send_header("X-Linked-Size", str(f.content_size()))
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if parts[0] == "cdn" and len(parts) >= 4:
            repo_id, file_path = "/".join(parts[1:3]), "/".join(parts[3:])
            f = self._find(repo_id, file_path)
            if f is None:
                return self.send_json(h, 404, {"error": "not found"})
            return self.send_file(h, f)
        self.send_json(h, 404, {"error": "no such route"})

    def send_json(self, h, status, value, headers=None):
        body = json.dumps(value).encode()
        h.send_response(status)
        for name, text in (headers or {}).items():
            h.send_header(name, text)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def send_file(self, h, f: HubFile):
        size = f.content_size()
        start = 0
        ranged = h.headers.get("Range")
        if ranged and ranged.startswith("bytes=") and ranged.endswith("-"):
            start = int(ranged[len("bytes="):-1])
        if start >= size and size > 0:
            h.send_response(416)
            h.send_header("Content-Range", f"bytes */{size}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        h.send_header("Content-Length", str(size - start))
        h.send_header("ETag", f'"{self._sha(f)}"')
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        limit = size
        faults = self.faults
        drop = faults.drop_after is not None and not faults.dropped
        if drop:
            faults.dropped = True
            limit = min(size, start + faults.drop_after)
        hang = faults.hang_after is not None and not faults.released.is_set()
        if hang:
            limit = min(size, start + faults.hang_after)
        at = start
        while at < limit:
            chunk = f.read(at, min(limit, at + (1 << 16)))
            h.wfile.write(chunk)
            at += len(chunk)
        h.wfile.flush()
        if hang:
            faults.released.wait(timeout=120)
        if drop or hang:
            # An abrupt end: the body is shorter than its Content-Length.
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            h.close_connection = True
