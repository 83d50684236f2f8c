"""The official clients with API keys: they work with one and fail cleanly without."""

import ollama
import openai
import pytest

from conftest import MODEL

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
