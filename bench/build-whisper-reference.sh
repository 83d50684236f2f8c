#!/usr/bin/env bash
# Builds the speech-to-text benchmark reference: whisper.cpp's own `whisper-cli`, from the
# PyPI sdist pywhispercpp==1.5.1, which carries whisper.cpp's full source (examples/cli
# included). bench/speech.py compares the appliance's /v1/audio/transcriptions with it.
#
# Usage: bench/build-whisper-reference.sh            (idempotent: skips the build when
#                                                     whisper-cli exists and its stamp
#                                                     matches the sdist hash and flags)
#        JOBS=1 bench/build-whisper-reference.sh     (parallel compile jobs; default 2)
#        bench/build-whisper-reference.sh --rebuild  (configure and build again)
#        bench/build-whisper-reference.sh --vendored (whisper-cli's sources from the sdist,
#            built against the whisper.cpp the worker links — whisper-rs-sys's vendored
#            copy — in ~/.cache/appliance/reference-whisper-vendored: the same library on
#            both sides, so the comparison measures the appliance's own overhead; run
#            speech.py with BENCH_WHISPER_REFERENCE_DIR pointing there)
#
# Everything lives outside the git tree, in $BENCH_WHISPER_REFERENCE_DIR (default
# ~/.cache/appliance/reference-whisper): dl/ (the sdist), src/ (unpacked), build/ (CMake
# build; the binary is build/bin/whisper-cli), build/whisper-cli.stamp (what it was built
# from), versions.json (read by bench/speech.py). The compile runs under `nice -n 19`.
#
# Versions: the reference is whisper.cpp 1.8.5 (ggml 0.13.1), as vendored by pywhispercpp
# 1.5.1; the appliance's speech worker links whisper.cpp 1.8.3 (ggml 0.9.5), as vendored
# by whisper-rs-sys 0.15.0 (whisper-rs 0.16.0). The script prints both, read from the sources.
#
# CMake flags mirror the CPU-relevant ones of whisper-rs-sys 0.15.0's build.rs (without
# cargo features): Release, BUILD_SHARED_LIBS=OFF (static whisper/ggml), position-
# independent code (the crate's `.pic(true)`), GGML_OPENMP=OFF (the crate turns OpenMP off
# unless its `openmp` feature is on, so ggml uses its own thread pool), GGML_METAL=OFF,
# WHISPER_ALL_WARNINGS=OFF. Plus GGML_NATIVE=OFF: ggml then compiles its x86-64 defaults
# (SSE4.2/AVX/AVX2/BMI2/FMA/F16C) instead of -march=native. NOTE: whisper-rs-sys does not set
# GGML_NATIVE itself; ggml's default is ON for a non-cross build, so the worker matches this
# reference only when cargo builds it with GGML_NATIVE=OFF in the environment (build.rs
# forwards every GGML_* variable to CMake). Examples are on (whisper-cli is one), tests,
# SDL2, curl and ffmpeg off.
set -euo pipefail

SDIST_PACKAGE=pywhispercpp
SDIST_VERSION=1.5.1
SDIST_SHA256=5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5
SDIST_NAME="$SDIST_PACKAGE-$SDIST_VERSION"
CRATE=whisper-rs-sys
REPO="$(cd "$(dirname "$0")/.." && pwd)"
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python3}"
REBUILD=0
VENDORED=0
for arg in "$@"; do
  case "$arg" in
    --rebuild) REBUILD=1 ;;
    --vendored) VENDORED=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "build-whisper-reference.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

if [[ "$VENDORED" == 1 ]]; then
  REF="${BENCH_WHISPER_REFERENCE_DIR:-$HOME/.cache/appliance/reference-whisper-vendored}"
else
  REF="${BENCH_WHISPER_REFERENCE_DIR:-$HOME/.cache/appliance/reference-whisper}"
fi
die() { echo "build-whisper-reference.sh: ERROR: $*" >&2; exit 1; }
for tool in cmake curl "$PYTHON" sha256sum tar c++ nice; do
  command -v "$tool" >/dev/null || die "'$tool' not found on PATH (apt-get install -y cmake curl g++)"
