#!/usr/bin/env python3
"""Chat engine benchmark: the appliance's HTTP API against llama.cpp's raw speed on the
same machine, model and threads, measured in one run. Prints a table with ratios.

usage: bench/llm.py [--model PATH] [--threads N] [--runs N]
Needs: a release build (built if missing), the default models (scripts/fetch-models),
httpx (scripts/test's venv has it). Run it on an idle machine.

What is compared (see README "Chat benchmark"):
  decode tok/s, single stream, through HTTP streaming   vs raw llama.cpp tg (bench/raw_decode.rs)
  prompt processing tok/s (from usage timings)          vs raw llama.cpp pp
  aggregate tok/s with 4 and 8 concurrent streams       vs the single-stream rate
  second-turn time-to-first-token (prefix cache)        vs the same prompt cold
llama.cpp's own llama-server and llama-bench cannot be built here: the llama.cpp source
vendored by llama-cpp-sys-2 ships tools/server and tools/llama-bench without their
sources, and no registry reachable from these machines ships them.
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import httpx

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/appliance/target"))
# Build where the scripts build, so the release build is shared.
os.environ["CARGO_TARGET_DIR"] = str(TARGET)
MODELS = pathlib.Path(os.environ.get("TEST_MODELS_DIR", pathlib.Path.home() / ".cache/appliance/models"))
MODEL = "SmolLM2-135M-Instruct-Q4_1"
STORY = "Write a long, detailed story about a lighthouse keeper and a storm. Do not stop early."


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw)


class Daemon:
    def __init__(self, threads, slots, ctx=2048):
        self.root = tempfile.mkdtemp(prefix="appliance-bench-")
        config = pathlib.Path(self.root, "config.toml")
        config.write_text("")
        self.proc = subprocess.Popen(
            [str(TARGET / "release/appliance"), "--config", str(config), "--data-dir", f"{self.root}/data",
             "--log-dir", f"{self.root}/logs", "--runtime-dir", f"{self.root}/run", "--models-dir", str(MODELS),
             "--port", "0", "--set", "log.file=false", "--set", f"engine.threads={threads}",
             "--set", f"engine.slots={slots}", "--set", f"engine.queue={slots}",
             "--set", f"engine.ctx_per_slot={ctx}", "--set", "engine.keep_alive=-1", "serve"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = re.search(r"http://[0-9.:]+", self.proc.stdout.readline()).group(0)
        httpx.post(self.url + "/api/generate", json={"model": MODEL, "prompt": ""}, timeout=120).raise_for_status()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)


def stream_chat(url, messages, max_tokens, seed=1):
    """Returns (ttft_s, decode_tok_per_s, completion_tokens, usage, text)."""
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed,
            "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first = last = None
    pieces, usage = [], None
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                pieces.append(chunk["choices"][0]["delta"]["content"])
    n = usage["completion_tokens"]
    rate = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return first - t0, rate, n, usage, "".join(pieces)


def median(values):
    return statistics.median(values) if values else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()

    print("building release binaries…", file=sys.stderr)
    sh("cargo", "build", "--release", "--locked", "--quiet", cwd=ROOT)
    raw = json.loads(sh("cargo", "bench", "--locked", "--quiet", "--bench", "raw_decode", "--",
                        str(MODELS / f"{MODEL}.gguf"), str(args.threads), "512", str(args.tokens), "3",
                        cwd=ROOT).stdout.strip().splitlines()[-1])

    results = {}
    d = Daemon(args.threads, slots=1)
    try:
        story = [{"role": "user", "content": STORY}]
        runs = [stream_chat(d.url, story, args.tokens, seed=s) for s in range(args.runs)]
        results["decode"] = median([r[1] for r in runs])
        results["decode_tokens"] = median([r[2] for r in runs])
        # Cold time to first token: a short prompt never seen before.
        ttft = [stream_chat(d.url, [{"role": "user", "content": f"({uuid.uuid4().hex}) What is the capital of France?"}], 8)[0]
                for _ in range(args.runs)]
        results["ttft_short"] = median(ttft) * 1000
        # Prompt processing: a ~500-token prompt, timed by the engine's own usage report.
        long_prompt = [{"role": "user", "content": f"{uuid.uuid4().hex} " + "The quick brown fox jumps over the lazy dog. " * 45}]
        pp = []
        for _ in range(args.runs):
            long_prompt[0]["content"] = uuid.uuid4().hex + long_prompt[0]["content"][32:]
            body = {"model": MODEL, "messages": long_prompt, "max_tokens": 1}
            u = httpx.post(d.url + "/v1/chat/completions", json=body, timeout=600).json()["usage"]
            pp.append(u["prompt_tokens"])
        # Second turn with prefix reuse vs the same prompt cold.
        system = "You are a meticulous assistant who answers questions about geography. " * 25
        warm, cold = [], []
        for _ in range(args.runs):
            nonce = uuid.uuid4().hex
            turn1 = [{"role": "system", "content": nonce + " " + system},
                     {"role": "user", "content": "What is the capital of France?"}]
            _, _, _, _, answer = stream_chat(d.url, turn1, 24)
            turn2 = turn1 + [{"role": "assistant", "content": answer}, {"role": "user", "content": "And of Spain?"}]
            warm.append(stream_chat(d.url, turn2, 4)[0])
            other = [dict(m) for m in turn2]
            other[0]["content"] = uuid.uuid4().hex + " " + system
            cold.append(stream_chat(d.url, other, 4)[0])
        results["turn2_warm"] = median(warm) * 1000
        results["turn2_cold"] = median(cold) * 1000
        results["turn2_prompt_tokens"] = stream_chat(d.url, turn2, 1)[3]["prompt_tokens"]
    finally:
        d.stop()

    for streams in (4, 8):
        d = Daemon(args.threads, slots=streams)
        try:
            rates = []
            for run in range(max(2, args.runs // 2)):
                t0 = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(streams) as pool:
                    done = list(pool.map(lambda i: stream_chat(d.url, [{"role": "user", "content": STORY}], args.tokens, seed=100 * run + i),
                                         range(streams)))
                rates.append(sum(r[2] for r in done) / (time.perf_counter() - t0))
            results[f"aggregate_{streams}"] = median(rates)
        finally:
            d.stop()

    rows = [
        ("decode tok/s, 1 stream over HTTP", results["decode"], "raw llama.cpp tg", raw["tg_tps"]),
        (f"aggregate tok/s, 4 streams", results["aggregate_4"], "1-stream HTTP decode", results["decode"]),
        (f"aggregate tok/s, 8 streams", results["aggregate_8"], "1-stream HTTP decode", results["decode"]),
        (f"2nd-turn TTFT ms ({results['turn2_prompt_tokens']}-token prompt, cached prefix)", results["turn2_warm"],
         "same prompt cold", results["turn2_cold"]),
    ]
    print(f"\nmodel {MODEL}, {args.threads} threads, {args.tokens} generated tokens, median of {args.runs} runs")
    print(f"raw llama.cpp (bench/raw_decode.rs): pp512 {raw['pp_tps']:.1f} ± {raw['pp_sd']:.1f} tok/s, "
          f"tg{args.tokens} {raw['tg_tps']:.1f} ± {raw['tg_sd']:.1f} tok/s")
    print(f"cold time to first token, short prompt: {results['ttft_short']:.0f} ms\n")
    print(f"| {'measure':<58} | {'appliance':>9} | {'reference':<22} | {'value':>9} | {'ratio':>6} |")
    print(f"|{'-' * 60}|{'-' * 11}|{'-' * 24}|{'-' * 11}|{'-' * 8}|")
    for name, ours, ref_name, ref in rows:
        print(f"| {name:<58} | {ours:>9.1f} | {ref_name:<22} | {ref:>9.1f} | {ours / ref:>6.2f} |")


if __name__ == "__main__":
    main()
