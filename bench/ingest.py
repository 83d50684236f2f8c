#!/usr/bin/env python3
"""Ingestion benchmark: pages per second from PDF files to searchable chunks, the appliance
against the usual Python pipeline, side by side in one run, on a generated PDF corpus.

usage: ~/.cache/appliance/bench-venv/bin/python bench/ingest.py [--bin PATH] [--build]
           [--threads N] [--documents N] [--pages N] [--rounds N] [--json PATH]

Needs the Python environment of bench/requirements.txt (bench/setup-python.sh), the
appliance binary (default $CARGO_TARGET_DIR/release/appliance) and the default models.

The corpus: --documents PDFs of --pages pages (fpdf2, Helvetica, ~330 words a page under
a heading), the same every run.

  appliance    every file uploaded through POST /api/v1/collections/{id}/documents, then
               polled until each document is `ready`; the time from the first upload to
               the last document ready. That is the whole job: extraction in the
               sandboxed extract worker, chunking by tokens of the embedding model (200,
               overlap 32), embedding in the embedding worker, chunks + FTS + vectors
               written to SQLite, the coarse index updated. engine.threads and the job
               concurrency as given (defaults: 2 and the daemon's default 2).
  reference    pypdf text per page, the same token windows (200, overlap 32, counted
               with the model's tokenizer), sentence-transformers encode (batch 32) on
               PyTorch CPU with the same threads; vectors kept in memory (no store).
Rounds alternate which side goes first; the median over rounds.
"""

import argparse
import io
import json
import os
import pathlib
import random
import sys
import time

import httpx

from harness import (MODELS, TARGET, ApplianceDaemon, BenchError, build_release, commit, cpu_model, fail, median,
                     require_executable)
from embeddings import MODEL, OBJECTS, SUBJECTS, TAILS, VERBS, load_sentence_transformer

CHUNK_TOKENS = 200
OVERLAP = 32
INDEX_TIMEOUT = 1800  # s, the whole corpus


def corpus(documents, pages):
    import fpdf
    rng = random.Random(3)
    files = []
    for d in range(documents):
        pdf = fpdf.FPDF()
        pdf.set_font("helvetica", size=11)
        for p in range(pages):
            pdf.add_page()
            pdf.set_font("helvetica", style="B", size=14)
            pdf.multi_cell(0, 8, f"Report {d + 1}, section {p + 1}", new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("helvetica", size=11)
            for _ in range(4):
                paragraph = " ".join(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
                                     f"{rng.choice(TAILS)}" for _ in range(8))
                pdf.multi_cell(0, 5, paragraph, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2)
        files.append((f"report-{d + 1:03}.pdf", bytes(pdf.output())))
    return files


def appliance_run(binary, threads, concurrency, files):
    settings = [f"engine.threads={threads}", "engine.keep_alive=-1"]
    if concurrency:
        settings.append(f"jobs.concurrency={concurrency}")
    daemon = ApplianceDaemon(binary, settings)
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=300) as h:
            # Load the embedding model first, as the reference side has loaded its own.
            r = h.post("/v1/embeddings", json={"model": MODEL, "input": "warm up"})
            if r.status_code != 200:
                fail(f"appliance: warm-up embedding: HTTP {r.status_code}: {r.text[:300]}")
            r = h.post("/api/v1/collections", json={"name": "bench"})
            if r.status_code != 201:
                fail(f"appliance: creating the collection: HTTP {r.status_code}: {r.text[:300]}")
            collection = r.json()["id"]
            started = time.perf_counter()
            for name, data in files:
                r = h.post(f"/api/v1/collections/{collection}/documents",
                           files={"file": (name, data, "application/pdf")})
                if r.status_code not in (200, 201, 202):
                    fail(f"appliance: uploading {name}: HTTP {r.status_code}: {r.text[:300]}")
            while True:
                docs = h.get(f"/api/v1/collections/{collection}/documents").json()["documents"]
                failed = [d for d in docs if d["state"] == "failed"]
                if failed:
                    fail(f"appliance: {failed[0]['name']} failed: {failed[0].get('error')}")
                if len(docs) == len(files) and all(d["state"] == "ready" for d in docs):
                    elapsed = time.perf_counter() - started
                    break
                if time.perf_counter() - started > INDEX_TIMEOUT:
                    fail(f"appliance: not indexed within {INDEX_TIMEOUT} s")
                daemon.check_alive()
                time.sleep(0.05)
            return elapsed, sum(d["pages"] or 0 for d in docs), sum(d["chunks"] for d in docs)
    finally:
        daemon.stop()


