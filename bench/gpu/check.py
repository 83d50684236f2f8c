#!/usr/bin/env python3
"""The measuring half of bench/gpu-check.sh, run on the GPU machine (stdlib only: that
machine has Python but no network and no project virtualenv).

usage: check.py --bin DIR --models DIR --llama-bench PATH --out DIR [--deadline EPOCH_S]
                [--dry-run]

DIR (--bin) holds `appliance` and `appliance-stt-worker`, with llama.cpp's CUDA build on
LD_LIBRARY_PATH; --models holds bench/gpu/synth.py's models. Every step records what it
saw in results.json even when a later one fails; a step past --deadline is skipped (one
device command runs at most 10 minutes). What is measured:

  nvml_vs_smi   `appliance gpu --json` (the daemon's NVML snapshot) against nvidia-smi
                queried right after, field by field
  decode        /api/generate tokens/s (eval_count / eval_duration) on synth-big with
                every layer offloaded, against llama-bench tg on the same libraries, GPU
                and file; with the memory-bandwidth utilisation that implies
  unload        VRAM (NVML used) back to the idle baseline after keep_alive 0
  together      chat + embeddings + speech loaded at once: /api/ps and per-process VRAM
  budget        a daemon with a small VRAM budget loads synth-mid-a then synth-mid-b
                (each ~1.2 GB, together over the budget): /api/ps and VRAM after each
"""

import argparse
import io
import json
import math
import os
import pathlib
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import wave

# ======================================================================================
# THE DAEMON CONFIGURATION THIS CHECK USES: the only place that names config keys.
# Written as TOML into the daemon's config file; adjust the names here when the VRAM
# scheduler's settings change.
CONFIG = {
    "engine": {
        "default_model": "synth-small",
        # Every layer on the GPU (the decode comparison is against llama-bench -ngl 99).
        "gpu_layers": 999,
        "keep_alive": "30m",
        "slots": 1,
    },
    "speech": {"beam_size": 1},
}
# Added for the budget step: room for one synth-mid model (~1.2 GB) but not two. Names
# as in the VRAM scheduler's work in progress ([gpu] budget_mb / reserve_mb); main at
# 63cbc04 has no [gpu] table yet and refuses the key, which the step then records.
BUDGET_CONFIG = {"gpu": {"budget_mb": 2048, "reserve_mb": 256}}
# ======================================================================================

# Peak memory bandwidth by GPU name (bytes/s), for the utilisation figure.
PEAK_BANDWIDTH = [("H200", 4.8e12), ("H100 NVL", 3.9e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12),
                  ("A100-SXM4-80GB", 2.039e12), ("A100", 1.555e12), ("L40S", 0.864e12), ("L4", 0.3e12)]
BIG, MID_A, MID_B, SMALL = "synth-big", "synth-mid-a", "synth-mid-b", "synth-small"
EMBED, SPEECH = "all-MiniLM-L6-v2", "whisper-tiny.en"
DECODE_TOKENS = 256

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
ARGS = None
RESULTS = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": {}}


def toml(config):
    lines = []
    for table, values in config.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def merged(*configs):
    out = {}
    for c in configs:
        for table, values in c.items():
            out.setdefault(table, {}).update(values)
    return out


def save():
    pathlib.Path(ARGS.out, "results.json").write_text(json.dumps(RESULTS, indent=2))


def step(name):
    """Decorator: runs a step, records its result or error, never raises."""
    def wrap(fn):
        def run(*a):
            if ARGS.deadline and time.time() > ARGS.deadline:
                RESULTS["steps"][name] = {"skipped": "past the deadline"}
                save()
                return None
            t0 = time.monotonic()
            print(f"--- {name}", flush=True)
            try:
                value = fn(*a)
                RESULTS["steps"][name] = {"ok": True, "seconds": round(time.monotonic() - t0, 1), **(value or {})}
            except Exception as e:  # a failed step is a finding; the others still run
                RESULTS["steps"][name] = {"ok": False, "seconds": round(time.monotonic() - t0, 1),
                                          "error": f"{type(e).__name__}: {e}"}
            print(json.dumps(RESULTS["steps"][name])[:2000], flush=True)
            save()
            return RESULTS["steps"][name]
        return run
    return wrap


# --- GPU facts -------------------------------------------------------------------------

SMI_FIELDS = ["index", "name", "uuid", "driver_version", "memory.total", "memory.used", "memory.free",
              "utilization.gpu", "temperature.gpu", "power.draw"]