done
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "JOBS must be a positive integer, not '$JOBS'"
case "$REF" in "$REPO"|"$REPO"/*) die "$REF is inside the git tree $REPO; point BENCH_WHISPER_REFERENCE_DIR elsewhere" ;; esac
mkdir -p "$REF/dl" "$REF/src"
TARBALL="$REF/dl/$SDIST_NAME.tar.gz"
SRC="$REF/src/$SDIST_NAME/whisper.cpp"
BUILD="$REF/build"
BIN="$BUILD/bin/whisper-cli"
STAMP="$BUILD/whisper-cli.stamp"

CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DGGML_METAL=OFF -DGGML_CCACHE=OFF
  -DWHISPER_ALL_WARNINGS=OFF -DWHISPER_ALL_WARNINGS_3RD_PARTY=OFF
  -DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_EXAMPLES=ON -DWHISPER_BUILD_SERVER=OFF
  -DWHISPER_SDL2=OFF -DWHISPER_CURL=OFF -DWHISPER_FFMPEG=OFF
)

# 1. The sdist, fetched once with curl (PyPI's JSON API gives its URL; `pip download
#    --no-binary` would try to build it) and checked against the pinned hash.
sdist_url() {
  # The per-release endpoint first; some PyPI front ends serve only the per-project one.
  local json
  for api in "https://pypi.org/pypi/$SDIST_PACKAGE/$SDIST_VERSION/json" "https://pypi.org/pypi/$SDIST_PACKAGE/json"; do
    json="$(curl -fsSL --retry 3 --max-time 120 "$api" 2>/dev/null)" || continue
    printf '%s' "$json" | "$PYTHON" -c '
import json, sys
doc, version, digest = json.load(sys.stdin), sys.argv[1], sys.argv[2]
files = doc.get("urls", []) if doc.get("info", {}).get("version") == version else []
files = files or doc.get("releases", {}).get(version, [])
for f in files:
    if f.get("packagetype") == "sdist" and f.get("digests", {}).get("sha256") == digest:
        print(f["url"])
        sys.exit(0)
sys.exit(1)' "$SDIST_VERSION" "$SDIST_SHA256" && return 0
  done
  return 1
}
if [[ ! -f "$TARBALL" ]] || ! echo "$SDIST_SHA256  $TARBALL" | sha256sum -c --status; then
  rm -f "$TARBALL"
  url="$(sdist_url)" || die "PyPI's JSON API lists no sdist of $SDIST_PACKAGE==$SDIST_VERSION with sha256 $SDIST_SHA256 (network? index?)"
  echo "downloading $SDIST_PACKAGE==$SDIST_VERSION (sdist, ~10 MB) from $url…"
  tmp="$(mktemp "$REF/dl/download.XXXXXX")"
  curl -fsSL --retry 3 --max-time 900 -o "$tmp" "$url" || { rm -f "$tmp"; die "download of $url failed"; }
  echo "$SDIST_SHA256  $tmp" | sha256sum -c --status \
    || { rm -f "$tmp"; die "sha256 of the downloaded sdist does not match $SDIST_SHA256"; }
  mv "$tmp" "$TARBALL"
fi

# 2. Unpacked once (into a temp dir first, so a half-unpacked tree is never used).
if [[ ! -f "$SRC/examples/cli/cli.cpp" || ! -f "$SRC/src/whisper.cpp" ]]; then
  echo "unpacking $TARBALL…"
  tmp="$(mktemp -d "$REF/src/unpack.XXXXXX")"
  tar -xzf "$TARBALL" -C "$tmp" "$SDIST_NAME/whisper.cpp" || { rm -rf "$tmp"; die "could not unpack $TARBALL"; }
  [[ -f "$tmp/$SDIST_NAME/whisper.cpp/examples/cli/cli.cpp" ]] \
    || { rm -rf "$tmp"; die "the sdist has no whisper.cpp/examples/cli sources"; }
  rm -rf "$REF/src/$SDIST_NAME"
  mv "$tmp/$SDIST_NAME" "$REF/src/$SDIST_NAME"
  rm -rf "$tmp"
fi

# 3. Versions: the sdist's whisper.cpp and the one vendored by the crate the worker links.
whisper_version() { sed -n 's/^project("whisper.cpp" VERSION \([0-9.]*\)).*/\1/p' "$1/CMakeLists.txt" | head -1; }
ggml_version() {
  sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)).*/\2/p' "$1/ggml/CMakeLists.txt" | paste -sd.
}
crate_version="$(awk -v n="$CRATE" '$0 == "name = \"" n "\"" {getline; gsub(/"/, "", $3); print $3}' "$REPO/Cargo.lock")"
if [[ -z "$crate_version" ]]; then  # not locked yet: the exact pin in a workspace manifest
  crate_version="$(cat "$REPO"/Cargo.toml "$REPO"/crates/*/Cargo.toml 2>/dev/null \
    | sed -n "s/^$CRATE *= *\"=\([0-9.]*\)\".*/\1/p; s/^$CRATE *= *{.*version *= *\"=\([0-9.]*\)\".*/\1/p" | head -1)"
fi
if [[ -z "$crate_version" ]]; then
  crate_desc="$CRATE not found in $REPO/Cargo.lock or crates/*/Cargo.toml (expected 0.15.0, whisper.cpp 1.8.3)"
else
  crate_dir="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$CRATE-$crate_version"/whisper.cpp 2>/dev/null | head -1 || true)"
  if [[ -n "$crate_dir" ]]; then
    crate_desc="$CRATE $crate_version vendored whisper.cpp $(whisper_version "$crate_dir") (ggml $(ggml_version "$crate_dir"))"
  else
    crate_desc="$CRATE $crate_version (source not under ${CARGO_HOME:-$HOME/.cargo}/registry/src; run cargo fetch)"
  fi
