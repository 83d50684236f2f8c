#!/usr/bin/env python3
"""Speech-to-text benchmark: the appliance's POST /v1/audio/transcriptions against
whisper.cpp's own whisper-cli, side by side in one run, on the same machine, ggml model
file, audio, threads and decoding. Prints a markdown table with ratios and one JSON line
for the README; --json writes the full results (every round).

usage: ~/.cache/appliance/venv/bin/python bench/speech.py [--bin PATH] [--build]
           [--whisper-cli PATH] [--models M1,M2] [--threads N] [--beam-size N]
           [--best-of N] [--concurrency N] [--concurrent-threads N] [--rounds N] [--audio-seconds S]
           [--audio PATH] [--only appliance|whisper-cli] [--flash-attn-row] [--json PATH]

Needs: the appliance binary (--bin, default $CARGO_TARGET_DIR/release/appliance, with
appliance-stt-worker beside it; --build runs `cargo build --release --workspace` first),
whisper-cli built by bench/build-whisper-reference.sh
(~/.cache/appliance/reference-whisper/build/bin/whisper-cli), the ggml models
$TEST_MODELS_DIR/whisper-tiny.en.bin (and whisper-base.bin, measured when present), made
by `appliance models import`, sox and the LibriVox clips of pocketsphinx-testdata
(apt-get install -y sox pocketsphinx-testdata), httpx. Run it on an idle machine.

Audio: the five LibriVox clips joined with sox, in order and repeated, with equal short
silences between them, into one 16 kHz mono 16-bit WAV of --audio-seconds (60 by
default); --audio PATH uses a file of yours instead (converted with sox to the same
format). Both tools get the same bytes.

Decoding, the same on both sides: language en (the API's `language` field, whisper-cli
-l en), temperature 0 with whisper's default fallback (+0.2), beam search of
--beam-size (5, whisper-cli's default; the daemon gets --set speech.beam_size, whisper-cli
-bs) or greedy when it is 1. The candidates sampled on a temperature fallback follow the
speech worker: it leaves whisper.cpp's greedy.best_of at its beam-search default (-1,
i.e. one candidate) and uses best_of 5 when greedy, so whisper-cli gets -bo 1 with beam
search and -bo 5 when greedy (--best-of overrides). Flash attention is on on both sides
(the speech worker turns it on, as whisper-cli does by default); --flash-attn-row adds an
informative whisper-cli row with it off (-nfa).

Phases, per model and per round, the order of the two tools alternating between rounds:
- 1 request: the appliance's wall time for one transcription request (upload to JSON
  answer; the model is loaded by an untimed warm-up request first) against whisper-cli's
  wall time for one run, and against that run minus its own reported model load time
  (whisper-cli loads the model on every run, the daemon keeps it loaded: this is the
  like-for-like figure the target applies to). Real-time factor = seconds / audio seconds.
- --concurrency N (4) at once: N requests sent together to the daemon, which runs with
  speech.parallel=N and speech.threads=K, against N whisper-cli processes started
  together, each with -t K: the same total threads (N x K). K is --concurrent-threads,
  by default the cores divided among the N (at least 1: 1 on a 2-core machine). More
  threads than cores is pathological for ggml's spinning thread pool: in one run on 2
  cores, 4 whisper-cli processes x 2 threads took 4.7x as long as 4 x 1 thread. Throughput =
  audio seconds transcribed per wall second, first start to last answer.
Each figure is the median over --rounds (3). The daemon is started once (auth on, as
bench/harness.py starts it for every benchmark) and stays up through the rounds; when K
differs from --threads a second daemon (speech.threads=K) serves the concurrent phase.
"""

import argparse
import concurrent.futures
import difflib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import (MODELS, ROOT, TARGET, ApplianceDaemon, BenchError, commit, cpu_model,  # noqa: E402
                     fail, median, require_executable, run)

REFERENCE = pathlib.Path(os.environ.get("BENCH_WHISPER_REFERENCE_DIR")
                         or pathlib.Path.home() / ".cache/appliance/reference-whisper")
