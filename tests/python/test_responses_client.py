"""The official `openai` SDK's Responses API (`client.responses`) against the real
daemon: SmolLM2 for plain text, the test-only Qwen2.5-Coder-0.5B-Instruct for function
tools, and `previous_response_id` continuing stored exchanges, only for their owner."""

import json

import openai
import pytest

from conftest import MODEL, QWEN

QUESTION = "What is the capital of France? Answer in one sentence."
ASK = "What is the weather like in Paris today?"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def client(tool_daemon):
    return openai.OpenAI(base_url=tool_daemon.url + "/v1", api_key=tool_daemon.key, max_retries=0)


def test_input_string_answers_with_a_response_object(client):
    r = client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=40)
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.model == MODEL and r.error is None and r.incomplete_details is None
    assert [o.type for o in r.output] == ["message"]
    message = r.output[0]
    assert message.id.startswith("msg_") and message.role == "assistant" and message.status == "completed"
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    assert "Paris" in r.output_text
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens < 40
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_instructions_and_message_items(client):
    r = client.responses.create(
        model=MODEL, instructions="You are a helpful assistant.", temperature=0, max_output_tokens=40,
        input=[{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}],
    )
    assert "Paris" in r.output_text
    assert r.instructions == "You are a helpful assistant."
    plain = client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=40)
    # The instructions reached the prompt.
    assert r.usage.input_tokens > plain.usage.input_tokens


def test_max_output_tokens_leaves_it_incomplete(client):
    r = client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=3)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3


def test_streaming_events_in_order_with_sequence_numbers(client):
    events = list(client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=40,
                                          stream=True))
    types = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(types[4:-4]) == {"response.output_text.delta"}
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert "Paris" in text
    final = events[-1].response
    assert final.status == "completed" and final.output_text == text and final.usage.output_tokens > 0
    assert events[0].response.id == final.id and events[0].response.status == "in_progress"
    item_id = events[2].item.id
    assert all(e.item_id == item_id for e in events if e.type == "response.output_text.delta")


def test_stream_helper_gives_the_final_response(client):
    with client.responses.stream(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=40) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(deltas) and "Paris" in final.output_text


def test_function_call_then_output_round_trip(client):
    r = client.responses.create(model=QWEN, input=ASK, tools=[WEATHER], temperature=0, max_output_tokens=80)
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1, r.output
    call = calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] == "Paris"
    assert call.call_id.startswith("call_") and call.id.startswith("fc_") and call.status == "completed"
    assert r.output_text == ""
    # The output items go back as input, followed by the function's output.
    items = [{"role": "user", "content": ASK}] + r.output + [
        {"type": "function_call_output", "call_id": call.call_id,
         "output": json.dumps({"temperature_celsius": 31, "sky": "sunny"})},
    ]
    answer = client.responses.create(model=QWEN, input=items, tools=[WEATHER], temperature=0, max_output_tokens=60)
    assert "31" in answer.output_text, answer.output


def test_streamed_function_call(client):
    events = list(client.responses.create(model=QWEN, input=ASK, tools=[WEATHER], temperature=0,
                                          max_output_tokens=80, stream=True))
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.item.type for e in added] == ["function_call"]
    assert added[0].item.name == "get_weather"
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(arguments)["city"] == "Paris"
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done[0].arguments == arguments
    final = events[-1]
    assert final.type == "response.completed" and final.response.output[0].arguments == arguments


def test_previous_response_id_continues_the_conversation(client):
    first = client.responses.create(model=QWEN, input="My name is Ada. Please remember it.",
                                    temperature=0, max_output_tokens=30)
    second = client.responses.create(model=QWEN, previous_response_id=first.id, input="What is my name?",
                                     temperature=0, max_output_tokens=20)
    assert "Ada" in second.output_text, second.output_text
    assert second.previous_response_id == first.id
    # The earlier exchange is in the prompt: more input than the question alone.
    alone = client.responses.create(model=QWEN, input="What is my name?", temperature=0, max_output_tokens=20)
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    # A chain goes on: a third turn sees the first.
    third = client.responses.create(model=QWEN, previous_response_id=second.id, input="Spell my name backwards.",
                                    temperature=0, max_output_tokens=20)
    assert third.usage.input_tokens > second.usage.input_tokens


def test_a_function_output_continues_a_stored_call(client):
    first = client.responses.create(model=QWEN, input=ASK, tools=[WEATHER], temperature=0, max_output_tokens=80)
    call = [o for o in first.output if o.type == "function_call"][0]
    output = {"type": "function_call_output", "call_id": call.call_id,
              "output": json.dumps({"temperature_celsius": 31, "sky": "sunny"})}
    stored = client.responses.create(model=QWEN, previous_response_id=first.id, input=[output], tools=[WEATHER],
                                     temperature=0, max_output_tokens=60)
    assert "31" in stored.output_text, stored.output
    # The stored history is exactly what the client would otherwise have sent.
    sent = client.responses.create(model=QWEN, input=[{"role": "user", "content": ASK}] + first.output + [output],
                                   tools=[WEATHER], temperature=0, max_output_tokens=60)
    assert stored.usage.input_tokens == sent.usage.input_tokens


def test_unstored_and_other_users_responses_are_not_found(client, tool_daemon):
    unstored = client.responses.create(model=MODEL, input="Hello", store=False, max_output_tokens=5)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, previous_response_id=unstored.id, input="Hi", max_output_tokens=5)

    tool_daemon.cli("users", "add", "bob", "--role", "user")
    key = tool_daemon.cli("keys", "create", "--owner", "bob", "--scopes", "chat").strip()
    bob = openai.OpenAI(base_url=tool_daemon.url + "/v1", api_key=key, max_retries=0)
    admins = client.responses.create(model=MODEL, input="Hello", max_output_tokens=5)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model=MODEL, previous_response_id=admins.id, input="Hi", max_output_tokens=5)
    # Not even an administrator continues someone else's conversation.
    bobs = bob.responses.create(model=MODEL, input="Hello", max_output_tokens=5)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, previous_response_id=bobs.id, input="Hi", max_output_tokens=5)
    bob.responses.create(model=MODEL, previous_response_id=bobs.id, input="Hi", max_output_tokens=5)


def test_json_schema_format(client):
    schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"],
              "additionalProperties": False}
    r = client.responses.create(
        model=MODEL, input="What is the capital of France? Answer in JSON.", temperature=0, max_output_tokens=40,
        text={"format": {"type": "json_schema", "name": "capital", "schema": schema, "strict": True}},
    )
    assert set(json.loads(r.output_text)) == {"capital"}
    assert r.text.format.type == "json_schema"


def test_unsupported_fields_name_the_field(client):
    cases = [
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"include": ["file_search_call.results"]}, "include"),
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}]}]},
         "input[0].content[0].type"),
    ]
    for extra, param in cases:
        kwargs = {"model": MODEL, "input": "Hi", "max_output_tokens": 5, **extra}
        with pytest.raises(openai.BadRequestError) as e:
            client.responses.create(**kwargs)
        assert e.value.body["param"] == param, (extra, e.value.body)
