#!/usr/bin/env bash
# Makes the Python environment the embedding and ingestion benchmarks run in:
# ~/.cache/appliance/bench-venv (or $1) from bench/requirements.txt. PyTorch on PyPI
# brings its CUDA libraries (~3 GB) even though the benchmark runs it on the CPU.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$HOME/.cache/appliance/bench-venv}"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -r "$REPO/bench/requirements.txt"
echo "bench Python environment ready: $VENV/bin/python"
