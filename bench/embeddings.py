#!/usr/bin/env python3
"""Embedding benchmark: the appliance's /v1/embeddings (candle BERT in its embedding worker)
against sentence-transformers on PyTorch CPU, side by side in one run, same model files
(all-MiniLM-L6-v2 from the models dir), same threads, same texts. Prints a markdown table
with ratios; --json writes the results.

usage: ~/.cache/appliance/bench-venv/bin/python bench/embeddings.py [--bin PATH] [--build]
           [--threads N] [--rounds N] [--sentences N] [--passages N] [--json PATH]

Needs the Python environment of bench/requirements.txt (bench/setup-python.sh makes it:
torch from PyPI, which brings ~3 GB of CUDA wheels it does not use here), the appliance
binary (default $CARGO_TARGET_DIR/release/appliance) and the default models. Run it on an
idle machine.

What is measured, sentences (texts) per second, each side alone:
  batch 1    one short sentence per call, one call after another: for the appliance an
             HTTP request with the official client's defaults (base64 encoding), keep-alive;
             for sentence-transformers `model.encode([s])`
  batch 32   32 short sentences per call (`encode(list, batch_size=32)`)
  passages   32 passages of ~170 words (~200 tokens, the size of a document chunk) per
             call; under sentence-transformers' 256-token cut, so both sides see every token
Before measuring, both sides embed the same texts and must agree (cosine ≥ 0.999 for each).
Rounds alternate which side goes first; the table has the median over rounds.
"""

import argparse
import base64
import json
import os
import pathlib
import random
import sys
import time

import httpx
import numpy as np

from harness import (MODELS, TARGET, ApplianceDaemon, BenchError, build_release, commit, cpu_model, fail, median,
                     require_executable)

MODEL = "all-MiniLM-L6-v2"
REQUEST_TIMEOUT = 300

SUBJECTS = ["The engineer", "A small cat", "Our finance team", "The river", "My grandmother", "The new server",
            "A tired student", "The city council", "An old lighthouse", "The research group"]
VERBS = ["reviewed", "carried", "painted", "measured", "ignored", "repaired", "described", "announced", "followed",
         "questioned"]
OBJECTS = ["the quarterly budget", "a broken umbrella", "the northern coastline", "three unusual proposals",
           "the morning train schedule", "an encrypted backup", "the village festival", "a stack of invoices",
           "the migration plan", "a forgotten recipe"]
TAILS = ["before lunch.", "with great care.", "despite the storm.", "for the second time this week.",
         "without telling anyone.", "in the old library.", "after a long debate.", "as the deadline approached."]


def texts(seed, sentences, passages):
    rng = random.Random(seed)
    short = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}"
             for _ in range(sentences)]
    long = [" ".join(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}"
                     for _ in range(15)) for _ in range(passages)]
    return short, long


class Appliance:
    name = "appliance"

    def __init__(self, binary, threads):
        self.daemon = ApplianceDaemon(binary, [f"engine.threads={threads}", "engine.keep_alive=-1"])
        self.client = httpx.Client(base_url=self.daemon.url, headers=self.daemon.headers, timeout=REQUEST_TIMEOUT)

    def embed(self, batch):
        r = self.client.post("/v1/embeddings", json={"model": MODEL, "input": batch, "encoding_format": "base64"})
        if r.status_code != 200:
            self.daemon.check_alive()
            fail(f"appliance: HTTP {r.status_code}: {r.text[:500]}")
        data = sorted(r.json()["data"], key=lambda d: d["index"])
        return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data])

    def stop(self):
        self.client.close()
        self.daemon.stop()


