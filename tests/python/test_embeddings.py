"""Embeddings through the official clients, against the real daemon and the real
all-MiniLM-L6-v2 weights: values match the reference (shared/models.md), and bad input
gets a precise 400."""

import math

import httpx
import ollama
import openai
import pytest

EMBEDDER = "all-MiniLM-L6-v2"
CAT = "The cat sits on the mat."
KITTEN = "A kitten is resting on a rug."
REVENUE = "Quarterly revenue grew by ten percent."
REFERENCE = [0.13418, -0.03290, -0.02480, 0.04144, -0.03635]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture(scope="module")
def d(make_daemon_module):
    return make_daemon_module()


@pytest.fixture(scope="module")
def make_daemon_module():
    from conftest import Daemon
    started = []

    def make(*settings, **kw):
        daemon = Daemon(*settings, **kw)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()


def test_openai_client_embeddings_match_the_reference(d):
    client = openai.OpenAI(base_url=d.url + "/v1", api_key=d.key)
    # The official client asks for base64 by default and decodes it itself.
    out = client.embeddings.create(model=EMBEDDER, input=[CAT, KITTEN, REVENUE])
    vectors = [item.embedding for item in out.data]
    assert [item.index for item in out.data] == [0, 1, 2]
    assert all(len(v) == 384 for v in vectors)
    for got, want in zip(vectors[0][:5], REFERENCE):
        assert abs(got - want) < 1e-3, (vectors[0][:5], REFERENCE)
    assert abs(cos(vectors[0], vectors[1]) - 0.6411) < 1e-3
    assert abs(cos(vectors[0], vectors[2]) - (-0.0272)) < 1e-3
    assert abs(math.sqrt(sum(x * x for x in vectors[0])) - 1.0) < 1e-4
    assert out.usage.prompt_tokens > 10 and out.usage.total_tokens == out.usage.prompt_tokens
    # Floats on request, the same numbers.
    floats = client.embeddings.create(model=EMBEDDER, input=CAT, encoding_format="float")
    assert max(abs(a - b) for a, b in zip(floats.data[0].embedding, vectors[0])) < 1e-6
    # "default" names engine.default_embedding_model.
    default = client.embeddings.create(model="default", input=CAT, encoding_format="float")
    assert default.model == EMBEDDER


def test_ollama_client_embed_and_legacy_embeddings(d):
    client = ollama.Client(host=d.url, headers=d.headers)
    out = client.embed(model=EMBEDDER, input=[CAT, KITTEN])
    assert len(out.embeddings) == 2
    for got, want in zip(out.embeddings[0][:5], REFERENCE):
        assert abs(got - want) < 1e-3
    assert out.prompt_eval_count > 10
    legacy = client.embeddings(model=EMBEDDER, prompt=CAT)
    assert abs(cos(legacy.embedding, out.embeddings[0]) - 1.0) < 1e-5


def test_bad_embedding_input_gets_a_precise_400(d):
    h = d.http()
    cases = [
        ({"model": EMBEDDER, "input": [[1, 2, 3]]}, "input"),
        ({"model": EMBEDDER, "input": []}, "input"),
        ({"model": EMBEDDER, "input": [""]}, "input"),
        ({"model": EMBEDDER, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": EMBEDDER, "input": "x", "dimensions": 128}, "dimensions"),
        ({"model": EMBEDDER, "input": ["x"] * 2049}, "input"),
        # 600 words is over the model's 512 positions: OpenAI's route never truncates.
        ({"model": EMBEDDER, "input": "word " * 600}, "input"),
    ]
    for body, param in cases:
        r = h.post("/v1/embeddings", json=body)
        assert r.status_code == 400, (body if len(str(body)) < 200 else param, r.text)
        assert r.json()["error"]["param"] == param, r.text
    long = h.post("/v1/embeddings", json={"model": EMBEDDER, "input": "word " * 600}).json()
    assert long["error"]["code"] == "context_length_exceeded"
    r = h.post("/v1/embeddings", json={"model": "no-such-model", "input": "x"})
    assert r.status_code == 404
    # A chat model is not an embedding model.
    r = h.post("/v1/embeddings", json={"model": "SmolLM2-135M-Instruct-Q4_1", "input": "x"})
    assert r.status_code == 404
    # Ollama truncates by default, and refuses when told not to.
    ok = h.post("/api/embed", json={"model": EMBEDDER, "input": "word " * 600})
    assert ok.status_code == 200 and len(ok.json()["embeddings"][0]) == 384
    refused = h.post("/api/embed", json={"model": EMBEDDER, "input": "word " * 600, "truncate": False})
    assert refused.status_code == 400 and "512" in refused.json()["error"]


def test_an_embeddings_key_embeds_but_cannot_chat(d):
    key = d.cli("keys", "create", "--owner", "admin", "--scopes", "embeddings").strip()
    h = httpx.Client(base_url=d.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert h.post("/v1/embeddings", json={"model": EMBEDDER, "input": CAT}).status_code == 200
    assert h.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 403
