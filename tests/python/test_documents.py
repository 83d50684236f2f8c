"""Documents and retrieval against the real daemon, the real MiniLM weights and real
files made here in every supported format: ingestion jobs, search by distinctive facts
(right document, right page), duplicates, URLs and SSRF refusals, hostile files,
kill -9 during ingestion, and tenant isolation."""

import http.server
import io
import json
import threading
import time
import zipfile

import docx
import fpdf
import httpx
import openpyxl
import pytest

from conftest import Daemon, wait_until


@pytest.fixture(scope="module")
def d():
    daemon = Daemon("jobs.retry_base_secs=1")
    yield daemon
    daemon.stop()


def make_pdf(pages, encrypt=False):
    pdf = fpdf.FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    if encrypt:
        pdf.set_encryption(owner_password="owner", user_password="secret")
    return bytes(pdf.output())


def make_docx():
    doc = docx.Document()
    doc.add_heading("Greenhouse manual", level=1)
    doc.add_paragraph("General care instructions for every plant in the building.")
    doc.add_heading("Watering", level=2)
    doc.add_paragraph("The orchids in greenhouse seven are watered every Thursday with rainwater.")
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def make_xlsx():
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Fleet"
    ws.append(["Vehicle", "Driver", "Depot"])
    ws.append(["Van 12", "Priya", "Leeds"])
    ws.append(["Truck 4", "Marek", "the Harbourside depot in Plymouth"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


FILES = {
    "notes.txt": ("text/plain", b"The lighthouse keeper on Skerry Island is named Ottoline Vance.\n"),
    "guide.md": ("text/markdown", b"# Office guide\n\n## Parking\n\nVisitors park in bay 42 behind the bakery.\n"),
    "page.html": ("text/html", b"<html><head><title>Menu</title><script>var secret='zzz';</script></head>"
                  b"<body><h1>Cafe menu</h1><p>The saffron risotto costs eleven euros.</p></body></html>"),
    "people.csv": ("text/csv", b"name,role,office\nBeatrix Quill,archivist,Room 9 in the east wing\n"),
    "config.json": ("application/json", json.dumps({"backup": {"window": "Sundays at 03:00 UTC"}}).encode()),
}


def create_collection(h, name):
    r = h.post("/api/v1/collections", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def upload(h, collection, name, data, mime="application/octet-stream"):
    r = h.post(f"/api/v1/collections/{collection}/documents", files={"file": (name, data, mime)})
    return r


def wait_indexed(h, collection, count, timeout=180):
    docs = []

    def done():
        nonlocal docs
        docs = h.get(f"/api/v1/collections/{collection}/documents").json()["documents"]
        return len(docs) == count and all(doc["state"] in ("ready", "failed") for doc in docs)

    assert wait_until(done, timeout=timeout, step=0.5), docs
    return {doc["name"]: doc for doc in docs}


def search(h, query, collections=None, limit=5):
    body = {"query": query, "limit": limit}
    if collections is not None:
        body["collections"] = collections
    r = h.post("/api/v1/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_every_format_is_indexed_and_found_by_its_facts(d):
    h = d.http()
    c = create_collection(h, "corpus")
    files = dict(FILES)
    files["report.pdf"] = ("application/pdf", make_pdf([
        "Chapter one. The committee met in spring to review the budget.",
        "Chapter two. The bridge over the river Wendle was painted teal in 1987.",
        "Chapter three. Closing remarks and thanks to the volunteers.",
    ]))
    files["manual.docx"] = ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", make_docx())
    files["fleet.xlsx"] = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", make_xlsx())
    for name, (mime, data) in files.items():
        r = upload(h, c, name, data, mime)
        assert r.status_code == 202, (name, r.text)
        assert r.json()["documents"][0]["state"] == "queued"
    docs = wait_indexed(h, c, len(files))
    failed = {n: doc["error"] for n, doc in docs.items() if doc["state"] != "ready"}
    assert not failed, failed
    assert docs["report.pdf"]["pages"] == 3
    assert {doc["media_type"] for doc in docs.values()} == {
        "text", "markdown", "html", "csv", "json", "pdf", "docx", "xlsx"}

    expectations = [
        ("Who keeps the lighthouse on Skerry Island?", "notes.txt", None),
        ("Where do visitors park?", "guide.md", None),
        ("How much is the saffron risotto?", "page.html", None),
        ("Which office is the archivist Beatrix Quill in?", "people.csv", None),
        ("When is the backup window?", "config.json", None),
        ("What colour was the bridge over the Wendle painted?", "report.pdf", 2),
        ("When are the orchids watered?", "manual.docx", None),
        ("Which depot does Marek drive from?", "fleet.xlsx", None),
    ]
    for question, name, page in expectations:
        hits = search(h, question, [c])
        assert hits, question
        top = hits[0]
        assert top["document_name"] == name, (question, [(x["document_name"], x["text"][:60]) for x in hits])
        if page is not None:
            assert top["page"] == page, top
        assert top["score"] > 0 and top["text"]
    # Structure survives: the heading path of the DOCX passage, the CSV header, no script text.
    orchids = search(h, "When are the orchids watered?", [c])[0]
    assert orchids["heading"] == "Greenhouse manual > Watering"
    assert "role: archivist" in search(h, "Beatrix Quill", [c])[0]["text"]
    assert not any("zzz" in x["text"] for x in search(h, "secret var zzz", [c], limit=20))
    # Citations can be followed: the chunk is listed in its document, the file served.
    chunks = h.get(f"/api/v1/documents/{top['document_id']}/chunks").json()
    assert chunks["total"] >= 1
    pdf = h.get(f"/api/v1/documents/{docs['report.pdf']['id']}/file")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    html = h.get(f"/api/v1/documents/{docs['page.html']['id']}/file")
    assert html.headers["content-type"].startswith("text/plain"), "stored HTML is never served as HTML"


def test_the_same_file_twice_is_one_document(d):
    h = d.http()
    c = create_collection(h, "dupes")
    first = upload(h, c, "a.txt", b"Unique content about the pelican survey.", "text/plain").json()
    second = upload(h, c, "b.txt", b"Unique content about the pelican survey.", "text/plain").json()
    assert second["duplicates"] == [first["documents"][0]["id"]]
    assert len(h.get(f"/api/v1/collections/{c}/documents").json()["documents"]) == 1


class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/article")
            self.end_headers()
            return
        if self.path == "/binary":
            body, kind = b"\x7fELF\x00\x00", "application/octet-stream"
        else:
            body = (b"<html><head><title>Local article</title></head><body><h1>Harvest</h1>"
                    b"<p>The quince harvest at Mossgrove farm starts on the ninth of October.</p></body></html>")
            kind = "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_urls_to_internal_addresses_are_refused_by_default(d, site):
    h = d.http()
    c = create_collection(h, "web-default")
    for url in [site + "/article", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/",
                "http://localhost:9/", "file:///etc/passwd", "http://10.0.0.1/"]:
        r = h.post(f"/api/v1/collections/{c}/urls", json={"url": url})
        assert r.status_code == 400, (url, r.text)
        assert r.json()["error"]["param"] == "url"
    assert "private" in h.post(f"/api/v1/collections/{c}/urls", json={"url": site}).json()["error"]["message"]


def test_a_url_is_fetched_followed_and_indexed_when_allowed(site):
    daemon = Daemon("documents.allow_private_urls=true")
    try:
        h = daemon.http()
        c = create_collection(h, "web")
        r = h.post(f"/api/v1/collections/{c}/urls", json={"url": site + "/redirect"})
        assert r.status_code == 202, r.text
        doc = r.json()["documents"][0]
        assert doc["source_url"] == site + "/article"
        wait_indexed(h, c, 1)
        hit = search(h, "When does the quince harvest start?", [c])[0]
        assert hit["document_id"] == doc["id"] and hit["heading"] == "Harvest"
        bad = h.post(f"/api/v1/collections/{c}/urls", json={"url": site + "/binary"})
        assert bad.status_code == 400 and "application/octet-stream" in bad.text
    finally:
        daemon.stop()


def zip_bomb():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w") as member:
            block = b"<w:t>" + b"A" * (1 << 20) + b"</w:t>"
            for _ in range(400):  # 400 MiB inflated
                member.write(block)
    return buf.getvalue()


def test_hostile_files_fail_their_jobs_and_the_daemon_serves_on(d):
    h = d.http()
    c = create_collection(h, "hostile")
    bomb = zip_bomb()
    assert len(bomb) < 2 << 20
    hostile = {
        "bomb.docx": bomb,
        "broken.pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\nthis is not a pdf" * 50,
        "locked.pdf": make_pdf(["Top secret minutes."], encrypt=True),
        "latin1.txt": "Caf\u00e9 cr\u00e8me".encode("latin-1"),
        "empty.md": b"   \n\n  ",
    }
    for name, data in hostile.items():
        assert upload(h, c, name, data).status_code == 202, name
    docs = wait_indexed(h, c, len(hostile), timeout=240)
    reasons = {name: doc["error"] for name, doc in docs.items()}
    assert all(doc["state"] == "failed" for doc in docs.values()), reasons
    assert "zip bomb" in reasons["bomb.docx"], reasons
    assert "damaged" in reasons["broken.pdf"], reasons
    assert "encrypted" in reasons["locked.pdf"], reasons
    assert "UTF-8" in reasons["latin1.txt"], reasons
    assert "no text" in reasons["empty.md"], reasons
    # Unsupported binaries are refused at upload, with nothing stored.
    r = upload(h, c, "tool.exe", b"MZ\x00\x00binary")
    assert r.status_code == 415, r.text
    # The daemon still answers and still indexes.
    assert h.get("/healthz").status_code == 200
    ok = upload(h, c, "fine.txt", b"The ferry to Inchcolm leaves at noon.", "text/plain")
    assert ok.status_code == 202
    wait_indexed(h, c, len(hostile) + 1)
    assert search(h, "When does the ferry to Inchcolm leave?", [c])[0]["document_name"] == "fine.txt"


def test_a_huge_single_line_is_bounded(d):
    h = d.http()
    c = create_collection(h, "huge")
    # Over documents.max_file_bytes (100 MiB): refused while streaming, nothing kept.
    try:
        r = h.post(f"/api/v1/collections/{c}/documents",
                   files={"file": ("line.txt", b"x" * (200 << 20), "text/plain")}, timeout=300)
        assert r.status_code == 413, r.text
    except httpx.TransportError:
        pass  # the daemon may close the connection as soon as the limit is passed
    assert h.get("/healthz").status_code == 200
    assert h.get(f"/api/v1/collections/{c}/documents").json()["documents"] == []
    # Under the limit: a 40 MB line of one character is not language; its job fails
    # fast with a reason, and a long line of real words is indexed.
    started = time.time()
    r = h.post(f"/api/v1/collections/{c}/documents", files={"file": ("line.txt", b"x" * (40 << 20), "text/plain")},
               timeout=300)
    assert r.status_code == 202, r.text
    words = b" ".join(b"word%d" % i for i in range(3_000))
    assert upload(h, c, "words.txt", words + b" the tapir sleeps in the afternoon", "text/plain").status_code == 202
    docs = wait_indexed(h, c, 2, timeout=240)
    assert docs["line.txt"]["state"] == "failed" and "no text" in docs["line.txt"]["error"], docs
    assert docs["words.txt"]["state"] == "ready", docs
    assert time.time() - started < 240
    assert h.get("/healthz").status_code == 200


def test_kill_during_ingestion_resumes_without_duplicates():
    daemon = Daemon()
    try:
        h = daemon.http()
        c = create_collection(h, "crash")
        for i in range(24):
            text = "\n\n".join(f"Record {i}-{j}: the courier {i} delivered parcel {j} to district {i * j}."
                               for j in range(60))
            assert upload(h, c, f"batch-{i}.txt", text.encode(), "text/plain").status_code == 202

        def some_running():
            jobs = h.get("/api/v1/jobs", params={"state": "running"}).json()["jobs"]
            return len(jobs) > 0

        assert wait_until(some_running, timeout=60, step=0.05)
        daemon.kill()
        daemon.start()
        h = daemon.http()
        docs = wait_indexed(h, c, 24, timeout=300)
        assert all(doc["state"] == "ready" for doc in docs.values()), docs
        for doc in docs.values():
            chunks = h.get(f"/api/v1/documents/{doc['id']}/chunks", params={"limit": 500}).json()
            seqs = [chunk["seq"] for chunk in chunks["chunks"]]
            assert chunks["total"] == doc["chunks"] == len(set(seqs)), doc
        jobs = h.get("/api/v1/jobs", params={"limit": 200}).json()["jobs"]
        by_doc = {}
        for job in jobs:
            by_doc.setdefault(job["document_id"], []).append(job["state"])
        assert all(states == ["done"] for states in by_doc.values()), by_doc
        # The rebuilt index serves every document (nothing lost, nothing twice).
        hits = search(h, "courier delivered parcel to district", [c], limit=50)
        assert len({hit["chunk_id"] for hit in hits}) == len(hits) == 50
    finally:
        daemon.stop()


def test_jobs_report_progress_live_and_can_be_cancelled(d):
    h = d.http()
    c = create_collection(h, "progress")
    text = "\n\n".join(f"Paragraph {j} about the annual regatta and its {j} boats." for j in range(400))
    doc = upload(h, c, "regatta.txt", text.encode(), "text/plain").json()["documents"][0]
    events = []
    with httpx.stream("GET", f"{d.url}/api/v1/jobs/{doc['job_id']}/events", headers=d.headers, timeout=120) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    assert events[-1]["state"] == "done", events[-1]
    assert any(0 < e["progress"] < 1 for e in events), [e["progress"] for e in events]
    assert events[-1]["document_id"] == doc["id"]
    # Cancel one while it embeds (progress 0.1 and on): it ends `cancelled`, its
    # document `failed` with the reason, and nothing of it is searchable.
    big = "\n\n".join(f"Paragraph {j} about the winter carnival and its {j} sledges." for j in range(3000))
    doc2 = upload(h, c, "carnival.txt", big.encode(), "text/plain").json()["documents"][0]
    with httpx.stream("GET", f"{d.url}/api/v1/jobs/{doc2['job_id']}/events", headers=d.headers, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                assert event["state"] in ("queued", "running"), event
                if event["progress"] >= 0.1:
                    break
    assert h.delete(f"/api/v1/jobs/{doc2['job_id']}").status_code == 204
    assert wait_until(lambda: h.get(f"/api/v1/jobs/{doc2['job_id']}").json()["state"] != "running", timeout=60)
    assert h.get(f"/api/v1/jobs/{doc2['job_id']}").json()["state"] == "cancelled"
    cancelled = h.get(f"/api/v1/documents/{doc2['id']}").json()
    assert (cancelled["state"], cancelled["error"], cancelled["chunks"]) == ("failed", "indexing was cancelled", 0)
    assert not any(x["document_id"] == doc2["id"] for x in search(h, "winter carnival sledges", [c]))


def test_one_users_collections_are_invisible_to_another(d):
    alice = httpx.Client(base_url=d.url, timeout=120, headers={"Authorization": "Bearer " + user_key(d, "alice")})
    bob = httpx.Client(base_url=d.url, timeout=120, headers={"Authorization": "Bearer " + user_key(d, "bob")})
    c = create_collection(alice, "alice-private")
    doc = upload(alice, c, "secret.txt", b"The vault combination is 31-17-42.", "text/plain").json()["documents"][0]
    wait_indexed(alice, c, 1)
    assert search(alice, "vault combination", [c])[0]["document_id"] == doc["id"]
    assert c not in [x["id"] for x in bob.get("/api/v1/collections").json()["collections"]]
    assert bob.get(f"/api/v1/collections/{c}").status_code == 404
    assert bob.get(f"/api/v1/collections/{c}/documents").status_code == 404
    assert bob.get(f"/api/v1/documents/{doc['id']}").status_code == 404
    assert bob.get(f"/api/v1/documents/{doc['id']}/chunks").status_code == 404
    assert bob.get(f"/api/v1/documents/{doc['id']}/file").status_code == 404
    assert bob.delete(f"/api/v1/documents/{doc['id']}").status_code == 404
    assert bob.post(f"/api/v1/collections/{c}/documents", files={"file": ("x.txt", b"x")}).status_code == 404
    assert bob.get(f"/api/v1/jobs/{doc['job_id']}").status_code == 404
    assert bob.post("/api/v1/search", json={"query": "vault combination", "collections": [c]}).status_code == 404
    assert not any(x["document_id"] == doc["id"] for x in search(bob, "vault combination"))
    # Shared by an administrator: readable by bob, still not writable.
    admin = d.http()
    assert bob.patch(f"/api/v1/collections/{c}", json={"shared": True}).status_code == 403
    assert admin.patch(f"/api/v1/collections/{c}", json={"shared": True}).status_code == 200
    assert search(bob, "vault combination", [c])[0]["document_id"] == doc["id"]
    assert bob.delete(f"/api/v1/documents/{doc['id']}").status_code == 403
    assert bob.post(f"/api/v1/collections/{c}/documents", files={"file": ("x.txt", b"x")}).status_code == 403


def user_key(d, name):
    d.cli("users", "add", name, "--role", "user")
    return d.cli("keys", "create", "--owner", name, "--scopes", "chat,documents,embeddings").strip()


def test_the_cli_adds_lists_searches_and_removes(d, tmp_path):
    import os
    import subprocess
    notes = tmp_path / "kiln.txt"
    notes.write_text("The pottery kiln in the north shed is fired every second Tuesday.")
    port = d.url.rsplit(":", 1)[1]
    env = dict(d.env, APPLIANCE_CLIENT_API_KEY=d.key)

    def cli(*args):
        return subprocess.run(d.base + ["--port", port] + list(args), capture_output=True, text=True, env=env,
                              timeout=120)

    added = cli("docs", "add", str(notes), "-c", "workshop")
    assert added.returncode == 0, added.stderr
    assert "created collection `workshop`" in added.stderr
    assert "indexed: 1 passages" in added.stderr + added.stdout, added.stderr
    listed = cli("docs", "list", "-c", "workshop")
    assert "kiln.txt" in listed.stdout and "ready" in listed.stdout, listed.stdout
    found = cli("docs", "search", "when is the kiln fired", "-c", "workshop")
    assert found.returncode == 0 and found.stdout.startswith("1. kiln.txt"), found.stdout
    doc_id = listed.stdout.splitlines()[1].split()[0]
    assert cli("docs", "rm", doc_id).returncode == 0
    assert "kiln.txt" not in cli("docs", "list", "-c", "workshop").stdout
    missing = cli("docs", "add", str(tmp_path / "nope.txt"), "-c", "workshop")
    assert missing.returncode != 0 and "not a readable file" in missing.stderr