LIBRIVOX = pathlib.Path("/usr/share/pocketsphinx/test/data/librivox")
DEFAULT_MODEL = "whisper-tiny.en"
OPTIONAL_MODELS = ["whisper-base"]  # measured when their .bin is in the models dir
TARGET_RATIO = 1.05  # appliance / whisper-cli (without model load), 1 request: at most this
MIN_GAP, MAX_GAP = 0.25, 2.0  # s of silence between joined clips
NOISY_SPREAD = 1.25  # slowest / fastest round of one measure above this: warn


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", type=pathlib.Path, default=TARGET / "release/appliance",
                   help="the appliance binary (default: %(default)s); appliance-stt-worker must sit beside it")
    p.add_argument("--build", action="store_true", help="cargo build --release --workspace first")
    p.add_argument("--whisper-cli", type=pathlib.Path, default=None,
                   help="the reference (default: from bench/build-whisper-reference.sh)")
    p.add_argument("--models", default=None,
                   help=f"comma-separated model names in the models dir (default: {DEFAULT_MODEL}, plus "
                        f"{', '.join(OPTIONAL_MODELS)} when present)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per transcription (default: 2)")
    p.add_argument("--beam-size", type=int, default=5, help="beam width, 1 = greedy (default: 5)")
    p.add_argument("--best-of", type=int, default=None,
                   help="whisper-cli -bo (default: 1 with beam search, 5 greedy, as the speech worker)")
    p.add_argument("--concurrency", type=int, default=4, help="requests / processes at once (default: 4; 0 skips)")
    p.add_argument("--concurrent-threads", type=int, default=None,
                   help="threads per request / process when N run at once (default: cores // N, at least 1)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, order alternating (default: 3)")
    p.add_argument("--audio-seconds", type=float, default=60.0, help="length of the joined audio (default: 60)")
    p.add_argument("--audio", type=pathlib.Path, default=None, help="transcribe this file instead of the clips")
    p.add_argument("--only", choices=["appliance", "whisper-cli"], default=None,
                   help="measure one side only (no ratios)")
    p.add_argument("--flash-attn-row", action="store_true",
                   help="also time whisper-cli with flash attention off, for information")
    p.add_argument("--json", type=pathlib.Path, default=None, help="write the full results here")
    args = p.parse_args()
    for name in ("threads", "beam_size", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.concurrency < 0:
        p.error("--concurrency must be 0 (skip) or more")
    if args.concurrent_threads is None:
        args.concurrent_threads = max(1, (os.cpu_count() or 1) // max(1, args.concurrency))
    if args.concurrent_threads < 1:
        p.error("--concurrent-threads must be at least 1")
    if args.best_of is not None and args.best_of < 1:
        p.error("--best-of must be at least 1")
    if not 5 <= args.audio_seconds <= 3600:
        p.error("--audio-seconds must be between 5 and 3600")
    return args


# --- the audio ---------------------------------------------------------------------------

def seconds_of(path):
    out = run(["soxi", "-D", str(path)], 60).stdout.strip()
    try:
        return float(out)
    except ValueError:
        fail(f"soxi printed no duration for {path}: {out!r}")


def make_audio(workdir, seconds, given):
    """A 16 kHz mono 16-bit WAV (what whisper-cli reads); its path and length in seconds."""
    for tool in ("sox", "soxi"):
        if not shutil.which(tool):
            fail(f"'{tool}' not found on PATH: apt-get install -y sox")
    out = pathlib.Path(workdir, "speech.wav")
    fmt = ["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer"]
    if given is not None:
        if not given.is_file():
            fail(f"audio file {given} missing")
        run(["sox", str(given), *fmt, str(out)], 300)
        return out, seconds_of(out), f"{given} (as 16 kHz mono WAV)"
    clips = sorted(LIBRIVOX.glob("*.wav"))
    if not clips:
        fail(f"no LibriVox clips in {LIBRIVOX}: apt-get install -y pocketsphinx-testdata")
    lengths = [seconds_of(c) for c in clips]
    chosen, total = [], 0.0
    while True:  # clips in order, repeated, while they fit with at least MIN_GAP between them
        i = len(chosen) % len(clips)
        if chosen and total + lengths[i] + MIN_GAP * len(chosen) > seconds:
            break
        if not chosen and lengths[i] > seconds:
            fail(f"--audio-seconds {seconds} is shorter than the first clip ({lengths[i]:.1f} s)")
        chosen.append(i)
        total += lengths[i]
    gap = min(MAX_GAP, (seconds - total) / (len(chosen) - 1)) if len(chosen) > 1 else 0.0
    tail = max(0.0, seconds - total - gap * (len(chosen) - 1))
    silence = pathlib.Path(workdir, "gap.wav")
    run(["sox", "-n", *fmt, str(silence), "trim", "0", f"{gap:.4f}"], 60)
    parts = []
    for n, i in enumerate(chosen):
        parts += ([str(silence)] if n else []) + [str(clips[i])]
    run(["sox", *parts, *fmt, str(out), "pad", "0", f"{tail:.4f}"], 300)
    desc = (f"{len(chosen)} of the {len(clips)} LibriVox clips in {LIBRIVOX} (in order, repeated) joined with "
            f"{gap:.2f} s of silence between them" + (f" and {tail:.2f} s after" if tail >= 0.005 else ""))
    return out, seconds_of(out), desc


def words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


def similarity(a, b):
    """Word-level similarity of two transcripts, 0..1 (difflib ratio)."""
    return difflib.SequenceMatcher(None, words(a), words(b), autojunk=False).ratio()


# --- whisper-cli ---------------------------------------------------------------------------

TIMING = re.compile(r"whisper_print_timings:\s+(load|total) time =\s+([0-9.]+) ms")
SEGMENT = re.compile(r"^\[\d\d:\d\d:\d\d\.\d+ --> \d\d:\d\d:\d\d\.\d+\]\s*(.*)$")


class WhisperCli:
    def __init__(self, binary, threads, beam_size, best_of):
        self.binary, self.threads, self.beam_size, self.best_of = binary, threads, beam_size, best_of

    def args(self, model_path, audio, flash_attn=True, threads=None):
        return [str(self.binary), "-m", str(model_path), "-f", str(audio), "-t", str(threads or self.threads),
                "-bs", str(self.beam_size), "-bo", str(self.best_of), "-l", "en", "-fa" if flash_attn else "-nfa"]

    @staticmethod
    def _parse(args, proc_out, proc_err, rc):
        if rc != 0:
            fail(f"`{' '.join(args)}` failed with status {rc}:\n{proc_out[-1500:]}{proc_err[-2500:]}")
        timings = dict((k, float(v) / 1000) for k, v in TIMING.findall(proc_err))
        if "total" not in timings or "load" not in timings:
            fail(f"whisper-cli printed no load/total timings:\n{proc_err[-2500:]}")
        text = " ".join(m.group(1).strip() for m in map(SEGMENT.match, proc_out.splitlines()) if m)
        return timings, text

    def once(self, model_path, audio, timeout, flash_attn=True):
        """One run: wall s, its own load and total s, the transcript."""
        args = self.args(model_path, audio, flash_attn)
        t0 = time.monotonic()
        try:
            r = subprocess.run(args, text=True, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            fail(f"whisper-cli did not finish within {timeout:.0f} s: {' '.join(args)}")
        wall = time.monotonic() - t0
        timings, text = self._parse(args, r.stdout, r.stderr, r.returncode)
        return {"wall_s": wall, "load_s": timings["load"], "total_s": timings["total"], "text": text}

    def concurrent(self, model_path, audio, n, threads, timeout):
        """n processes of `threads` threads started together; wall s from the first start to the last exit."""
        args = self.args(model_path, audio, threads=threads)
        procs, outs = [], []
        t0 = time.monotonic()
        try:
            for _ in range(n):
                procs.append(subprocess.Popen(args, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              stdin=subprocess.DEVNULL))
            with concurrent.futures.ThreadPoolExecutor(n) as pool:  # drain all pipes at once
                futures = [pool.submit(p.communicate, timeout=timeout) for p in procs]
                for f in futures:
                    try:
                        outs.append(f.result())
                    except subprocess.TimeoutExpired:
                        fail(f"{n} concurrent whisper-cli runs did not finish within {timeout:.0f} s")
            wall = time.monotonic() - t0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        texts = [self._parse(args, o, e, p.returncode)[1] for p, (o, e) in zip(procs, outs)]
        return {"wall_s": wall, "texts": texts}


# --- the appliance ---------------------------------------------------------------------------

class ApplianceApi:
    """The daemon, started as bench/harness.py starts it, and its transcription endpoint."""

    def __init__(self, binary, threads, beam_size, parallel, audio, timeout):
        import httpx  # only this side needs it

        self.audio_bytes = audio.read_bytes()
        self.audio_name = audio.name
        self.daemon = ApplianceDaemon(binary, [f"speech.threads={threads}", f"speech.beam_size={beam_size}",
                                               f"speech.parallel={parallel}", "engine.keep_alive=-1"])
        self.client = httpx.Client(base_url=self.daemon.url, headers=self.daemon.headers,
                                   timeout=httpx.Timeout(timeout, connect=30),
                                   limits=httpx.Limits(max_connections=max(8, parallel * 2)))
        self.httpx = httpx

    def once(self, model):
        """One request: wall s and the transcript."""
        t0 = time.monotonic()
        try:
            r = self.client.post("/v1/audio/transcriptions",
                                 files={"file": (self.audio_name, self.audio_bytes, "audio/wav")},
                                 data={"model": model, "response_format": "json", "language": "en"})
        except self.httpx.HTTPError as e:
            self.daemon.check_alive()
            fail(f"POST {self.daemon.url}/v1/audio/transcriptions ({model}): {type(e).__name__}: {e}\n"
                 f"daemon output:\n{self.daemon.out.tail()}")
        wall = time.monotonic() - t0
        if r.status_code != 200:
            fail(f"POST /v1/audio/transcriptions ({model}) answered {r.status_code}: {r.text[:1000]}\n"
                 f"daemon output:\n{self.daemon.out.tail()}")
        try:
            text = r.json()["text"]
        except (ValueError, KeyError, TypeError):
            fail(f"POST /v1/audio/transcriptions ({model}) answered no JSON `text`: {r.text[:500]}")
        return {"wall_s": wall, "text": text}

    def concurrent(self, model, n):
        """n requests sent together; wall s from the first send to the last answer."""
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            results = list(pool.map(lambda _: self.once(model), range(n)))
        return {"wall_s": time.monotonic() - t0, "texts": [r["text"] for r in results]}

    def stop(self):
        self.client.close()
        self.daemon.stop()


# --- the run ---------------------------------------------------------------------------

def resolve_models(arg):
    if arg:
        names = [m.strip() for m in arg.split(",") if m.strip()]
        if not names:
            fail("--models names no model")
    else:
        names = [DEFAULT_MODEL] + [m for m in OPTIONAL_MODELS if (MODELS / f"{m}.bin").is_file()]
    for name in names:
        path = MODELS / f"{name}.bin"
        if not path.is_file():
            how = (f"fetch the default models (scripts/fetch-models {MODELS}) and convert the faster-whisper "
                   f"folder: appliance --models-dir {MODELS} models import {MODELS}/faster-{name}"
                   if name == DEFAULT_MODEL else
                   f"import a faster-whisper folder of it: appliance --models-dir {MODELS} models import FOLDER "
                   f"--name {name}")
            fail(f"model {path} missing: {how} (or set TEST_MODELS_DIR)")
    return names


def reference_facts(cli):
    versions = REFERENCE / "versions.json"
    facts = {}
    if versions.is_file():
        try:
            facts = json.loads(versions.read_text())
        except ValueError:
            pass
    if facts.get("whisper_cli") and pathlib.Path(facts["whisper_cli"]).resolve() != pathlib.Path(cli).resolve():
        facts["reference_whisper_cpp"] = f"{cli} (not the one bench/build-whisper-reference.sh built)"
    return {"appliance_whisper_cpp": facts.get("appliance_whisper_cpp", "whisper-rs-sys 0.15.0 (whisper.cpp 1.8.3)"),
            "reference_whisper_cpp": facts.get("reference_whisper_cpp", "?"),
            "reference_cmake_flags": facts.get("cmake_flags", "?")}


def main():
    args = parse_args()
    use_app = args.only != "whisper-cli"
    use_cli = args.only != "appliance"
    best_of = args.best_of or (1 if args.beam_size > 1 else 5)
    cli_path = args.whisper_cli or REFERENCE / "build/bin/whisper-cli"

    # Everything checked before anything is measured.
    if args.build and use_app:
        print("building the release binaries (workspace)…", file=sys.stderr)
        run(["cargo", "build", "--release", "--locked", "--workspace", "--quiet"], 3600, cwd=ROOT,
            env=dict(os.environ, CARGO_TARGET_DIR=str(TARGET)))
    if use_app:
        require_executable(args.bin, "build it (cargo build --release --workspace), pass --build, or pass --bin PATH")
        require_executable(args.bin.parent / "appliance-stt-worker",
                           "the speech worker must sit beside the daemon: cargo build --release --workspace")
        try:
            import httpx  # noqa: F401
        except ImportError:
            fail("httpx missing: run with ~/.cache/appliance/venv/bin/python (bench/setup-python.sh)")
    if use_cli:
        require_executable(cli_path, "run bench/build-whisper-reference.sh or pass --whisper-cli PATH")
    models = resolve_models(args.models)

    cli = WhisperCli(cli_path, args.threads, args.beam_size, best_of)
    workdir = tempfile.mkdtemp(prefix="appliance-speech-bench-")
    apis = []
    api = api_multi = None
    try:
        audio, audio_s, audio_desc = make_audio(workdir, args.audio_seconds, args.audio)
        # Generous: a slow machine, beam search, or a concurrent phase on 2 cores.
        timeout = max(300.0, audio_s * 20 * max(1, args.concurrency))
        facts = {"nproc": os.cpu_count(), "cpu": cpu_model(), "commit": commit(), "audio": audio_desc,
                 "audio_s": audio_s, "threads": args.threads, "beam_size": args.beam_size,
                 "whisper_cli_best_of": best_of, "concurrency": args.concurrency,
                 "concurrent_threads": args.concurrent_threads, "rounds": args.rounds,
                 "models": models, "load_before": os.getloadavg(), **reference_facts(cli_path)}
        if use_app:
            facts["appliance_bin"] = str(args.bin)
        if use_cli:
            facts["whisper_cli"] = str(cli_path)
            facts["whisper_cli_args"] = " ".join(cli.args("MODEL.bin", "AUDIO.wav")[1:])
        t_start = time.monotonic()
        warmup = {}
        if use_app:
            print("starting the appliance daemon…", file=sys.stderr)
            same = args.concurrent_threads == args.threads
            api = ApplianceApi(args.bin, args.threads, args.beam_size, max(1, args.concurrency) if same else 1,
                               audio, timeout)
            apis.append(api)
            api_multi = api
            if args.concurrency and not same:
                print(f"starting a second daemon for the concurrent phase (speech.threads={args.concurrent_threads}, "
                      f"speech.parallel={args.concurrency})…", file=sys.stderr)
                api_multi = ApplianceApi(args.bin, args.concurrent_threads, args.beam_size, args.concurrency, audio,
                                         timeout)
                apis.append(api_multi)
            for model in models:
                print(f"warm-up request ({model}: loads the model)…", file=sys.stderr)
                warmup[model] = api.once(model)["wall_s"]
                if api_multi is not api:
                    api_multi.once(model)
        if use_cli:
            for model in models:  # the page cache warm for both sides
                print(f"warm-up whisper-cli run ({model})…", file=sys.stderr)
                cli.once(MODELS / f"{model}.bin", audio, timeout)

        rounds = []
        for round_no in range(args.rounds):
            this = {}
            for m_no, model in enumerate(models):
                path = MODELS / f"{model}.bin"
                r = this[model] = {}
                sides = [s for s, on in (("appliance", use_app), ("whisper_cli", use_cli)) if on]
                if (round_no + m_no) % 2:
                    sides.reverse()
                for side in sides:
                    print(f"round {round_no + 1}/{args.rounds}, {model}: {side}, 1 request…", file=sys.stderr)
                    r[side] = api.once(model) if side == "appliance" else cli.once(path, audio, timeout)
                    if side == "whisper_cli" and args.flash_attn_row:
                        r["whisper_cli_fa"] = cli.once(path, audio, timeout, flash_attn=False)
                if args.concurrency:
                    for side in sides:
                        print(f"round {round_no + 1}/{args.rounds}, {model}: {side}, {args.concurrency} at once…",
                              file=sys.stderr)
                        c = (api_multi.concurrent(model, args.concurrency) if side == "appliance"
                             else cli.concurrent(path, audio, args.concurrency, args.concurrent_threads, timeout))
                        r[f"{side}_concurrent"] = c
            rounds.append(this)
        facts["load_after"] = os.getloadavg()
        facts["duration_s"] = round(time.monotonic() - t_start)
    finally:
        for a in apis:
            a.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    report(args, facts, models, rounds, warmup, audio_s, use_app, use_cli)


def report(args, facts, models, rounds, warmup, audio_s, use_app, use_cli):
    def med(model, key, field):
        return median([r[model][key][field] for r in rounds if key in r[model]])

    def num(v, digits=2):
        return "—" if v is None or v != v else f"{v:.{digits}f}"

    def ratio(a, b):
        return a / b if a is not None and b and a == a and b == b else None

    n = args.concurrency
    summary, table = {}, []
    print(f"\nmachine: nproc {facts['nproc']} ({facts['cpu']}); commit {facts['commit']}; load average "
          f"{facts['load_before'][0]:.2f} before, {facts['load_after'][0]:.2f} after; {facts['duration_s']} s")
    print(f"audio: {audio_s:.2f} s, 16 kHz mono WAV: {facts['audio']}")
    print(f"decoding: language en, temperature 0 (+0.2 fallback), "
          + (f"beam search, beam size {args.beam_size} (daemon --set speech.beam_size={args.beam_size}; "
             f"whisper-cli -bs {args.beam_size} -bo {facts['whisper_cli_best_of']})" if args.beam_size > 1 else
             f"greedy (daemon --set speech.beam_size=1; whisper-cli -bs 1 -bo {facts['whisper_cli_best_of']})")
          + "; flash attention on on both")
    k = args.concurrent_threads
    print(f"threads: {args.threads} per transcription; "
          + (f"{n} at once: {k} each, {n * k} in all (daemon speech.parallel={n} speech.threads={k}; {n} whisper-cli "
             f"processes × -t {k})" if n else "no concurrent phase (--concurrency 0)")
          + f"; median over {args.rounds} rounds, order alternating")
    if use_app:
        print(f"appliance: {facts['appliance_bin']}, auth on, {facts['appliance_whisper_cpp']}")
    if use_cli:
        print(f"whisper-cli: {facts['reference_whisper_cpp']}; {facts['whisper_cli_args']}")
    print()
    print("| model | measure | appliance | whisper-cli | ratio (appliance/whisper-cli) | target |")
    print("|---|---|---:|---:|---:|---|")
    for model in models:
        a_wall = med(model, "appliance", "wall_s") if use_app else None
        c_wall = med(model, "whisper_cli", "wall_s") if use_cli else None
        c_proc = median([r[model]["whisper_cli"]["wall_s"] - r[model]["whisper_cli"]["load_s"] for r in rounds]) \
            if use_cli else None
        c_load = med(model, "whisper_cli", "load_s") if use_cli else None
        s = summary[model] = {
            "appliance_s": a_wall, "whisper_cli_s": c_wall, "whisper_cli_without_load_s": c_proc,
            "whisper_cli_load_s": c_load,
            "appliance_rtf": ratio(a_wall, audio_s), "whisper_cli_rtf": ratio(c_proc, audio_s),
            "ratio": ratio(a_wall, c_proc), "ratio_incl_load": ratio(a_wall, c_wall),
        }
        if use_app:
            s["appliance_warmup_s"] = warmup.get(model)
        rows = [
            ("1 request, wall s (whisper-cli: whole process, model load included)", a_wall, c_wall,
             s["ratio_incl_load"], None),
            ("1 request, wall s (whisper-cli: minus its model load)", a_wall, c_proc, s["ratio"], TARGET_RATIO),
            ("real-time factor, 1 request (s per audio s; whisper-cli minus load)", s["appliance_rtf"],
             s["whisper_cli_rtf"], None, None),
        ]
        if args.flash_attn_row and use_cli:
            fa = median([r[model]["whisper_cli_fa"]["wall_s"] - r[model]["whisper_cli_fa"]["load_s"] for r in rounds])
            s["whisper_cli_flash_attn_without_load_s"] = fa
            rows.append(("1 request, wall s, whisper-cli -nfa (flash attention off) minus load, "
                         "for information", None, fa, None, None))
        if n:
            a_tp = ratio(n * audio_s, med(model, "appliance_concurrent", "wall_s")) if use_app else None
            c_tp = ratio(n * audio_s, med(model, "whisper_cli_concurrent", "wall_s")) if use_cli else None
            s.update({f"appliance_{n}x_audio_s_per_s": a_tp, f"whisper_cli_{n}x_audio_s_per_s": c_tp,
                      f"ratio_{n}x": ratio(a_tp, c_tp)})
            rows.append((f"{n} at once, {args.concurrent_threads} threads each, audio s per wall s (higher is "
                         f"better; whisper-cli: {n} processes)",
                         a_tp, c_tp, s[f"ratio_{n}x"], None))
        for name, ours, theirs, r, target in rows:
            mark = ""
            if target and r is not None:
                mark = f"≤ {target:.2f} {'met' if r <= target else 'MISSED'}"
            elif target:
                mark = f"≤ {target:.2f}"
            print(f"| {model} | {name} | {num(ours)} | {num(theirs)} | {num(r)} | {mark} |")
            table.append({"model": model, "measure": name, "appliance": ours, "whisper_cli": theirs, "ratio": r,
                          "target": f"<= {target}" if target else None})
    # Rounds that disagree mean the machine was busy (on a shared 2-core machine another
    # build slowed single runs up to 10x): the medians are then not to be trusted.
    print()
    for model in models:
        for key in ("appliance", "whisper_cli", "whisper_cli_fa", "appliance_concurrent", "whisper_cli_concurrent"):
            walls = [r[model][key]["wall_s"] for r in rounds if key in r[model]]
            if len(walls) > 1:
                spread = max(walls) / min(walls)
                summary[model][f"{key}_spread"] = spread
                if spread > NOISY_SPREAD:
                    print(f"WARNING: {model} {key}: rounds range from {min(walls):.2f} to {max(walls):.2f} s "
                          f"({spread:.1f}x): the machine was busy; rerun on an idle machine")
    # Did both sides transcribe the same thing? (Different text means different decoding work.)
    for model in models:
        texts = {}
        for key in ("appliance", "whisper_cli"):
            if key in rounds[-1][model]:
                texts[key] = rounds[-1][model][key]["text"]
        if len(texts) == 2:
            sim = similarity(texts["appliance"], texts["whisper_cli"])
            summary[model]["transcript_similarity"] = sim
            print(f"{model}: transcripts' word similarity appliance vs whisper-cli {sim:.3f}"
                  + ("" if sim >= 0.9 else " — LOW: the two sides did not decode the same text; timings differ in "
                     "work done"))
        for key, text in texts.items():
            print(f"{model} {key}: {len(words(text))} words: {text[:160]}{'…' if len(text) > 160 else ''}")
    line = {"bench": "speech", "commit": facts["commit"], "audio_s": round(audio_s, 2), "threads": args.threads,
            "beam_size": args.beam_size, "concurrency": n, "concurrent_threads": args.concurrent_threads,
            "rounds": args.rounds,
            "models": {m: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}
                       for m, s in summary.items()}}
    print("\n" + json.dumps(line, separators=(",", ":")))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"facts": facts, "table": table, "summary": summary, "warmup_s": warmup,
                                         "rounds": rounds}, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"speech.py: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
