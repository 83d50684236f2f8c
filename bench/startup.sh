#!/usr/bin/env bash
# Measures `appliance serve` start-to-ready time and idle RSS with no models loaded.
# Usage: bench/startup.sh [RUNS]   (uses the release build; builds it if missing)
# Run it on an idle machine: these numbers are noisy while anything else compiles.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/appliance/target}"
RUNS="${1:-10}"
(cd "$REPO" && cargo build --release --locked --quiet)
BIN="$CARGO_TARGET_DIR/release/appliance"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
printf '' > "$work/config.toml"

ready=(); wall=(); rss=()
for i in $(seq "$RUNS"); do
  dir="$work/run$i"
  t0=$(date +%s%N)
  "$BIN" --config "$work/config.toml" --data-dir "$dir/data" --log-dir "$dir/logs" \
    --runtime-dir "$dir/run" --port 0 serve > "$dir.out" 2>/dev/null &
  pid=$!
  until grep -q 'listening on' "$dir.out" 2>/dev/null; do sleep 0.005; done
  t1=$(date +%s%N)
  url=$(grep -o 'http://[0-9.:]*' "$dir.out")
  until curl -sf "$url/readyz" >/dev/null; do sleep 0.005; done
  ready+=("$(sed -n 's/.*ready in \([0-9]*\) ms.*/\1/p' "$dir.out")")
  wall+=("$(( (t1 - t0) / 1000000 ))")
  sleep 2   # idle
  rss+=("$(awk '/VmRSS/ {print $2}' /proc/$pid/status)")
  kill -TERM "$pid"; wait "$pid" || true
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "runs:                          $RUNS"
echo "start-to-ready (self-reported): median $(median "${ready[@]}") ms"
echo "exec-to-listening (wall):      median $(median "${wall[@]}") ms"
echo "idle RSS after ready:          median $(( $(median "${rss[@]}") / 1024 )) MiB"