class Reference:
    def __init__(self, threads):
        self.model, _ = load_sentence_transformer(threads)
        self.tokenizer = self.model.tokenizer
        self.model.encode(["warm up"])

    def windows(self, text):
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        step = CHUNK_TOKENS - OVERLAP
        return [self.tokenizer.decode(ids[i:i + CHUNK_TOKENS]) for i in range(0, max(1, len(ids) - OVERLAP), step)]

    def run(self, files):
        import pypdf
        started = time.perf_counter()
        pages = chunks = 0
        for _, data in files:
            texts = []
            for page in pypdf.PdfReader(io.BytesIO(data)).pages:
                pages += 1
                texts.extend(self.windows(page.extract_text() or ""))
            chunks += len(texts)
            self.model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
        return time.perf_counter() - started, pages, chunks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=pathlib.Path, default=TARGET / "release/appliance", help="the appliance binary")
    ap.add_argument("--build", action="store_true", help="run `cargo build --release` first (uses its binary)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=0, help="jobs.concurrency (default: the daemon's)")
    ap.add_argument("--documents", type=int, default=20)
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=pathlib.Path, help="write the results as JSON here")
    args = ap.parse_args()
    if args.build:
        args.bin = build_release(None)
    require_executable(args.bin, "build it (cargo build --release), pass --build, or pass --bin PATH")
    if not (MODELS / MODEL / "model.safetensors").exists():
        fail(f"{MODELS / MODEL} missing: run scripts/fetch-models {MODELS} (or set TEST_MODELS_DIR)")

    files = corpus(args.documents, args.pages)
    size = sum(len(d) for _, d in files)
    reference = Reference(args.threads)
    load_before = os.getloadavg()
    runs = {"appliance": [], "reference": []}
    for round_no in range(max(1, args.rounds)):
        order = ["appliance", "reference"] if round_no % 2 == 0 else ["reference", "appliance"]
        for side in order:
            print(f"round {round_no + 1}: {side}…", file=sys.stderr)
            if side == "appliance":
                elapsed, pages, chunks = appliance_run(args.bin, args.threads, args.concurrency, files)
            else:
                elapsed, pages, chunks = reference.run(files)
            if pages != args.documents * args.pages:
                fail(f"{side}: {pages} pages indexed, {args.documents * args.pages} expected")
            runs[side].append({"seconds": elapsed, "pages": pages, "chunks": chunks, "pages_per_s": pages / elapsed})

    ours = median([r["pages_per_s"] for r in runs["appliance"]])
    ref = median([r["pages_per_s"] for r in runs["reference"]])
    facts = {"commit": commit(), "cpu": cpu_model(), "nproc": os.cpu_count(), "threads": args.threads,
             "documents": args.documents, "pages_per_document": args.pages, "corpus_bytes": size,
             "load_before": load_before, "load_after": os.getloadavg()}
    print(f"\nIngestion, {args.documents} PDFs × {args.pages} pages ({size / 1e6:.1f} MB), {args.threads} threads, "
          f"median of {args.rounds} rounds (commit {facts['commit']}, {facts['cpu']})\n")
    print("| | pages/s | chunks | ratio |")
    print("|---|---|---|---|")
    print(f"| appliance (upload → ready: extract, chunk, embed, SQLite + FTS + vectors) | {ours:.1f} | "
          f"{runs['appliance'][0]['chunks']} | {ours / ref:.2f}× |")
    print(f"| pypdf + sentence-transformers (no store) | {ref:.1f} | {runs['reference'][0]['chunks']} | 1.00× |")
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "runs": runs}, indent=2))


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"ingest bench: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
