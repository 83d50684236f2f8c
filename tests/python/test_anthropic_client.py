"""The official `anthropic` SDK against the real daemon's `/v1/messages`: SmolLM2 for
plain text, the test-only Qwen2.5-Coder-0.5B-Instruct for tools (its template renders
them; SmolLM2's does not, and a forced choice still works through the grammar)."""

import json

import anthropic
import httpx
import pytest

from conftest import MODEL, QWEN

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}
# The SDK no longer offers `temperature` (newer Claude models fix it); the API and this
# server still take it.
T0 = {"extra_body": {"temperature": 0}}
TIME = {
    "name": "get_time",
    "description": "Get the current time in a time zone",
    "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
}


@pytest.fixture(scope="module")
def client(tool_daemon):
    # The SDK sends the key as `x-api-key` and adds `/v1/messages` to the base URL.
    return anthropic.Anthropic(base_url=tool_daemon.url, api_key=tool_daemon.key, max_retries=0)


def test_messages_create_answers_with_anthropics_shape(client):
    r = client.messages.create(model=MODEL, max_tokens=40, **T0, messages=QUESTION)
    assert r.type == "message" and r.role == "assistant" and r.model == MODEL
    assert r.id.startswith("msg_")
    assert [b.type for b in r.content] == ["text"]
    assert "Paris" in r.content[0].text
    assert r.stop_reason == "end_turn" and r.stop_sequence is None
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens < 40


def test_system_prompt_blocks_and_max_tokens(client):
    r = client.messages.create(
        model=MODEL, max_tokens=3, **T0, messages=QUESTION,
        system=[{"type": "text", "text": "You are a geography teacher.", "cache_control": {"type": "ephemeral"}}],
    )
    assert r.stop_reason == "max_tokens"
    assert r.usage.output_tokens == 3


def test_stream_text_and_final_message(client):
    with client.messages.stream(model=MODEL, max_tokens=40, **T0, messages=QUESTION) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "Paris" in text
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


def test_raw_events_come_in_anthropics_order(tool_daemon):
    body = {"model": MODEL, "max_tokens": 20, "temperature": 0, "messages": QUESTION, "stream": True}
    headers = {"x-api-key": tool_daemon.key, "anthropic-version": "2023-06-01"}
    names = []
    with httpx.Client(base_url=tool_daemon.url, timeout=120) as http:
        with http.stream("POST", "/v1/messages", json=body, headers=headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("event: "):
                    names.append(line[len("event: "):])
                elif line.startswith("data: "):
                    assert json.loads(line[len("data: "):])["type"] == names[-1]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_tool_use_then_tool_result_round_trip(client):
    r = client.messages.create(model=QWEN, max_tokens=80, **T0, tools=[WEATHER], messages=ASK)
    assert r.stop_reason == "tool_use", r
    uses = [b for b in r.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather"
    assert uses[0].input == {"city": "Paris"} or uses[0].input["city"] == "Paris"
    assert uses[0].id.startswith("toolu_")
    # Call syntax never leaks into text.
    assert not any(b.type == "text" and ("<tool_call>" in b.text or "{" in b.text) for b in r.content)
    history = ASK + [
        {"role": "assistant", "content": r.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                      "content": json.dumps({"temperature_celsius": 31, "sky": "sunny"})}]},
    ]
    answer = client.messages.create(model=QWEN, max_tokens=60, **T0, tools=[WEATHER], messages=history)
    assert answer.stop_reason == "end_turn"
    assert "31" in answer.content[0].text, answer


def test_streamed_tool_use(client):
    with client.messages.stream(model=QWEN, max_tokens=80, **T0, tools=[WEATHER, TIME], messages=ASK) as s:
        final = s.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_weather"]
    assert uses[0].input["city"] == "Paris"
    assert final.stop_reason == "tool_use"


def test_forced_tool_choice_even_on_a_tiny_model(client):
    r = client.messages.create(
        model=MODEL, max_tokens=60, **T0, tools=[WEATHER, TIME],
        tool_choice={"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
    )
    uses = [b for b in r.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_time"]
    assert isinstance(uses[0].input["zone"], str)
    assert r.stop_reason == "tool_use"


def test_errors_have_anthropics_shape_and_status(client, tool_daemon):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    # Anthropic's error body has no `param`: the message names the field.
    assert e.value.body["error"]["message"].startswith("messages[0].content[0].type: ")

    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model=MODEL, max_tokens=5, messages=QUESTION,
                               thinking={"type": "enabled", "budget_tokens": 1024})
    assert e.value.body["error"]["message"].startswith("thinking: ")

    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="no-such-model", max_tokens=5, messages=QUESTION)
    assert e.value.body["error"]["type"] == "not_found_error"

    bad = anthropic.Anthropic(base_url=tool_daemon.url, api_key="apl_000000000000_0000", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model=MODEL, max_tokens=5, messages=QUESTION)
    assert e.value.body["error"]["type"] == "authentication_error"

    with httpx.Client(base_url=tool_daemon.url, timeout=60) as http:
        # max_tokens is required, as on Anthropic's API.
        r = http.post("/v1/messages", json={"model": MODEL, "messages": QUESTION}, headers={"x-api-key": tool_daemon.key})
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in r.json()["error"]["message"]
        # The key works as a bearer token too.
        r = http.post("/v1/messages", json={"model": MODEL, "max_tokens": 2, "messages": QUESTION},
                      headers=tool_daemon.headers)
        assert r.status_code == 200 and r.json()["type"] == "message"