def load_sentence_transformer(threads):
    """all-MiniLM-L6-v2 from the models dir in sentence-transformers (mean pooling, L2
    normalisation, 256-token cut as published), PyTorch on the CPU with `threads`."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    torch.set_num_threads(threads)
    transformer = Transformer(str(MODELS / MODEL), max_seq_length=256)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"),
                                         Normalize()], device="cpu")
    return model, torch.__version__


class SentenceTransformers:
    name = "sentence-transformers"

    def __init__(self, threads):
        self.model, self.torch_version = load_sentence_transformer(threads)

    def embed(self, batch):
        return self.model.encode(batch, batch_size=32, convert_to_numpy=True, show_progress_bar=False)

    def stop(self):
        pass


def rate(side, batches):
    count = sum(len(b) for b in batches)
    started = time.perf_counter()
    for batch in batches:
        side.embed(batch)
    return count / (time.perf_counter() - started)


def phases(short, long):
    return {
        "batch1": [[s] for s in short],
        "batch32": [short[i:i + 32] for i in range(0, len(short), 32)],
        "passages32": [long[i:i + 32] for i in range(0, len(long), 32)],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=pathlib.Path, default=TARGET / "release/appliance", help="the appliance binary")
    ap.add_argument("--build", action="store_true", help="run `cargo build --release` first (uses its binary)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sentences", type=int, default=256, help="short sentences per phase")
    ap.add_argument("--passages", type=int, default=64, help="chunk-sized passages per phase")
    ap.add_argument("--json", type=pathlib.Path, help="write the results as JSON here")
    args = ap.parse_args()
    if args.build:
        args.bin = build_release(None)
    require_executable(args.bin, "build it (cargo build --release), pass --build, or pass --bin PATH")
    if not (MODELS / MODEL / "model.safetensors").exists():
        fail(f"{MODELS / MODEL} missing: run scripts/fetch-models {MODELS} (or set TEST_MODELS_DIR)")

    short, long = texts(1, args.sentences, args.passages)
    work = phases(short, long)
    load_before = os.getloadavg()
    ours = Appliance(args.bin, args.threads)
    try:
        theirs = SentenceTransformers(args.threads)
        # Same model, same answers: compare before measuring (this also loads both).
        check = short[:16] + long[:16]
        a, b = ours.embed(check), theirs.embed(check)
        agreement = float(np.min(np.sum(a * b, axis=1)))
        if agreement < 0.999:
            fail(f"the two sides disagree: least cosine between their vectors {agreement:.5f} < 0.999")
        results = {ours.name: {k: [] for k in work}, theirs.name: {k: [] for k in work}}
        for round_no in range(max(1, args.rounds)):
            for i, (phase, batches) in enumerate(work.items()):
                order = [ours, theirs] if (i + round_no) % 2 == 0 else [theirs, ours]
                for side in order:
                    print(f"round {round_no + 1}: {phase} on {side.name}…", file=sys.stderr)
                    results[side.name][phase].append(rate(side, batches))
    finally:
        ours.stop()

    facts = {"commit": commit(), "cpu": cpu_model(), "nproc": os.cpu_count(), "threads": args.threads,
             "rounds": args.rounds, "sentences": args.sentences, "passages": args.passages,
             "torch": theirs.torch_version, "least_cosine_between_sides": agreement, "load_before": load_before,
             "load_after": os.getloadavg()}
    labels = {"batch1": "short sentences, batch 1", "batch32": "short sentences, batch 32",
              "passages32": "~200-token passages, batch 32"}
    print(f"\nEmbeddings, {MODEL}, {args.threads} threads, median of {args.rounds} rounds "
          f"(commit {facts['commit']}, {facts['cpu']}, torch {facts['torch']})\n")
    print("| texts/s | appliance | sentence-transformers | ratio |")
    print("|---|---|---|---|")
    summary = {}
    for phase, label in labels.items():
        mine, ref = median(results[ours.name][phase]), median(results[theirs.name][phase])
        summary[phase] = {"appliance": mine, "sentence_transformers": ref, "ratio": mine / ref}
        print(f"| {label} | {mine:.1f} | {ref:.1f} | {mine / ref:.2f}× |")
    print(f"\nleast cosine between the two sides' vectors: {agreement:.5f}")
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "summary": summary, "rounds": results}, indent=2))


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"embeddings bench: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
