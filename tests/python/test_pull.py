"""Pulling models from a (fake) Hugging Face hub, and Ollama's model management
(`/api/pull`, `/api/delete`, `/api/copy`, `/api/create`, `/api/show`), through the real
daemon and the official `ollama` client; offline bundles through the CLI."""

import os
import subprocess
import tarfile
import threading

import httpx
import ollama
import pytest

from conftest import MODEL, Daemon, binary, models_dir, wait_until
from fake_hub import FakeHub, HubFile

SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
REPO = "test-org/SmolLM2-GGUF"
PULLED = "smol-pulled-Q4_1"
REF = f"hf.co/{REPO}:Q4_1"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def gguf() -> str:
    return os.path.join(models_dir(), MODEL + ".gguf")


@pytest.fixture()
def hub():
    h = FakeHub()
    h.add_repo(REPO, [
        HubFile("README.md", data=b"# SmolLM2 for tests\n", lfs=False),
        HubFile(f"{PULLED}.gguf", source=gguf()),
        HubFile("mmproj-smol-f16.gguf", data=b"not a model"),
    ])
    yield h
    h.close()


@pytest.fixture()
def pulld(hub, tmp_path):
    """An authenticated daemon pulling from the fake hub into its own models dir (the
    default model linked in, so the daemon is ready)."""
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(gguf(), models / f"{MODEL}.gguf")
    d = Daemon(f"pull.hub_url={hub.url}", models=str(models))
    d.models = models
    yield d
    d.stop()


def client(d) -> ollama.Client:
    return ollama.Client(host=d.url, headers=d.headers)


def installed(d) -> list[str]:
    return [m.model for m in client(d).list().models]


def test_pull_streams_progress_then_the_model_chats(pulld, hub):
    hub.page_size = 1  # the listing comes in three pages
    parts = list(client(pulld).pull(REF, stream=True))
    statuses = [p.status for p in parts]
    assert statuses[0] == "pulling manifest"
    assert statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    progress = [p for p in parts if p.digest]
    assert progress and all(p.digest == f"sha256:{SHA256}" for p in progress)
    assert all(p.status == f"pulling {SHA256[:12]}" for p in progress)
    size = os.path.getsize(gguf())
    assert progress[-1].total == size and progress[-1].completed == size
    assert [p.completed for p in progress] == sorted(p.completed for p in progress)

    tags = {m.model: m for m in client(pulld).list().models}
    assert PULLED in tags and tags[PULLED].digest == SHA256
    assert tags[PULLED].details.quantization_level == "Q4_1"
    reply = client(pulld).chat(model=PULLED, messages=QUESTION, stream=False,
                               options={"temperature": 0, "num_predict": 40})
    assert "Paris" in reply.message.content
    assert not list((pulld.models / ".partial").iterdir()), "no partial file is left"

    # The token is not configured: no Authorization reaches the hub; the redirect is
    # followed to the CDN path.
    assert all("authorization" not in r.headers for r in hub.requests)
    assert len([r for r in hub.requests if "/tree/main" in r.path]) == 3
    assert len(hub.cdn_requests()) == 1
    # Pulling again finds it installed: success without downloading.
    again = client(pulld).pull(REF, stream=False)
    assert again.status == "success"
    assert len(hub.cdn_requests()) == 1

    audit = httpx.get(f"{pulld.url}/api/v1/audit", headers=pulld.headers).json()["data"]
    pulls = [a for a in audit if a["action"] == "model.pull"]
    assert pulls and pulls[0]["success"] and pulls[0]["target"] == PULLED


