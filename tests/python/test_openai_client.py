"""The official `openai` SDK against the real daemon and the real SmolLM2 model."""

import json

import httpx
import jsonschema
import openai
import pytest

from conftest import MODEL

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


@pytest.fixture(scope="module")
def client(daemon):
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.key, max_retries=0)


def tokens_of(daemon, messages):
    with daemon.http() as http:
        r = http.post("/api/v1/tokenize", json={"model": MODEL, "messages": messages})
        r.raise_for_status()
        return r.json()["tokens"]


def test_chat_answers_and_counts_usage(client, daemon):
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40)
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.id.startswith("chatcmpl-")
    assert r.usage.prompt_tokens == tokens_of(daemon, QUESTION)
    assert 0 < r.usage.completion_tokens < 40
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_ids_are_unique(client):
    ids = {client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2).id for _ in range(3)}
    assert len(ids) == 3


def test_streaming_chat_with_usage(client, daemon):
    stream = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=40, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    # ASCII output: every generated token (the end token excepted) is one chunk.
    assert usage.completion_tokens == len(content_chunks)
    assert usage.prompt_tokens == tokens_of(daemon, QUESTION)


def test_max_tokens_gives_finish_reason_length(client):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        temperature=0, max_tokens=5,
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5


def test_stop_sequence_cuts_the_answer(client):
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40, stop=["Paris"])
    assert "Paris" not in r.choices[0].message.content
    assert r.choices[0].message.content.startswith("The capital of France is")
    assert r.choices[0].finish_reason == "stop"


def test_json_schema_output_parses_and_validates(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=60,
        messages=[{"role": "user", "content": "Give the capital of France as JSON with city and country."}],
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema, "strict": True}},
    )
    value = json.loads(r.choices[0].message.content)
    jsonschema.validate(value, schema)


def test_json_object_mode_parses(client):
    # Greedy and with room to finish: the grammar must close the object, and it must parse.
    r = client.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=100, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Return a JSON object with the key city set to Paris."}],
    )
    assert r.choices[0].finish_reason == "stop", r
    assert json.loads(r.choices[0].message.content) == {"city": "Paris"}


def test_text_completion(client):
    # A raw prompt, no chat template: the model continues the text itself.
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].text.startswith(" Paris"), r.choices[0].text
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8


def test_models_are_listed(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids
    assert client.models.retrieve(MODEL).id == MODEL


def test_unknown_model_is_404_openai_shaped(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert err.value.status_code == 404
    assert err.value.body["code"] == "model_not_found"


def test_malformed_bodies_are_400(daemon):
    with daemon.http() as http:
        r = http.post("/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": "hi"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
        r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": QUESTION, "temperature": 7})
        assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
        for n in (0, 100):
            r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": QUESTION, "n": n})
            assert r.status_code == 400 and r.json()["error"]["param"] == "n"
        r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
        assert r.status_code == 400
        r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]})
        assert r.status_code == 400 and "role" in r.json()["error"]["param"]
        assert http.get("/healthz").status_code == 200


def test_several_choices_come_from_parallel_slots(client):
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, n=2, temperature=0.9, seed=7, max_tokens=12)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content for c in r.choices)
    # The prompt is counted once, the completions of both choices are added up.
    one = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=1)
    assert r.usage.prompt_tokens == one.usage.prompt_tokens
    assert r.usage.completion_tokens == sum(
        client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0.9, seed=7 + i, max_tokens=12)
        .usage.completion_tokens for i in range(2)
    )


def test_logprobs_of_each_token_and_the_top_alternatives(client):
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=8,
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token
        # Greedy: the chosen token is the most likely one.
        assert t.top_logprobs[0].token == t.token
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=8,
                                            logprobs=True, stream=True)
    streamed = [t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    assert [round(t.logprob, 3) for t in streamed] == [round(t.logprob, 3) for t in content]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2, top_logprobs=2)
    assert e.value.body["param"] == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2, logprobs=True, top_logprobs=21)
    assert e.value.body["param"] == "top_logprobs"


def test_several_streamed_choices_interleave_under_their_index(client):
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, n=2, temperature=0.9, seed=3,
                                            max_tokens=10, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    texts = {0: "", 1: ""}
    finishes = {}
    for c in chunks:
        for choice in c.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert set(finishes) == {0, 1} and all(texts.values())
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens <= 20
    assert sum(1 for c in chunks if c.usage) == 1
