#!/usr/bin/env python3
"""Chat engine benchmark: the appliance against llama.cpp's own llama-server, side by side
in one run, on the same machine, model file, threads, slots and per-slot context, through
the same streaming OpenAI /v1/chat/completions client code and sampling (T=0.8, fixed
seeds, same max_tokens). Prints a markdown table with ratios; --json writes the results.

usage: ~/.cache/appliance/venv/bin/python bench/llm.py [--bin PATH] [--build]
           [--llama-server PATH] [--llama-bench PATH] [--threads N] [--runs N]
           [--tokens N] [--ctx N] [--raw] [--json PATH]

Needs: the appliance binary (--bin, default $CARGO_TARGET_DIR/release/appliance; --build
runs `cargo build --release` first), the reference built by bench/build-reference.sh
(llama-server and llama-bench in ~/.cache/appliance/reference/build/bin), the default
models (scripts/fetch-models; $TEST_MODELS_DIR), httpx. Run it on an idle machine.

Servers: the appliance with auth ON (an admin and an all-scopes API key made with its CLI,
`Authorization: Bearer` on every request); llama-server with
`-m MODEL.gguf -t N -tb N -np S -c S*ctx -cb`, no auth. Never both at once.

What is measured, for both servers unless noted:
  decode tok/s, 1 stream         streamed, (completion_tokens-1)/(last-first content chunk)
  prompt processing tok/s        a ~500-token prompt never seen before, max_tokens=1:
                                   (a) the server's own prompt timing: llama-server's
                                       `timings.prompt_per_second`; the appliance's OpenAI
                                       usage has no prompt time, so its Ollama endpoint's
                                       prompt_eval_count/prompt_eval_duration (same engine)
                                   (b) wall clock, same client for both: non-streamed
                                       request time of the long prompt minus that of a
                                       short one, over the difference in evaluated tokens
  aggregate tok/s, 4 and 8       that many concurrent streams, servers started with that
                                   many slots: completion tokens / wall time
  2nd-turn TTFT                  turn 2 of a conversation (system prompt + turn 1 cached)
                                   vs the same turn-2 prompt with a new system nonce (cold)
  raw pp/tg (extra)              llama-bench on the reference build; the appliance side
                                   (bench/raw_decode.rs via cargo bench) only with --raw
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time
import uuid

import httpx

from harness import (MODELS, ROOT, TARGET, ApplianceDaemon, BenchError, Output, Server, build_release, commit,
                     cpu_model, fail, median, require_executable, run)

REFERENCE = pathlib.Path(os.environ.get("APPLIANCE_REFERENCE_DIR") or pathlib.Path.home() / ".cache/appliance/reference")
MODEL = "SmolLM2-135M-Instruct-Q4_1"
STORY = "Write a long, detailed story about a lighthouse keeper and a storm. Do not stop early."
LONG = "The quick brown fox jumps over the lazy dog. " * 45
SYSTEM = "You are a meticulous assistant who answers questions about geography. " * 25
START_TIMEOUT = 120  # s, daemon/server start and model load
REQUEST_TIMEOUT = 300  # s, any one request (also the bound on a stream's total time)


class Appliance(ApplianceDaemon):
    def __init__(self, binary, threads, slots, ctx):
        super().__init__(binary, [f"engine.threads={threads}", f"engine.slots={slots}", f"engine.queue={slots}",
                                  f"engine.ctx_per_slot={ctx}", "engine.keep_alive=-1"])
        # Load the model before measuring (it loads on the first request).
        warm_up(self, time.monotonic() + START_TIMEOUT)


class LlamaServer(Server):
    name = "llama-server"

    def __init__(self, binary, model_path, threads, slots, ctx):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = [str(binary), "-m", str(model_path), "-t", str(threads), "-tb", str(threads), "-np", str(slots),
                "-c", str(slots * ctx), "-cb", "--host", "127.0.0.1", "--port", str(port), "--no-webui"]
        self.args = args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     stdin=subprocess.DEVNULL)
        self.out = Output(self.proc.stdout)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            self.check_alive()
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                fail(f"llama-server: /health not 200 within {START_TIMEOUT} s; output:\n{self.out.tail()}")
            time.sleep(0.1)
        warm_up(self, deadline)

    def stop(self):
        self._stop()


def warm_up(server, deadline):
    while True:
        try:
            post_chat(server, [{"role": "user", "content": "Hi"}], 1, timeout=max(5.0, deadline - time.monotonic()))
            return
        except (httpx.TransportError, httpx.HTTPStatusError) as e:
            server.check_alive()
            if time.monotonic() > deadline:
                fail(f"{server.name}: the first request did not succeed within {START_TIMEOUT} s: {e}\n{server.out.tail()}")
            time.sleep(0.5)


def chat_body(messages, max_tokens, seed, stream):
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed,
            "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def post_chat(server, messages, max_tokens, seed=1, timeout=REQUEST_TIMEOUT):
    """Non-streamed chat; returns (seconds, response JSON)."""
    t0 = time.perf_counter()
    r = httpx.post(server.url + "/v1/chat/completions", json=chat_body(messages, max_tokens, seed, False),
                   headers=server.headers, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        raise httpx.HTTPStatusError(f"{server.name}: HTTP {r.status_code}: {r.text[:500]}", request=r.request,
                                    response=r)
    return elapsed, r.json()


def stream_chat(server, messages, max_tokens, seed=1):
    """Streamed chat; returns (ttft_s, decode_tok_per_s, completion_tokens, usage, text)."""
    t0 = time.perf_counter()
    first = last = None
    pieces, usage = [], None
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=chat_body(messages, max_tokens, seed, True),
                      headers=server.headers, timeout=REQUEST_TIMEOUT) as r:
        if r.status_code != 200:
            fail(f"{server.name}: HTTP {r.status_code}: {r.read()[:500]!r}")
        for line in r.iter_lines():
            if time.perf_counter() - t0 > REQUEST_TIMEOUT:
                fail(f"{server.name}: a stream took longer than {REQUEST_TIMEOUT} s")
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                fail(f"{server.name}: error in stream: {chunk['error']}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            if chunk.get("choices") and (chunk["choices"][0].get("delta") or {}).get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                pieces.append(chunk["choices"][0]["delta"]["content"])
    if usage is None:
        fail(f"{server.name}: the stream carried no usage chunk (stream_options.include_usage)")
    if first is None:
        fail(f"{server.name}: the stream carried no content")
    n = usage["completion_tokens"]
    rate = (n - 1) / (last - first) if n > 1 and last > first else float("nan")
    return first - t0, rate, n, usage, "".join(pieces)


def evaluated(usage):
    return usage["prompt_tokens"] - ((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)


def fresh(text):
    """A message the server has never seen: a nonce first, so no prefix is cached."""
    return f"{uuid.uuid4().hex} {text}"


def measure_single(server, args):
    """The one-slot measures: decode, prompt processing, cold and 2nd-turn TTFT."""
    r = {}
    story = [{"role": "user", "content": STORY}]
    runs = [stream_chat(server, story, args.tokens, seed=s) for s in range(args.runs)]
    r["decode_tps"] = median([x[1] for x in runs])
    r["decode_tokens"] = median([x[2] for x in runs])
    r["ttft_short_ms"] = 1000 * median([
        stream_chat(server, [{"role": "user", "content": fresh("What is the capital of France?")}], 8)[0]
        for _ in range(args.runs)])

    # Prompt processing, ~500 tokens: the server's own timing...
    own, own_tokens = [], []
    for s in range(args.runs):
        messages = [{"role": "system", "content": fresh("Repeat after me.")}, {"role": "user", "content": LONG}]
        if isinstance(server, LlamaServer):
            t = post_chat(server, messages, 1, seed=s)[1]["timings"]
            own.append(t["prompt_per_second"])
            own_tokens.append(t["prompt_n"])
        else:
            # The OpenAI usage carries no prompt time; the Ollama endpoint reports the
            # engine's own prompt_ms (same engine, same request otherwise).
            body = {"model": MODEL, "messages": messages, "stream": False,
                    "options": {"num_predict": 1, "temperature": 0.8, "seed": s}}
            resp = httpx.post(server.url + "/api/chat", json=body, headers=server.headers, timeout=REQUEST_TIMEOUT)
            if resp.status_code != 200:
                fail(f"appliance /api/chat: HTTP {resp.status_code}: {resp.text[:500]}")
            j = resp.json()
            if not j.get("prompt_eval_duration"):
                fail(f"appliance /api/chat reported no prompt_eval_duration: {j}")
            own.append(j["prompt_eval_count"] / (j["prompt_eval_duration"] / 1e9))
            own_tokens.append(j["prompt_eval_count"])
    r["pp_own_tps"] = median(own)
    r["pp_own_tokens"] = median(own_tokens)
    # ...and wall clock through the same client: long minus short, non-streamed, 1 token.
    long_t, long_n, short_t, short_n = [], [], [], []
    for s in range(args.runs):
        t, j = post_chat(server, [{"role": "system", "content": fresh("Repeat after me.")},
                                  {"role": "user", "content": LONG}], 1, seed=s)
        long_t.append(t)
        long_n.append(evaluated(j["usage"]))
        t, j = post_chat(server, [{"role": "system", "content": fresh("Repeat after me.")},
                                  {"role": "user", "content": "Hi."}], 1, seed=s)
        short_t.append(t)
        short_n.append(evaluated(j["usage"]))
    dt = median(long_t) - median(short_t)
    r["pp_wall_tokens"] = median(long_n)
    r["pp_wall_tps"] = (median(long_n) - median(short_n)) / dt if dt > 0 else float("nan")
    r["pp_wall_long_ms"] = 1000 * median(long_t)
    r["pp_wall_short_ms"] = 1000 * median(short_t)

    # Second turn with the conversation's prefix cached vs the same prompt cold.
    warm, cold, turn2_tokens, turn2_cached = [], [], [], []
    for s in range(args.runs):
        turn1 = [{"role": "system", "content": fresh(SYSTEM)},
                 {"role": "user", "content": "What is the capital of France?"}]
        answer = stream_chat(server, turn1, 24, seed=s)[4]
        turn2 = turn1 + [{"role": "assistant", "content": answer}, {"role": "user", "content": "And of Spain?"}]
        ttft, _, _, usage, _ = stream_chat(server, turn2, 4, seed=s)
        warm.append(ttft)
        turn2_tokens.append(usage["prompt_tokens"])
        turn2_cached.append((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
        other = [dict(m) for m in turn2]
        other[0]["content"] = fresh(SYSTEM)
        cold.append(stream_chat(server, other, 4, seed=s)[0])
    r["turn2_warm_ms"] = 1000 * median(warm)
    r["turn2_cold_ms"] = 1000 * median(cold)
    r["turn2_prompt_tokens"] = median(turn2_tokens)
    known = [c for c in turn2_cached if c is not None]
    r["turn2_cached_tokens"] = median(known) if known else None
    return r


def measure_aggregate(server, streams, args):
    rates, tokens = [], []
    for run_no in range(max(3, args.runs // 2 + 1)):
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(streams) as pool:
            done = list(pool.map(
                lambda i: stream_chat(server, [{"role": "user", "content": STORY}], args.tokens, seed=100 * run_no + i),
                range(streams)))
        rates.append(sum(x[2] for x in done) / (time.perf_counter() - t0))
        tokens.append(sum(x[2] for x in done))
    return {f"aggregate_{streams}_tps": median(rates), f"aggregate_{streams}_tokens": median(tokens)}


def with_server(make, measure):
    server = make()
    try:
        return measure(server)
    finally:
        server.stop()


def llama_bench(binary, model_path, args):
    out = run([str(binary), "-m", str(model_path), "-t", str(args.threads), "-p", "512", "-n", str(args.tokens),
               "-r", str(max(3, args.runs)), "-o", "json"], 900).stdout
    rows = json.loads(out)
    pp = next(x for x in rows if x["n_prompt"] > 0 and x["n_gen"] == 0)
    tg = next(x for x in rows if x["n_gen"] > 0 and x["n_prompt"] == 0)
    return {"pp_tps": pp["avg_ts"], "pp_sd": pp["stddev_ts"], "tg_tps": tg["avg_ts"], "tg_sd": tg["stddev_ts"]}


def raw_decode(model_path, args):
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET))
    out = run(["cargo", "bench", "--locked", "--quiet", "--bench", "raw_decode", "--", str(model_path),
               str(args.threads), "512", str(args.tokens), "3"], 3600, cwd=ROOT, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def machine_facts(args, reference_bin):
    versions_file = REFERENCE / "versions.json"
    versions = json.loads(versions_file.read_text()) if versions_file.exists() else {}
    server_version = subprocess.run([str(reference_bin), "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"version: (\S+ \([^)]*\))", server_version.stdout + server_version.stderr)
    return {
        "nproc": os.cpu_count(), "cpu": cpu_model(), "model": MODEL, "threads": args.threads, "tokens": args.tokens,
        "runs": args.runs, "ctx_per_slot": args.ctx, "commit": commit(),
        "appliance_llama_cpp": versions.get("appliance_llama_cpp", "unknown (run bench/build-reference.sh)"),
        "reference_llama_cpp": versions.get("reference_llama_cpp", "unknown (run bench/build-reference.sh)"),
        "llama_server_version": match.group(1) if match else "?",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=pathlib.Path, default=TARGET / "release/appliance", help="the appliance binary")
    ap.add_argument("--build", action="store_true", help="run `cargo build --release` first (uses its binary)")
    ap.add_argument("--llama-server", type=pathlib.Path, default=REFERENCE / "build/bin/llama-server")
    ap.add_argument("--llama-bench", type=pathlib.Path, default=REFERENCE / "build/bin/llama-bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3,
                    help="repeat every phase this many times, alternating which server goes first, and report "
                         "the median across rounds (this machine's load drifts; one round is noisy)")
    ap.add_argument("--tokens", type=int, default=128, help="max_tokens of the decode and aggregate requests")
    ap.add_argument("--ctx", type=int, default=2048, help="context tokens per slot")
    ap.add_argument("--streams", default="4,8", help="concurrent streams for the aggregate measures")
    ap.add_argument("--raw", action="store_true", help="also run bench/raw_decode.rs (needs cargo)")
    ap.add_argument("--json", type=pathlib.Path, help="write the results as JSON here")
    args = ap.parse_args()
    streams = [int(s) for s in args.streams.split(",") if s]

    model_path = MODELS / f"{MODEL}.gguf"
    if not model_path.exists():
        fail(f"{model_path} missing: run scripts/fetch-models {MODELS} (or set TEST_MODELS_DIR)")
    if args.build:
        args.bin = build_release(None)
    for path, hint in ((args.bin, "build it (cargo build --release), pass --build, or pass --bin PATH"),
                       (args.llama_server, "run bench/build-reference.sh or pass --llama-server PATH"),
                       (args.llama_bench, "run bench/build-reference.sh or pass --llama-bench PATH")):
        require_executable(path, hint)

    facts = machine_facts(args, args.llama_server)
    facts["appliance_bin"] = str(args.bin)
    facts["load_before"] = os.getloadavg()
    t_start = time.monotonic()
    appl = lambda slots: lambda: Appliance(args.bin, args.threads, slots, args.ctx)  # noqa: E731
    ref = lambda slots: lambda: LlamaServer(args.llama_server, model_path, args.threads, slots, args.ctx)  # noqa: E731
    rounds = {"appliance": [], "llama_server": []}

    # One server at a time; the order alternates between phases and rounds so that drift
    # in machine load does not always favour the same side.
    phases = [(1, lambda s: measure_single(s, args))] + [(n, (lambda n: lambda s: measure_aggregate(s, n, args))(n))
                                                        for n in streams]
    for round_no in range(max(1, args.rounds)):
        this_round = {"appliance": {}, "llama_server": {}}
        for i, (slots, measure) in enumerate(phases):
            order = [("appliance", appl), ("llama_server", ref)]
            if (i + round_no) % 2:
                order.reverse()
            for key, make in order:
                print(f"round {round_no + 1}: measuring {key} with {slots} slot(s)…", file=sys.stderr)
                this_round[key].update(with_server(make(slots), measure))
        for key in rounds:
            rounds[key].append(this_round[key])
    # Each figure: the median over rounds of that round's median.
    results = {
        key: {name: median([r[name] for r in per_round if r.get(name) is not None])
              if any(r.get(name) is not None for r in per_round) else None
              for name in per_round[0]}
        for key, per_round in rounds.items()
    }
    results["rounds"] = rounds

    print("measuring llama-bench…", file=sys.stderr)
    results["llama_bench"] = llama_bench(args.llama_bench, model_path, args)
    if args.raw:
        print("measuring bench/raw_decode.rs (cargo bench)…", file=sys.stderr)
        results["raw_decode"] = raw_decode(model_path, args)
    facts["load_after"] = os.getloadavg()
    facts["duration_s"] = round(time.monotonic() - t_start)

    a, l = results["appliance"], results["llama_server"]
    raw, lb = results.get("raw_decode"), results["llama_bench"]
    rows = [
        # (measure, appliance, llama-server, target as (kind, value) or None)
        ("decode tok/s, 1 stream (HTTP streaming, T=0.8)", a["decode_tps"], l["decode_tps"], (">=", 0.97)),
        (f"prompt tok/s, {a['pp_own_tokens']:.0f}/{l['pp_own_tokens']:.0f}-token prompt, server's own timing",
         a["pp_own_tps"], l["pp_own_tps"], None),
        (f"prompt tok/s, {a['pp_wall_tokens']:.0f}-token prompt, wall clock (long - short request)",
         a["pp_wall_tps"], l["pp_wall_tps"], None),
    ]
    for n in streams:
        rows.append((f"aggregate tok/s, {n} concurrent streams ({n} slots)", a[f"aggregate_{n}_tps"],
                     l[f"aggregate_{n}_tps"], (">=", 1.0)))
    rows += [
        ("cold TTFT ms, short new prompt", a["ttft_short_ms"], l["ttft_short_ms"], None),
        (f"2nd-turn TTFT ms, {a['turn2_prompt_tokens']:.0f}-token prompt, cached prefix", a["turn2_warm_ms"],
         l["turn2_warm_ms"], None),
        ("2nd-turn TTFT ms, same prompt cold", a["turn2_cold_ms"], l["turn2_cold_ms"], None),
        ("raw pp512 tok/s (appliance: raw_decode.rs; reference: llama-bench)", raw["pp_tps"] if raw else None,
         lb["pp_tps"], None),
        (f"raw tg{args.tokens} tok/s (appliance: raw_decode.rs; reference: llama-bench)",
         raw["tg_tps"] if raw else None, lb["tg_tps"], None),
    ]
    warm_cold = {k: results[k]["turn2_warm_ms"] / results[k]["turn2_cold_ms"] for k in ("appliance", "llama_server")}

    def num(v, digits=1):
        return "—" if v is None or v != v else f"{v:.{digits}f}"

    table = []
    print(f"\nmachine: nproc {facts['nproc']} ({facts['cpu']}); model {MODEL}; {args.threads} threads; "
          f"{args.tokens} max tokens; ctx {args.ctx}/slot; median over {args.rounds} rounds of the median of "
          f"{args.runs} runs (aggregates: {max(3, args.runs // 2 + 1)}); commit {facts['commit']}; load average "
          f"{facts['load_before'][0]:.2f} before, {facts['load_after'][0]:.2f} after; {facts['duration_s']} s")
    print(f"appliance: {args.bin}, auth on; llama.cpp: {facts['appliance_llama_cpp']}")
    print(f"llama-server: {facts['reference_llama_cpp']}, version {facts['llama_server_version']}, no auth; "
          f"-t {args.threads} -tb {args.threads} -np S -c S*{args.ctx} -cb")
    print(f"decode tokens per run (median): appliance {a['decode_tokens']:.0f}, llama-server {l['decode_tokens']:.0f}; "
          f"2nd-turn cached tokens: appliance {num(a['turn2_cached_tokens'], 0)}, llama-server {num(l['turn2_cached_tokens'], 0)}")
    print("appliance prompt timing: its Ollama /api/chat prompt_eval_duration (the OpenAI usage has none); "
          "llama-server: timings.prompt_per_second\n")
    print("| measure | appliance | llama-server | ratio (appliance/llama-server) | target |")
    print("|---|---:|---:|---:|---|")
    for name, ours, theirs, target in rows:
        ratio = ours / theirs if ours is not None and theirs else None
        mark = ""
        if target and ratio is not None:
            mark = f"≥ {target[1]:.2f}× {'met' if ratio >= target[1] else 'MISSED'}"
        print(f"| {name} | {num(ours)} | {num(theirs)} | {num(ratio, 2)} | {mark} |")
        table.append({"measure": name, "appliance": ours, "llama_server": theirs, "ratio": ratio,
                      "target": f">= {target[1]}" if target else None})
    met = warm_cold["appliance"] <= 0.3
    print(f"| 2nd-turn TTFT warm/cold (each server's own) | {warm_cold['appliance']:.2f} | "
          f"{warm_cold['llama_server']:.2f} | — | appliance ≤ 0.30 {'met' if met else 'MISSED'} |")
    table.append({"measure": "2nd-turn TTFT warm/cold", "appliance": warm_cold["appliance"],
                  "llama_server": warm_cold["llama_server"], "ratio": None, "target": "appliance <= 0.3"})
    print(f"\nllama-bench: pp512 {lb['pp_tps']:.1f} ± {lb['pp_sd']:.1f}, tg{args.tokens} {lb['tg_tps']:.1f} ± "
          f"{lb['tg_sd']:.1f} tok/s" + (f"; raw_decode.rs: pp512 {raw['pp_tps']:.1f} ± {raw['pp_sd']:.1f}, "
                                        f"tg{args.tokens} {raw['tg_tps']:.1f} ± {raw['tg_sd']:.1f} tok/s"
                                        if raw else "; raw_decode.rs not run (--raw)"))
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "table": table, "results": results}, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"llm.py: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
