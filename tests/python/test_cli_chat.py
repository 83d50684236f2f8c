"""`appliance chat`: one-shot and interactive, against the running daemon."""

import os
import subprocess

import httpx

from conftest import binary


def run_chat(daemon, args, stdin=None):
    port = daemon.url.rsplit(":", 1)[1]
    return subprocess.run([binary(), "--port", port, "--api-key", daemon.key, "chat", *args], input=stdin, capture_output=True,
                          text=True, timeout=120, env={"PATH": os.environ["PATH"], "HOME": daemon.root})


def test_one_shot_prints_the_streamed_answer(daemon):
    out = run_chat(daemon, ["-p", "What is the capital of France? Answer in one sentence.", "--temperature", "0"])
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_interactive_session_is_stored_as_a_conversation(daemon):
    out = run_chat(daemon, ["--temperature", "0"], stdin="What is the capital of France?\nAnd of Italy?\n/exit\n")
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout and "Rome" in out.stdout
    conv_id = out.stderr.split("conversation ", 1)[1].split()[0]
    messages = httpx.get(f"{daemon.url}/api/v1/conversations/{conv_id}", headers=daemon.headers).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    # It can be continued later.
    again = run_chat(daemon, ["--conversation", conv_id], stdin="")
    assert "And of Italy?" in again.stdout


def test_unreachable_daemon_exits_5(tmp_path):
    out = subprocess.run([binary(), "--port", "1", "chat", "-p", "hi"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert out.returncode == 5
    assert "no appliance is answering" in out.stderr