def test_the_cli_pulls_through_the_daemon(pulld, hub):
    port = pulld.url.rsplit(":", 1)[1]
    out = subprocess.run([binary(), "--port", port, "--api-key", pulld.key, "models", "pull",
                          f"https://huggingface.co/{REPO}/blob/main/{PULLED}.gguf"],
                         capture_output=True, text=True, timeout=300,
                         env={"PATH": os.environ["PATH"], "HOME": pulld.root})
    assert out.returncode == 0, out.stderr
    assert "pulled" in out.stdout
    assert PULLED in installed(pulld)
    # Errors come back as the daemon's message and a failure exit code.
    out = subprocess.run([binary(), "--port", port, "--api-key", pulld.key, "models", "pull", "llama3"],
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"], "HOME": pulld.root})
    assert out.returncode == 1
    assert "only Hugging Face GGUF references are supported" in out.stderr


def test_the_token_goes_to_the_hub_only(hub, tmp_path):
    port = hub.url.rsplit(":", 1)[1]
    hub.cdn_base = f"http://localhost:{port}"  # another origin, as a real CDN is
    d = Daemon(f"pull.hub_url={hub.url}", "pull.token=hf_SeCrEt123", models=str(tmp_path))
    try:
        assert list(client(d).pull(REF, stream=True))[-1].status == "success"
        to_hub = [r for r in hub.requests if not r.path.startswith("/cdn/")]
        assert to_hub and all(r.headers.get("authorization") == "Bearer hf_SeCrEt123" for r in to_hub)
        assert hub.cdn_requests() and all("authorization" not in r.headers for r in hub.cdn_requests())
        assert "hf_SeCrEt123" not in d.log()
        shown = d.cli("--set", "pull.token=hf_SeCrEt123", "config", "show")
        assert "hf_SeCrEt123" not in shown and 'token = "(set)"' in shown
    finally:
        d.stop()


def test_pulls_use_the_configured_proxy_and_only_that(hub, tmp_path):
    # The hub's name does not resolve: only the proxy (the fake hub) can reach it.
    d = Daemon("pull.hub_url=http://hub.invalid", f"pull.proxy={hub.url}", models=str(tmp_path / "a"))
    try:
        assert list(client(d).pull(REF, stream=True))[-1].status == "success"
        assert any(p.startswith("http://hub.invalid/api/models/") for p in hub.proxied)
        assert any(p.startswith("http://hub.invalid/cdn/") for p in hub.proxied)
    finally:
        d.stop()
    # The environment's proxy variables are ignored: a dead proxy there changes nothing.
    d = Daemon(f"pull.hub_url={hub.url}", models=str(tmp_path / "b"))
    try:
        d.kill()
        d.env.update({"HTTP_PROXY": "http://127.0.0.1:1", "http_proxy": "http://127.0.0.1:1",
                      "HTTPS_PROXY": "http://127.0.0.1:1", "ALL_PROXY": "http://127.0.0.1:1"})
        d.start()
        proxied = len(hub.proxied)
        assert list(client(d).pull(REF, stream=True))[-1].status == "success"
        assert len(hub.proxied) == proxied
    finally:
        d.stop()


def test_a_dropped_connection_resumes_with_a_range(pulld, hub):
    hub.faults.drop_after = 3_000_000
    parts = list(client(pulld).pull(REF, stream=True))
    assert parts[-1].status == "success"
    cdn = hub.cdn_requests()
    assert len(cdn) == 2, [r.path for r in cdn]
    assert "range" not in cdn[0].headers
    resumed_at = int(cdn[1].headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= 3_000_000
    tag = next(m for m in client(pulld).list().models if m.model == PULLED)
    assert tag.digest == SHA256
    assert "download interrupted; resuming" in pulld.log()


def test_a_pull_resumes_after_a_daemon_restart(pulld, hub):
    hub.faults.hang_after = 5_000_000
    part = pulld.models / ".partial" / f"{SHA256}.gguf.part"

    def pull_until_killed():
        try:
            list(client(pulld).pull(REF, stream=True))
        except Exception:
            pass

    thread = threading.Thread(target=pull_until_killed, daemon=True)
    thread.start()
    assert wait_until(lambda: part.exists() and part.stat().st_size >= 5_000_000, timeout=60)
    pulld.kill()
    hub.faults.released.set()
    thread.join(timeout=30)
    pulld.start()
    parts = list(client(pulld).pull(REF, stream=True))
    assert parts[-1].status == "success"
    assert parts[1].completed >= 5_000_000, "the first progress line counts what was on disk"
    last = hub.cdn_requests()[-1]
    assert last.headers["range"] == "bytes=5000000-"
    assert not part.exists()
    assert PULLED in installed(pulld)


def test_a_hash_mismatch_installs_nothing(pulld, hub):
    wrong = "0" * 64
    hub.add_repo("test-org/corrupt", [HubFile("corrupt-Q4_1.gguf", source=gguf(), listed_sha256=wrong)])
    with pytest.raises(ollama.ResponseError) as err:
        list(client(pulld).pull("hf.co/test-org/corrupt", stream=True))
    assert "does not match" in err.value.error
    assert "corrupt-Q4_1" not in installed(pulld)
    assert not (pulld.models / "corrupt-Q4_1.gguf").exists()
    assert not (pulld.models / ".partial" / f"{wrong}.gguf.part").exists()
    # The same failure without streaming is a 502 with Ollama's error shape.
    r = httpx.post(f"{pulld.url}/api/pull", headers=pulld.headers, timeout=120,
                   json={"model": "hf.co/test-org/corrupt", "stream": False})
    assert r.status_code == 502 and "does not match" in r.json()["error"]


def test_references_are_checked_before_anything_downloads(pulld, hub):
    hub.add_repo("test-org/two-quants", [HubFile("m-Q8_0.gguf", data=b"x"), HubFile("m-Q2_K.gguf", data=b"y")])
    hub.add_repo("test-org/clash", [HubFile(f"{MODEL}.gguf", data=b"other", listed_sha256="1" * 64)])
    hub.add_repo("test-org/split", [HubFile("m-Q4_K_M-00001-of-00002.gguf", data=b"x"),
                                    HubFile("m-Q4_K_M-00002-of-00002.gguf", data=b"y")])
    cases = [
        ("llama3", 400, "only Hugging Face GGUF references are supported"),
        ("registry.ollama.ai/library/llama3:latest", 400, "hf.co/ORG/REPO:QUANT"),
        ("hf.co/test-org", 400, "invalid reference"),
        ("hf.co/test-org/SmolLM2-GGUF/../../etc/passwd.gguf", 400, "invalid reference"),
        ("hf.co/test-org/two-quants", 400, "m-Q2_K.gguf, m-Q8_0.gguf"),
        ("hf.co/test-org/split", 400, "split"),
        ("hf.co/test-org/SmolLM2-GGUF:Q9_9", 404, "smol-pulled-Q4_1.gguf"),
        ("hf.co/test-org/no-such-repo", 404, "does not exist"),
        ("hf.co/test-org/clash", 409, f"a different model named `{MODEL}` is installed"),
        ("", 400, "required"),
    ]
    for ref, status, needle in cases:
        r = httpx.post(f"{pulld.url}/api/pull", headers=pulld.headers, json={"model": ref}, timeout=30)
        assert r.status_code == status, (ref, r.status_code, r.text)
        assert needle in r.json()["error"], (ref, r.text)
    with pytest.raises(ollama.ResponseError) as err:
        client(pulld).pull("llama3")
    assert err.value.status_code == 400
    assert hub.cdn_requests() == []


def test_too_little_disk_space_is_507(hub, tmp_path):
    hub.add_repo("test-org/huge", [HubFile("huge-Q4_K_M.gguf", data=b"GGUF", listed_size=15 << 40)])
    d = Daemon(f"pull.hub_url={hub.url}", "pull.max_download_bytes=17592186044416", models=str(tmp_path))
    try:
        r = httpx.post(f"{d.url}/api/pull", headers=d.headers, json={"model": "hf.co/test-org/huge"}, timeout=30)
        assert r.status_code == 507, r.text
        message = r.json()["error"]
        assert "not enough disk space" in message and "bytes are free" in message, message
        assert str(tmp_path) not in message
    finally:
        d.stop()
    # With the default bound on one file's size, the same listing is refused for that.
    d = Daemon(f"pull.hub_url={hub.url}", models=str(tmp_path))
    try:
        r = httpx.post(f"{d.url}/api/pull", headers=d.headers, json={"model": "hf.co/test-org/huge"}, timeout=30)
        assert r.status_code == 400 and "pull.max_download_bytes" in r.json()["error"]
    finally:
        d.stop()
    assert hub.cdn_requests() == []


def test_model_management_is_for_administrators(pulld):
    pulld.cli("users", "add", "bob")
    key = pulld.cli("keys", "create", "--owner", "bob", "--scopes", "chat").strip()
    # A new client (connection) per call: a refusal sent before the request body was
    # read can close the connection under the next request on it.
    def user():
        return ollama.Client(host=pulld.url, headers={"Authorization": f"Bearer {key}"})

    for call in [lambda: user().pull(REF), lambda: user().delete(MODEL), lambda: user().copy(MODEL, "x"),
                 lambda: user().create(model="x", from_=MODEL)]:
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == 403
    assert MODEL in [m.model for m in user().list().models]


def test_copy_create_show_delete(pulld):
    c = client(pulld)
    c.copy(MODEL, "smol-copy")
    assert "smol-copy" in installed(pulld)
    with pytest.raises(ollama.ResponseError) as err:
        c.copy(MODEL, "smol-copy")
    assert err.value.status_code == 409
    with pytest.raises(ollama.ResponseError) as err:
        c.copy("no-such-model", "whatever")
    assert err.value.status_code == 404

    c.create(model="smol-terse", from_=MODEL, system="You are terse.",
             parameters={"temperature": 0.1, "stop": ["END"], "num_predict": 64})
    shown = c.show("smol-terse")
    assert "SYSTEM \"\"\"You are terse.\"\"\"" in shown.modelfile
    assert "temperature" in shown.parameters and "\"END\"" in shown.parameters
    assert "im_start" in shown.template, "the GGUF's own template when none is set"
    # The model's SYSTEM opens chats that bring none (more prompt tokens), not others.
    terse = c.chat(model="smol-terse", messages=QUESTION, stream=False, options={"num_predict": 1})
    plain = c.chat(model=MODEL, messages=QUESTION, stream=False, options={"num_predict": 1})
    assert terse.prompt_eval_count > plain.prompt_eval_count
    own = [{"role": "system", "content": "Hi."}] + QUESTION
    assert (c.chat(model="smol-terse", messages=own, stream=False, options={"num_predict": 1}).prompt_eval_count
            == c.chat(model=MODEL, messages=own, stream=False, options={"num_predict": 1}).prompt_eval_count)

    # PARAMETER fills what a request leaves unset, on every API; the request's own wins.
    c.create(model="smol-short", from_=MODEL, parameters={"num_predict": 3, "temperature": 0})
    count = [{"role": "user", "content": "Count from one to fifty, in words."}]
    short = c.chat(model="smol-short", messages=count, stream=False)
    assert short.eval_count == 3 and short.done_reason == "length"
    longer = c.chat(model="smol-short", messages=count, stream=False, options={"num_predict": 12})
    assert longer.eval_count == 12
    oa = httpx.post(f"{pulld.url}/v1/chat/completions", headers=pulld.headers, timeout=60,
                    json={"model": "smol-short", "messages": count})
    assert oa.json()["usage"]["completion_tokens"] == 3, oa.text

    # A Modelfile (older clients) on top of a model with settings: merged.
    r = httpx.post(f"{pulld.url}/api/create", headers=pulld.headers, json={
        "model": "smol-mf", "stream": False,
        "modelfile": "FROM smol-terse\nPARAMETER top_k 20\nTEMPLATE \"\"\"{{ .Prompt }}\"\"\"\n"})
    assert r.status_code == 200, r.text
    shown = c.show("smol-mf")
    assert "top_k" in shown.parameters and "temperature" in shown.parameters
    assert shown.template == "{{ .Prompt }}"
    assert "You are terse." in shown.modelfile

    # From a GGUF file on the daemon's host.
    parts = list(c.create(model="smol-file", from_=gguf(), stream=True))
    assert parts[-1].status == "success"
    assert "smol-file" in installed(pulld)
    assert gguf() not in c.show("smol-file").modelfile, "host paths are not shown to users"

    for body, needle in [
        ({"model": "bad", "from": MODEL, "parameters": {"temperature": 9}}, "temperature"),
        ({"model": "bad", "from": MODEL, "parameters": {"mirostat": 1}}, "unsupported parameter"),
        ({"model": "bad", "from": "relative/x.gguf"}, "absolute path"),
        ({"model": "bad", "from": "/no/such/file.gguf"}, "no such file"),
        ({"model": "bad", "files": {"x.gguf": "sha256:" + "0" * 64}}, "not supported"),
        ({"model": "bad", "modelfile": "FROM x\nADAPTER y"}, "ADAPTER"),
        ({"model": "../bad", "from": MODEL}, "invalid model name"),
        ({"model": "bad"}, "`from`"),
    ]:
        r = httpx.post(f"{pulld.url}/api/create", headers=pulld.headers, json=body)
        assert r.status_code == 400, (body, r.text)
        assert needle in r.json()["error"], (body, r.text)
    assert "bad" not in installed(pulld)

    c.delete("smol-copy")
    assert "smol-copy" not in installed(pulld)
    with pytest.raises(ollama.ResponseError) as err:
        c.delete("smol-copy")
    assert err.value.status_code == 404
    c.delete("smol-terse")
    assert not (pulld.models / "smol-terse.modelfile.json").exists()
    with pytest.raises(ollama.ResponseError) as err:
        c.delete(MODEL)
    assert err.value.status_code == 409, "the default model stays"
    actions = [a["action"] for a in httpx.get(f"{pulld.url}/api/v1/audit", headers=pulld.headers).json()["data"]]
    for action in ["model.copy", "model.create", "model.delete"]:
        assert action in actions


def test_export_and_import_round_trip(pulld, tmp_path):
    client(pulld).create(model="smol-bundled", from_=MODEL, system="Be brief.", parameters={"top_k": 10})
    bundle = tmp_path / "smol.tar"
    out = pulld.cli("models", "export", "smol-bundled", "--to", str(bundle))
    assert "exported smol-bundled" in out
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == ["manifest.json", "smol-bundled.gguf", "smol-bundled.modelfile.json"]

    other = tmp_path / "other-models"
    other.mkdir()
    base = pulld.base[:-1] + [str(other)]
    env = {"PATH": os.environ["PATH"], "HOME": pulld.root}
    out = subprocess.run(base + ["models", "import", str(bundle)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "every checksum verified" in out.stdout
    assert (other / "smol-bundled.gguf").exists() and (other / "smol-bundled.modelfile.json").exists()
    out = subprocess.run(base + ["models", "import", str(bundle)], capture_output=True, text=True, env=env)
    assert "already installed" in out.stdout

    # One flipped byte inside the weights: refused, nothing installed.
    damaged = tmp_path / "damaged.tar"
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    out = subprocess.run(base + ["models", "import", str(damaged), "--name", "smol-damaged"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "does not match the bundle's manifest" in out.stderr
    assert not (other / "smol-damaged.gguf").exists()
    assert not (other / "smol-damaged.modelfile.json").exists()
