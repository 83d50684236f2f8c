"""The official `ollama` Python library against the real daemon."""

import json

import ollama
import pytest

from conftest import MODEL

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


@pytest.fixture(scope="module")
def client(daemon):
    return ollama.Client(host=daemon.url, headers={"Authorization": f"Bearer {daemon.key}"})


def test_chat_non_streaming(client):
    r = client.chat(model=MODEL, messages=QUESTION, stream=False, options={"temperature": 0, "num_predict": 40})
    assert "Paris" in r.message.content
    assert r.done and r.done_reason == "stop"
    assert r.prompt_eval_count > 0 and r.eval_count > 0
    assert r.eval_duration > 1000  # nanoseconds
    assert r.total_duration >= r.eval_duration


def test_chat_streaming(client):
    parts = list(client.chat(model=MODEL, messages=QUESTION, stream=True, options={"temperature": 0, "num_predict": 40}))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "Paris" in "".join(p.message.content for p in parts)
    assert parts[-1].eval_count == len([p for p in parts[:-1] if p.message.content])


def test_generate_and_stop(client):
    r = client.generate(model=MODEL, prompt="What is the capital of France? Answer in one sentence.",
                        options={"temperature": 0, "num_predict": 40, "stop": ["Paris"]}, stream=False)
    assert "Paris" not in r.response and r.done_reason == "stop"


def test_num_predict_gives_length(client):
    r = client.generate(model=MODEL, prompt="Tell me a long story.", options={"temperature": 0, "num_predict": 4}, stream=False)
    assert r.done_reason == "length" and r.eval_count == 4


def test_format_schema(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    r = client.chat(model=MODEL, messages=[{"role": "user", "content": "Capital of France as JSON."}],
                    format=schema, options={"temperature": 0, "num_predict": 40}, stream=False)
    assert isinstance(json.loads(r.message.content)["city"], str)


def test_tags_ps_show_version(client):
    names = [m.model for m in client.list().models]
    assert MODEL in names
    tag = next(m for m in client.list().models if m.model == MODEL)
    assert tag.details.format == "gguf" and tag.details.quantization_level == "Q4_1"
    assert tag.digest == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    client.generate(model=MODEL, prompt="Hi", options={"num_predict": 1})
    assert MODEL in [m.model for m in client.ps().models]
    shown = client.show(MODEL)
    assert shown.details.family == "llama" and "im_start" in shown.template


def test_empty_prompt_loads_and_keep_alive_zero_unloads(client):
    r = client.generate(model=MODEL, prompt="", keep_alive="10m")
    assert r.done_reason == "load"
    assert MODEL in [m.model for m in client.ps().models]
    r = client.generate(model=MODEL, prompt="", keep_alive=0)
    assert r.done_reason == "unload"
    assert MODEL not in [m.model for m in client.ps().models]


def test_unknown_model_error(client):
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="no-such-model", messages=QUESTION)
    assert err.value.status_code == 404
    assert "no-such-model" in err.value.error