fi
ref_desc="whisper.cpp $(whisper_version "$SRC") (ggml $(ggml_version "$SRC")) from PyPI $SDIST_PACKAGE==$SDIST_VERSION"
if [[ "$VENDORED" == 1 ]]; then
  # The crate's library and build files, with the sdist's examples (cli and common).
  [[ -n "${crate_dir:-}" ]] || die "the crate's vendored whisper.cpp is not on disk (run cargo fetch)"
  composed="$REF/src/vendored-with-examples"
  if [[ ! -f "$composed/examples/cli/cli.cpp" ]]; then
    tmp="$(mktemp -d "$REF/src/compose.XXXXXX")"
    cp -r "$crate_dir/." "$tmp/"
    cp -r "$SRC/examples" "$tmp/examples"
    # The examples' quantization helpers name ggml types newer than the vendored ggml;
    # they play no part in transcribing: drop those case labels.
    sed -i '/case GGML_FTYPE_MOSTLY_NVFP4:\|case GGML_FTYPE_MOSTLY_Q1_0:\|case GGML_TYPE_NVFP4:\|case GGML_TYPE_Q1_0:/d' \
      "$tmp/examples/common-ggml.cpp"
    rm -rf "$composed"
    mv "$tmp" "$composed"
  fi
  ref_desc="whisper-cli from $SDIST_PACKAGE==$SDIST_VERSION's examples, linked against $crate_desc"
  SRC="$composed"
fi
echo "appliance whisper.cpp: $crate_desc"
echo "reference whisper.cpp: $ref_desc"

# 4. Build, unless whisper-cli exists and was built from this sdist with these flags.
stamp="sdist-sha256=$SDIST_SHA256 vendored=$VENDORED flags=${CMAKE_FLAGS[*]}"
if [[ "$REBUILD" == 0 && -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$stamp" ]]; then
  echo "whisper-cli already built from this source in $BUILD/bin (--rebuild to redo)"
else
  rm -f "$STAMP"
  echo "building whisper-cli in $BUILD (nice -n 19, -j $JOBS)…"
  t0=$(date +%s)
  nice -n 19 cmake -S "$SRC" -B "$BUILD" "${CMAKE_FLAGS[@]}" > "$REF/cmake-configure.log" 2>&1 \
    || { tail -30 "$REF/cmake-configure.log" >&2; die "CMake configure failed (log: $REF/cmake-configure.log)"; }
  nice -n 19 cmake --build "$BUILD" --target whisper-cli -j "$JOBS" > "$REF/cmake-build.log" 2>&1 \
    || { tail -40 "$REF/cmake-build.log" >&2; die "build failed (log: $REF/cmake-build.log)"; }
  [[ -x "$BIN" ]] || die "the build finished but $BIN is missing"
  printf '%s' "$stamp" > "$STAMP"
  echo "built in $(( $(date +%s) - t0 )) s with -j $JOBS (machine load during the build: $(cut -d' ' -f1-3 /proc/loadavg))"
fi
"$BIN" --help >/dev/null 2>&1 || die "$BIN does not run"

# 5. What bench/speech.py puts in its header.
"$PYTHON" - "$REF/versions.json" "$crate_desc" "$ref_desc" "$BIN" "${CMAKE_FLAGS[*]}" <<'EOF'
import json, sys
path, crate, ref, binary, flags = sys.argv[1:]
json.dump({"appliance_whisper_cpp": crate, "reference_whisper_cpp": ref, "whisper_cli": binary,
           "cmake_flags": flags}, open(path, "w"), indent=2)
EOF
echo "wrote $REF/versions.json"
