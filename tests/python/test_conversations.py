"""Server-side conversations: create, chat, reload from the database, search,
pagination, export/import round trip, and replies cut off by a disconnect."""

import json
import sqlite3
import os

import httpx
import pytest

from conftest import MODEL, wait_until


def sse_events(response):
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[6:])


@pytest.fixture()
def http(daemon):
    with daemon.http() as client:
        yield client


def new_conversation(http, **fields):
    r = http.post("/api/v1/conversations", json={"settings": {"temperature": 0, "max_tokens": 30}, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def test_chat_is_stored_and_reloads_from_the_database(daemon, http):
    conv = new_conversation(http)
    with http.stream("POST", f"/api/v1/conversations/{conv['id']}/messages",
                     json={"content": "What is the capital of France?"}) as r:
        events = list(sse_events(r))
    assert events[-1]["type"] == "done"
    streamed = "".join(e["text"] for e in events if e["type"] == "token")
    assert "Paris" in streamed
    assert events[-1]["message"]["content"] == streamed

    got = http.get(f"/api/v1/conversations/{conv['id']}").json()
    assert [m["role"] for m in got["messages"]] == ["user", "assistant"]
    assert got["messages"][1]["content"] == streamed
    assert got["messages"][1]["status"] == "complete"
    assert got["messages"][1]["completion_tokens"] > 0
    assert got["conversation"]["title"] == "What is the capital of France?"

    # The rows are really in the SQLite file.
    db = sqlite3.connect(os.path.join(daemon.root, "data", "appliance.db"))
    rows = db.execute("SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY id", (conv["id"],)).fetchall()
    assert rows == [("user", "What is the capital of France?"), ("assistant", streamed)]

    # The next turn sees the history.
    r = http.post(f"/api/v1/conversations/{conv['id']}/messages", json={"content": "Repeat the city name.", "stream": False})
    assert r.status_code == 200
    assert r.json()["message"]["prompt_tokens"] > events[-1]["message"]["prompt_tokens"]


def test_search_finds_a_word_from_a_reply(http):
    conv = new_conversation(http)
    r = http.post(f"/api/v1/conversations/{conv['id']}/messages",
                  json={"content": "What is the capital of France?", "stream": False})
    assert "Paris" in r.json()["message"]["content"]
    hits = http.get("/api/v1/conversations/search", params={"q": "paris"}).json()["data"]
    assert conv["id"] in [h["conversation"]["id"] for h in hits]
    hit = next(h for h in hits if h["conversation"]["id"] == conv["id"] and h["message_id"])
    assert "[Paris]" in hit["snippet"]
    # Hostile query text is not FTS syntax.
    assert http.get("/api/v1/conversations/search", params={"q": '"(NEAR OR *'}).status_code == 200


def test_rename_delete_and_pagination(http):
    ids = [new_conversation(http, title=f"page test {i}")["id"] for i in range(5)]
    r = http.patch(f"/api/v1/conversations/{ids[0]}", json={"title": "renamed"})
    assert r.json()["title"] == "renamed"
    seen, cursor = [], None
    while True:
        page = http.get("/api/v1/conversations", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen))
    assert seen[0] == ids[0], "the renamed one is the most recently updated"
    assert set(ids) <= set(seen)
    assert http.delete(f"/api/v1/conversations/{ids[1]}").status_code == 204
    assert http.get(f"/api/v1/conversations/{ids[1]}").status_code == 404
    assert http.delete(f"/api/v1/conversations/{ids[1]}").status_code == 404
    assert http.get("/api/v1/conversations", params={"cursor": "garbage"}).status_code == 400
    assert http.post("/api/v1/conversations", json={"settings": {"temprature": 1}}).status_code == 400


def test_export_import_round_trip_is_identical(http):
    conv = new_conversation(http, system_prompt="Answer briefly.")
    http.post(f"/api/v1/conversations/{conv['id']}/messages", json={"content": "Name a colour.", "stream": False})
    exported = http.get(f"/api/v1/conversations/{conv['id']}/export").json()
    md = http.get(f"/api/v1/conversations/{conv['id']}/export", params={"format": "markdown"})
    assert md.headers["content-type"].startswith("text/markdown")
    assert "## User" in md.text and "Name a colour." in md.text and "Answer briefly." in md.text

    assert http.delete(f"/api/v1/conversations/{conv['id']}").status_code == 204
    r = http.post("/api/v1/conversations/import", json=exported)
    assert r.status_code == 201 and r.json()["id"] == conv["id"]
    again = http.get(f"/api/v1/conversations/{conv['id']}/export").json()
    assert again == exported
    # Importing it a second time keeps both (a new id), with the same content.
    copy = http.post("/api/v1/conversations/import", json=exported).json()
    assert copy["id"] != conv["id"]
    bad = dict(exported, format="something-else")
    assert http.post("/api/v1/conversations/import", json=bad).status_code == 400


def test_disconnect_stores_the_reply_as_cut_off(http):
    conv = new_conversation(http, settings={"temperature": 0, "max_tokens": 500})
    with http.stream("POST", f"/api/v1/conversations/{conv['id']}/messages",
                     json={"content": "Count from one to one hundred in words."}) as r:
        got = 0
        for event in sse_events(r):
            if event["type"] == "token":
                got += 1
            if got == 5:
                break
    def stored():
        return http.get(f"/api/v1/conversations/{conv['id']}").json()["messages"]
    assert wait_until(lambda: len(stored()) == 2, timeout=5)
    user, reply = stored()
    assert reply["status"] == "cut_off"
    assert reply["content"], "the partial text is kept"
    assert reply["finish_reason"] is None


def test_sending_to_a_missing_conversation_is_404(http):
    r = http.post("/api/v1/conversations/conv_missing/messages", json={"content": "hi"})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"


def test_openai_requests_can_store_into_a_conversation(daemon, http):
    import openai
    conv = new_conversation(http)
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.key, max_retries=0)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model=MODEL, messages=question, temperature=0, max_tokens=30,
                                       extra_body={"conversation_id": conv["id"]})
    stream = client.chat.completions.create(model=MODEL, messages=question, temperature=0, max_tokens=30,
                                            stream=True, extra_body={"conversation_id": conv["id"]})
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    messages = http.get(f"/api/v1/conversations/{conv['id']}").json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", question[0]["content"]), ("assistant", r.choices[0].message.content),
        ("user", question[0]["content"]), ("assistant", streamed),
    ]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=MODEL, messages=question, extra_body={"conversation_id": "conv_nope"})


def test_truncating_for_regenerate_and_edit(http):
    conv = new_conversation(http)
    for text in ["Name a colour.", "Name a fruit."]:
        assert http.post(f"/api/v1/conversations/{conv['id']}/messages", json={"content": text, "stream": False}).status_code == 200
    messages = http.get(f"/api/v1/conversations/{conv['id']}").json()["messages"]
    assert len(messages) == 4
    second_user = messages[2]["id"]
    r = http.delete(f"/api/v1/conversations/{conv['id']}/messages/{second_user}")
    assert r.status_code == 200 and r.json()["removed"] == 2
    kept = http.get(f"/api/v1/conversations/{conv['id']}").json()["messages"]
    assert [m["content"] for m in kept[:1]] == ["Name a colour."] and len(kept) == 2
    # Edit-and-resend: the edited question is answered after the kept history.
    r = http.post(f"/api/v1/conversations/{conv['id']}/messages", json={"content": "Name a vegetable.", "stream": False})
    assert r.status_code == 200
    assert http.delete(f"/api/v1/conversations/{conv['id']}/messages/999999").status_code == 404
