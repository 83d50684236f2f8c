"""The official clients with API keys: they work with one and fail cleanly without."""

import ollama
import openai
import pytest

from conftest import MODEL, wait_until

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_openai_sdk_with_and_without_a_key(daemon):
    good = openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.key, max_retries=0)
    assert "Paris" in good.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=20).choices[0].message.content
    for bad_key in ["", "sk-not-ours", daemon.key[:-1] + ("0" if daemon.key[-1] != "0" else "1")]:
        bad = openai.OpenAI(base_url=daemon.url + "/v1", api_key=bad_key or "x", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            bad.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2)
        assert err.value.status_code == 401


def test_ollama_client_with_and_without_a_key(daemon):
    good = ollama.Client(host=daemon.url, headers={"Authorization": f"Bearer {daemon.key}"})
    assert MODEL in [m.model for m in good.list().models]
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=daemon.url).chat(model=MODEL, messages=QUESTION)
    assert err.value.status_code == 401


def test_daily_token_quota_gives_429_and_usage_is_recorded(make_daemon):
    import subprocess, os, httpx
    d = make_daemon(auth=True)
    env = {"PATH": os.environ["PATH"], "HOME": d.root}
    subprocess.run(d.base + ["users", "limits", "admin", "--daily-tokens", "12"], check=True, capture_output=True, env=env)
    client = openai.OpenAI(base_url=d.url + "/v1", api_key=d.key, max_retries=0)
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    statuses = []
    for _ in range(5):
        try:
            client.chat.completions.create(model=MODEL, messages=story, max_tokens=8, temperature=0)
            statuses.append(200)
        except openai.RateLimitError as e:
            statuses.append(429)
            assert int(e.response.headers["retry-after"]) > 0
            assert "daily quota of 12 generated tokens" in str(e)
            break
    # 8 tokens, then the 4 left (the second request is cut to the remainder), then 429.
    assert statuses[-1] == 429 and statuses.count(200) == 2, statuses
    usage = httpx.get(d.url + "/api/v1/usage", headers=d.headers).json()
    assert usage["limits"]["daily_generated_tokens"] == 12
    today = usage["data"][0]
    assert today["generated_tokens"] == 12 and today["requests"] >= 3
    # The CLI reads the database, which gets the counts in batches (every 2 s).
    cli = lambda: subprocess.run(d.base + ["usage"], capture_output=True, text=True, env=env).stdout
    assert wait_until(lambda: "admin" in cli() and " 12" in cli(), timeout=10), cli()


def test_a_refused_request_with_a_body_does_not_poison_a_kept_alive_connection(daemon):
    """A 401 before the body is read ends the connection cleanly (`Connection: close`), so
    a client reusing its connection pool never sees "server disconnected"."""
    import http.client
    import json as _json
    import urllib.parse

    url = urllib.parse.urlparse(daemon.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    body = _json.dumps({"model": MODEL, "messages": QUESTION, "padding": "x" * 200_000})
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    assert r.status == 401 and r.getheader("Connection") == "close"
    # A pooled client (the ollama client keeps connections alive) keeps working after it.
    c = ollama.Client(host=daemon.url)
    for _ in range(3):
        with pytest.raises(ollama.ResponseError) as err:
            c.chat(model=MODEL, messages=[{"role": "user", "content": "x" * 100_000}])
        assert err.value.status_code == 401