def smi():
    """nvidia-smi's view: one dict per GPU (MiB, %, °C, W) and the compute processes."""
    out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    gpus = [dict(zip(SMI_FIELDS, (v.strip() for v in line.split(",")))) for line in out.strip().splitlines()]
    apps = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory",
                           "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30).stdout
    procs = [dict(zip(["pid", "name", "used_mib"], (v.strip() for v in line.split(","))))
             for line in apps.strip().splitlines() if line.strip()]
    return {"gpus": gpus, "processes": procs}


def used_mib():
    return float(smi()["gpus"][0]["memory.used"])


def wait_used_at_most(limit_mib, seconds):
    """Polls NVML (through nvidia-smi) until used memory is at most limit; the last reading."""
    end = time.monotonic() + seconds
    while True:
        now = used_mib()
        if now <= limit_mib or time.monotonic() > end:
            return now
        time.sleep(0.5)


# --- HTTP ------------------------------------------------------------------------------

def http(daemon, method, path, body=None, raw=None, content_type="application/json", timeout=300):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(daemon.url + path, data=data, method=method,
                                 headers={**daemon.headers, "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {path}: {e.code} {e.read().decode()[:500]}") from None
    return json.loads(text) if text.strip().startswith(("{", "[")) else text


def generate(daemon, model, tokens, keep_alive="30m", prompt="Tell me a long story about the sea."):
    return http(daemon, "POST", "/api/generate", {
        "model": model, "prompt": prompt, "stream": False, "keep_alive": keep_alive,
        "options": {"num_predict": tokens, "temperature": 0.0, "seed": 1}})


def unload(daemon, model, endpoint="/api/generate"):
    body = {"model": model, "keep_alive": 0}
    if endpoint == "/api/embed":
        body["input"] = []
    return http(daemon, "POST", endpoint, body)


def ps(daemon):
    return http(daemon, "GET", "/api/ps")


def wav_bytes(seconds=3.0, rate=16000):
    """A short tone sweep as 16-bit mono WAV (what speech gets is irrelevant here)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = (int(8000 * math.sin(2 * math.pi * (200 + 300 * i / rate) * i / rate))
                  for i in range(int(seconds * rate)))
        w.writeframes(b"".join(struct.pack("<h", f) for f in frames))
    return buf.getvalue()


def transcribe(daemon, model):
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'.encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="tone.wav"\r\n'
             f"Content-Type: audio/wav\r\n\r\n".encode() + wav_bytes() + b"\r\n",
             f"--{boundary}--\r\n".encode()]
    return http(daemon, "POST", "/v1/audio/transcriptions", raw=b"".join(parts),
                content_type=f"multipart/form-data; boundary={boundary}")


# --- the daemon ------------------------------------------------------------------------

def start_daemon(config):
    from harness import ApplianceDaemon  # imported late: harness reads TEST_MODELS_DIR
    return ApplianceDaemon(pathlib.Path(ARGS.bin, "appliance"), config_text=toml(config))


def stop_daemon(daemon, label):
    daemon._stop()
    pathlib.Path(ARGS.out, f"daemon-{label}.log").write_text("".join(daemon.out.all))
    import shutil
    shutil.rmtree(daemon.root, ignore_errors=True)


# --- steps -----------------------------------------------------------------------------

@step("environment")
def environment():
    smi_q = subprocess.run(["nvidia-smi", "-q"], capture_output=True, text=True, timeout=60).stdout
    pathlib.Path(ARGS.out, "nvidia-smi-q.txt").write_text(smi_q)
    try:
        nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    except FileNotFoundError:
        nvcc = ["nvcc not on PATH"]
    ldd = subprocess.run(["ldd", str(pathlib.Path(ARGS.bin, "appliance"))], capture_output=True, text=True).stdout
    ldd_stt = subprocess.run(["ldd", str(pathlib.Path(ARGS.bin, "appliance-stt-worker"))], capture_output=True,
                             text=True).stdout
    return {"smi": smi(), "nvcc": nvcc[-1] if nvcc else None, "ldd_appliance": ldd.splitlines(),
            "ldd_stt_worker": ldd_stt.splitlines(), "cpu_count": os.cpu_count(),
            "models": {p.name: p.stat().st_size for p in pathlib.Path(ARGS.models).glob("*.gguf")}}


@step("baseline")
def baseline():
    RESULTS["baseline_used_mib"] = used_mib()
    return {"used_mib_before_daemon": RESULTS["baseline_used_mib"]}


@step("nvml_vs_smi")
def nvml_vs_smi(daemon):
    r = subprocess.run(daemon.base + ["gpu", "--json"], capture_output=True, text=True, timeout=60, env=daemon.env)
    ref = smi()
    if r.returncode != 0:
        raise RuntimeError(f"`appliance gpu --json` failed ({r.returncode}): {r.stderr.strip()[:500]}")
    ours = json.loads(r.stdout)
    cmp = []
    for dev in ours.get("devices", []):
        s = next((g for g in ref["gpus"] if g["index"] == str(dev.get("index"))), None)
        if s is None:
            continue
        mib = 1024 * 1024

        def num(v):
            try:
                return float(v)
            except (TypeError, ValueError):
                return None

        rows = {
            "name": (dev.get("name"), s["name"]),
            "uuid": (dev.get("uuid"), s["uuid"]),
            "memory_total_mib": (dev.get("memory_total_bytes", 0) / mib, num(s["memory.total"])),
            "memory_used_mib": (dev.get("memory_used_bytes", 0) / mib, num(s["memory.used"])),
            "memory_free_mib": (dev.get("memory_free_bytes", 0) / mib, num(s["memory.free"])),
            "utilization_percent": (dev.get("utilization_percent"), num(s["utilization.gpu"])),
            "temperature_c": (dev.get("temperature_c"), num(s["temperature.gpu"])),
            "power_w": (dev.get("power_w"), num(s["power.draw"])),
        }
        cmp.append({k: {"appliance": a, "nvidia_smi": b,
                        **({"diff": round(a - b, 2)} if isinstance(a, (int, float)) and isinstance(b, float) else
                           {"same": a == b})} for k, (a, b) in rows.items()})
    return {"appliance": ours, "nvidia_smi": ref, "driver_same": ours.get("driver_version") ==
            ref["gpus"][0]["driver_version"], "compare": cmp}


def peak_bandwidth(name):
    return next((bw for key, bw in PEAK_BANDWIDTH if key in name), None)


@step("decode")
def decode(daemon):
    model_file = pathlib.Path(ARGS.models, f"{BIG}.gguf")
    generate(daemon, BIG, 8)  # load and warm up
    runs = []
    for i in range(3):
        r = generate(daemon, BIG, DECODE_TOKENS, prompt=f"Story {i}: tell me about the sea.")
        runs.append({"eval_count": r.get("eval_count"), "eval_ms": r.get("eval_duration", 0) / 1e6,
                     "tokens_per_s": r["eval_count"] / (r["eval_duration"] / 1e9) if r.get("eval_duration") else None})
    loaded = ps(daemon)
    smi_loaded = smi()
    rates = sorted(x["tokens_per_s"] for x in runs if x["tokens_per_s"])
    ours = rates[len(rates) // 2] if rates else None
    RESULTS["decode_tokens_per_s"] = ours
    return {"model": BIG, "model_bytes": model_file.stat().st_size, "runs": runs, "median_tokens_per_s": ours,
            "ps": loaded, "smi_loaded": smi_loaded}


@step("unload")
def unload_step(daemon, idle_mib):
    before = used_mib()
    reply = unload(daemon, BIG)
    t0 = time.monotonic()
    after = wait_used_at_most(idle_mib + 64, 30)
    return {"reply": reply, "used_mib_loaded": before, "used_mib_idle_baseline": idle_mib,
            "used_mib_after_unload": after, "seconds_to_baseline": round(time.monotonic() - t0, 2),
            "back_to_baseline": after <= idle_mib + 64, "ps_after": ps(daemon)}


@step("llama_bench")
def llama_bench():
    model = str(pathlib.Path(ARGS.models, f"{BIG}.gguf"))
    out = {}
    for fa in ("0", "1"):
        r = subprocess.run([ARGS.llama_bench, "-m", model, "-ngl", "99", "-p", "0", "-n", str(DECODE_TOKENS),
                            "-r", "3", "-fa", fa, "-o", "json"], capture_output=True, text=True, timeout=240)
        pathlib.Path(ARGS.out, f"llama-bench-fa{fa}.log").write_text(r.stderr)
        if r.returncode != 0:
            out[f"fa{fa}"] = {"error": r.stderr.strip()[-800:]}
            continue
        rows = json.loads(r.stdout)
        out[f"fa{fa}"] = {"avg_ts": rows[0]["avg_ts"], "stddev_ts": rows[0]["stddev_ts"],
                          "build": rows[0].get("build_commit"), "gpu": rows[0].get("gpu_info")}
    return out


def summarise():
    dec = RESULTS["steps"].get("decode") or {}
    lb = RESULTS["steps"].get("llama_bench") or {}
    ours = dec.get("median_tokens_per_s")
    name = (RESULTS["steps"].get("environment") or {}).get("smi", {}).get("gpus", [{}])[0].get("name", "")
    peak = peak_bandwidth(name)
    summary = {"gpu": name, "peak_bandwidth_bytes_per_s": peak, "appliance_tokens_per_s": ours}
    for fa in ("fa0", "fa1"):
        ref = (lb.get(fa) or {}).get("avg_ts")
        if ours and ref:
            summary[f"ratio_vs_llama_bench_{fa}"] = round(ours / ref, 3)
        if ref and peak and dec.get("model_bytes"):
            summary[f"bandwidth_utilisation_llama_bench_{fa}"] = round(dec["model_bytes"] * ref / peak, 3)
    if ours and peak and dec.get("model_bytes"):
        summary["bandwidth_utilisation_appliance"] = round(dec["model_bytes"] * ours / peak, 3)
    summary["target"] = "appliance >= 0.97 x llama-bench tg (same fa setting as the daemon)"
    RESULTS["summary"] = summary


@step("together")
def together(daemon, idle_mib):
    """Chat, embeddings and speech loaded at once; each load's failure is recorded alone."""
    results = {}
    loads = {
        "chat": lambda: {"eval_count": generate(daemon, SMALL, 16).get("eval_count")},
        "embed": lambda: {"dims": len((http(daemon, "POST", "/api/embed", {
            "model": EMBED, "input": ["a GPU check", "second text"], "keep_alive": "30m"}).get("embeddings") or [[]])[0])},
        "speech": lambda: {"text": str((lambda r: r.get("text") if isinstance(r, dict) else r)(
            transcribe(daemon, SPEECH)))[:200]},
    }
    for name, load in loads.items():
        try:
            results[name] = load()
        except Exception as e:
            results[name] = {"error": str(e)[:800]}
    loaded = ps(daemon)
    results.update({"ps": loaded, "smi": smi(),
                    "models_in_ps": sorted(m.get("name", m.get("model", "?")) for m in loaded.get("models", []))})
    for model, endpoint in ((SMALL, "/api/generate"), (EMBED, "/api/embed")):
        try:
            unload(daemon, model, endpoint)
        except Exception as e:
            results[f"unload_{model}"] = str(e)[:500]
    results["ps_after_unload"] = ps(daemon)
    results["used_mib_after_unload"] = wait_used_at_most(idle_mib + 64, 20)
    results["used_mib_idle_baseline"] = idle_mib
    results["all_loaded"] = not any("error" in results[k] for k in loads)
    return results


@step("budget")
def budget():
    daemon = start_daemon(merged(CONFIG, BUDGET_CONFIG))
    try:
        time.sleep(1)
        idle = used_mib()
        seen = {"config": toml(merged(CONFIG, BUDGET_CONFIG)), "used_mib_idle": idle}
        for model in (MID_A, MID_B):
            try:
                r = generate(daemon, model, 8)
                seen[model] = {"eval_count": r.get("eval_count")}
            except Exception as e:  # a refusal is a finding too
                seen[model] = {"error": str(e)}
            seen[model].update({"ps": ps(daemon), "smi": smi()})
        names = [m.get("name", m.get("model")) for m in seen[MID_B]["ps"].get("models", [])]
        seen["mid_a_evicted"] = not any(n and n.startswith(MID_A) for n in names)
        seen["used_mib_over_idle_after_b"] = float(seen[MID_B]["smi"]["gpus"][0]["memory.used"]) - idle
        return seen
    finally:
        stop_daemon(daemon, "budget")


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--llama-bench", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--deadline", type=float, default=0)
    p.add_argument("--dry-run", action="store_true", help="print the config and the plan, touch nothing")
    ARGS = p.parse_args()
    os.environ["TEST_MODELS_DIR"] = ARGS.models
    if ARGS.dry_run:
        print("config.toml:\n" + toml(CONFIG))
        print("budget step adds:\n" + toml(BUDGET_CONFIG))
        print("steps: environment, baseline, nvml_vs_smi, decode, unload, llama_bench, together, budget")
        return
    pathlib.Path(ARGS.out).mkdir(parents=True, exist_ok=True)
    environment()
    baseline()
    daemon = start_daemon(CONFIG)
    try:
        time.sleep(1)
        idle = used_mib()
        RESULTS["idle_daemon_used_mib"] = idle
        nvml_vs_smi(daemon)
        decode(daemon)
        unload_step(daemon, idle)
        together(daemon, idle)
    finally:
        stop_daemon(daemon, "main")
    llama_bench()
    summarise()
    save()
    budget()
    RESULTS["used_mib_after_all"] = used_mib()
    RESULTS["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    print(json.dumps(RESULTS.get("summary"), indent=2))


if __name__ == "__main__":
    main()
