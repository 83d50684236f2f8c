"""The speech worker under the same supervision as every engine: parallel requests on
their own whisper states, bounded admission (503 + Retry-After), deadlines that follow
the audio's length, cancel when the client leaves, idle unload."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import httpx
import pytest

from conftest import wait_until
from test_speech import CLIP_0880, long_clip

WORKER = "whisper-tiny.en"


@pytest.fixture(scope="module")
def long_wav():
    tmp = tempfile.mkdtemp()
    path = long_clip(tmp, 1)  # ~25 s
    yield path
    shutil.rmtree(tmp, ignore_errors=True)


def post(d, path, results=None, key=None):
    with open(path, "rb") as f, httpx.Client(base_url=d.url, timeout=300) as http:
        r = http.post("/v1/audio/transcriptions", files={"file": (os.path.basename(path), f)},
                      data={"model": "whisper-1"})
    if results is not None:
        results[key] = r
    return r


def speech_model(d):
    models = httpx.get(d.url + "/api/ps", timeout=10).json()["models"]
    return next((m for m in models if m["name"] == WORKER), None)


def test_parallel_requests_run_at_once_and_the_overflow_gets_503(make_daemon, long_wav):
    d = make_daemon("speech.parallel=2", "speech.threads=1", "engine.queue=1")
    assert post(d, CLIP_0880).status_code == 200  # loaded
    results, threads = {}, []
    for i in range(4):
        t = threading.Thread(target=post, args=(d, long_wav, results, i))
        t.start()
        threads.append(t)
        time.sleep(0.2)
    # Two run at once (one whisper state each), one waits, the fourth is refused.
    assert wait_until(lambda: (speech_model(d) or {}).get("running") == 2, timeout=60), speech_model(d)
    for t in threads:
        t.join(300)
    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [200, 200, 200, 503], statuses
    refused = next(r for r in results.values() if r.status_code == 503)
    assert int(refused.headers["retry-after"]) > 0 and "busy" in refused.json()["error"]["message"]


def test_a_deadline_scaled_to_the_audio_still_stops_a_runaway(make_daemon, long_wav):
    d = make_daemon("engine.request_timeout_secs=1", "speech.max_realtime_factor=0.1")
    r = post(d, long_wav)
    assert r.status_code == 504, r.text
    assert "deadline" in r.json()["error"]["message"]
    # The worker dropped it and serves the next request.
    assert wait_until(lambda: (speech_model(d) or {}).get("running") == 0, timeout=30)


def test_a_client_that_leaves_cancels_its_transcription(make_daemon, long_wav):
    d = make_daemon()
    assert post(d, CLIP_0880).status_code == 200
    host, port = d.url.removeprefix("http://").split(":")
    body_file = open(long_wav, "rb").read()
    boundary = "x1b2c3"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"long.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + body_file + f"\r\n--{boundary}--\r\n".encode()
    s = socket.create_connection((host, int(port)))
    s.sendall((f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    assert wait_until(lambda: (speech_model(d) or {}).get("running") == 1, timeout=30)
    s.close()
    assert wait_until(lambda: (speech_model(d) or {}).get("running") == 0, timeout=10), speech_model(d)
    metrics = httpx.get(d.url + "/metrics").text
    assert 'appliance_speech_requests_total{model="whisper-tiny.en",outcome="cancelled"} 1' in metrics, metrics
    assert 'appliance_speech_realtime_factor_count{model="whisper-tiny.en"}' in metrics
    # The worker's state, like every loaded model's.
    assert 'appliance_llm_requests_running{model="whisper-tiny.en",kind="speech"} 0' in metrics, metrics
    assert 'appliance_llm_slots{model="whisper-tiny.en",kind="speech"} 1' in metrics
    uploads = os.path.join(d.root, "data", "audio-uploads")
    assert wait_until(lambda: not os.listdir(uploads), timeout=5), os.listdir(uploads)


def test_an_idle_speech_model_is_unloaded(make_daemon):
    d = make_daemon("engine.keep_alive=1s")
    assert post(d, CLIP_0880).status_code == 200
    pid = speech_model(d)["pid"]
    assert wait_until(lambda: speech_model(d) is None, timeout=20)
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10)


def test_a_transcription_job_survives_kill_9_of_the_daemon(make_daemon, long_wav):
    d = make_daemon()
    with d.http() as http:
        with open(long_wav, "rb") as f:
            r = http.post("/api/v1/transcripts", files={"file": ("long.wav", f)})
        assert r.status_code == 202, r.text
        tid, job = r.json()["transcript"]["id"], r.json()["job"]["id"]
        assert wait_until(lambda: http.get(f"/api/v1/jobs/{job}").json()["state"] == "running", timeout=30)
    d.kill()
    d.start()
    with d.http() as http:
        assert wait_until(lambda: http.get(f"/api/v1/jobs/{job}").json()["state"] == "done", timeout=120)
        t = http.get(f"/api/v1/transcripts/{tid}").json()
        assert t["state"] == "done" and "dashwood" in t["text"].lower(), t
        assert len(http.get("/api/v1/transcripts").json()["transcripts"]) == 1
    recordings = os.path.join(d.root, "data", "recordings")
    assert wait_until(lambda: not os.listdir(recordings), timeout=5), os.listdir(recordings)
