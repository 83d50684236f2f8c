#!/usr/bin/env bash
# Measures `appliance serve` start-up and idle memory.
#
# Usage: bench/startup.sh [--bin PATH] [--build] [--models-dir DIR] [RUNS]
#   --bin PATH        the binary (default $CARGO_TARGET_DIR/release/appliance,
#                     CARGO_TARGET_DIR defaulting to ~/.cache/appliance/target)
#   --build           run `cargo build --release --locked` first (otherwise never builds)
#   --models-dir DIR  models dir for the readiness measure (default $TEST_MODELS_DIR, else
#                     ~/.cache/appliance/models)
#   RUNS              default 10
#
# Per run, from exec:
#   listening   until the daemon prints its `listening on` line (and its self-reported
#               "ready in N ms", measured inside the process)
#   healthz     until GET /healthz answers 200
#   readyz      until GET /readyz answers 200 — only when the models dir has the default
#               model (without it /readyz rightly answers 503); bounded, fails loudly
#   idle RSS    VmRSS 2 s after that, no model loaded (models load on first request)
# Every wait is bounded (START_TIMEOUT, default 30 s). Run it on an idle machine: these
# numbers are noisy while anything else compiles.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/appliance/target}"
BIN="$CARGO_TARGET_DIR/release/appliance"
MODELS="${TEST_MODELS_DIR:-$HOME/.cache/appliance/models}"
DEFAULT_MODEL="SmolLM2-135M-Instruct-Q4_1"   # engine.default_model in src/config/default.toml
TIMEOUT_S="${START_TIMEOUT:-30}"
RUNS=10
BUILD=0
die() { echo "startup.sh: ERROR: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) [[ $# -ge 2 ]] || die "--bin needs a path"; BIN="$2"; shift 2 ;;
    --build) BUILD=1; shift ;;
    --models-dir) [[ $# -ge 2 ]] || die "--models-dir needs a path"; MODELS="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *[!0-9]*|'') die "unknown argument '$1' (try --help)" ;;
    *) RUNS="$1"; shift ;;
  esac
done
[[ "$RUNS" -ge 1 ]] || die "RUNS must be at least 1"
command -v curl >/dev/null || die "curl not found"
if [[ "$BUILD" == 1 ]]; then
  (cd "$REPO" && cargo build --release --locked --quiet) || die "cargo build --release failed"
  BIN="$CARGO_TARGET_DIR/release/appliance"
fi
[[ -x "$BIN" ]] || die "$BIN missing or not executable: build it (cargo build --release, or pass --build) or pass --bin PATH"
if [[ -f "$MODELS/$DEFAULT_MODEL.gguf" ]]; then
  check_ready=1
else
  check_ready=0
  echo "note: $MODELS/$DEFAULT_MODEL.gguf missing: /readyz is not measured (it answers 503 without the default model)" >&2
fi

work="$(mktemp -d)"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
printf '' > "$work/config.toml"
now_ns() { date +%s%N; }

# Waits until "$@" succeeds, at most TIMEOUT_S from t0 (ns); fails loudly naming $what.
wait_for() {
  local what="$1" t0="$2" rc=0; shift 2
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || rc=$?
      die "the daemon exited (status $rc) while waiting for $what; stdout: $(cat "$out"); stderr tail: $(tail -5 "$dir/stderr")"
    fi
    if (( ($(now_ns) - t0) / 1000000000 >= TIMEOUT_S )); then
      die "$what not reached within $TIMEOUT_S s; stdout: $(cat "$out")${detail:+; $($detail)}"
    fi
    sleep 0.005
  done
}
readyz_body() { echo "/readyz says: $(curl -s --max-time 2 "$url/readyz")"; }
http_ok() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" == 200 ]]; }

self=(); listening=(); healthz=(); readyz=(); rss=()
for i in $(seq "$RUNS"); do
  dir="$work/run$i"; out="$dir.out"; mkdir -p "$dir"
  t0=$(now_ns)
  "$BIN" --config "$work/config.toml" --data-dir "$dir/data" --log-dir "$dir/logs" \
    --runtime-dir "$dir/run" --models-dir "$MODELS" --port 0 --set log.file=false serve \
    > "$out" 2> "$dir/stderr" &
  pid=$!
  wait_for "the 'listening on' line" "$t0" grep -q 'listening on' "$out"
  t1=$(now_ns)
  url=$(grep -m1 -o 'https\?://[0-9.:]*' "$out") || die "no URL in: $(cat "$out")"
  wait_for "GET $url/healthz = 200" "$t0" http_ok "$url/healthz"
  t2=$(now_ns)
  if [[ "$check_ready" == 1 ]]; then
    detail=readyz_body wait_for "GET $url/readyz = 200" "$t0" http_ok "$url/readyz"
    t3=$(now_ns)
    readyz+=("$(( (t3 - t0) / 1000000 ))")
  fi
  s="$(sed -n 's/.*ready in \([0-9]*\) ms.*/\1/p' "$out")"
  [[ -n "$s" ]] || die "no 'ready in N ms' in: $(cat "$out")"
  self+=("$s")
  listening+=("$(( (t1 - t0) / 1000000 ))")
  healthz+=("$(( (t2 - t0) / 1000000 ))")
  sleep 2   # idle
  rss+=("$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")")
  kill -TERM "$pid"
  # Bounded stop: TERM, then KILL after 10 s.
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; wait "$pid" 2>/dev/null || true; die "the daemon did not stop within 10 s of SIGTERM"; fi
  wait "$pid" 2>/dev/null || true
  pid=""
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "binary:                          $BIN"
echo "runs:                            $RUNS (nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo "start-to-ready (self-reported):  median $(median "${self[@]}") ms"
echo "exec-to-listening (wall):        median $(median "${listening[@]}") ms"
echo "exec-to-healthz 200 (wall):      median $(median "${healthz[@]}") ms"
if [[ "$check_ready" == 1 ]]; then
  echo "exec-to-readyz 200 (wall):       median $(median "${readyz[@]}") ms (models dir $MODELS)"
else
  echo "exec-to-readyz 200 (wall):       not measured (no $DEFAULT_MODEL.gguf in $MODELS)"
fi
echo "idle RSS after ready:            median $(( $(median "${rss[@]}") / 1024 )) MiB"
