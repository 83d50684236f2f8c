#!/usr/bin/env bash
# The GPU check: the daemon on an NVIDIA GPU, measured against llama.cpp's own tools.
# Built in two halves because the GPU machine has no Rust, no network and receives only
# a 64 MiB copy of the tree (see gpu.md in the shared notes):
#
# usage: bench/gpu-check.sh prepare [--arch NN] [--dry-run]      (here)
#        bench/gpu-check.sh run [build|check|all] [--dry-run]     (on the GPU machine)
#
# prepare  builds, with scripts/build-cuda's toolkit, the daemon with llama.cpp as shared
#          libraries (feature llama-shared) and candle on CUDA (embed-cuda), and the CUDA
#          speech worker; copies the llama.cpp source llama-cpp-sys-2 vendors plus
#          llama-bench's source (from bench/build-reference.sh's sdist: the crate does not
#          vendor tools/), and a 3 MB skeleton of the default models (bench/gpu/synth.py);
#          packs it all into bench/work/gpu/carry.tar.xz (git-ignored) and prints its size.
# run      there: unpacks, builds the same llama.cpp as shared libraries with CUDA for one
#          architecture plus llama-bench (`build`), makes random-weight models and runs
#          bench/gpu/check.py (`check`), writing results.json, logs and nvidia-smi output
#          under $OUT/gpu-check. `build` and `check` may run as separate device commands
#          (each under 10 minutes): the build stays in bench/work/gpu while the machine
#          is warm.
#
# With the device tool: prepare here, then
#   run(command="bench/gpu-check.sh run", carry=["bench/work/gpu/carry.tar.xz"], timeout_s=600)
# Environment: GPU_CHECK_FA=ON builds ggml's FlashAttention kernels, for prepare (the
# speech worker) and for run (llama.cpp); off by default: the builds are much shorter,
# and llama-bench and the daemon use the same libraries either way. GPU_CHECK_ARCH
# (default 90) for both.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$REPO/bench/work/gpu"
CARRY="$WORK/carry.tar.xz"
LIMIT_MIB=60   # of the 64 MiB the device tool carries; the tracked tree takes the rest
REF="${APPLIANCE_REFERENCE_DIR:-$HOME/.cache/appliance/reference}"
MODELS="${TEST_MODELS_DIR:-$HOME/.cache/appliance/models}"

die() { echo "gpu-check: ERROR: $*" >&2; exit 1; }
say() { printf '\n==> %s\n' "$*"; }
usage() { sed -n '5,6p' "$0" | sed 's/^# \{0,1\}//'; }

MODE="${1:-}"; shift || true
DRY=0; PHASE=all; ARCH="${GPU_CHECK_ARCH:-90}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1; shift ;;
    --arch) ARCH="${2:?--arch needs a number}"; shift 2 ;;
    build|check|all) PHASE="$1"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

# llama.cpp's source as llama-cpp-sys-2 vendors it, without the backends neither side
# builds (Vulkan shaders, Metal, SYCL, ...: 20 of its 26 MB).
crate_src() {
  local version
  version="$(awk '/^name = "llama-cpp-sys-2"$/ {getline; gsub(/"/, "", $3); print $3}' "$REPO/Cargo.lock")"
  first_dir "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$version"/llama.cpp
}
# The first of its arguments (a glob's matches) that is a directory, or nothing.
first_dir() {
  local d
  for d in "$@"; do [ -d "$d" ] && { echo "$d"; return; }; done
  return 0
}
UNUSED_BACKENDS=(ggml-cann ggml-et ggml-hexagon ggml-metal ggml-musa ggml-opencl ggml-openvino ggml-sycl
                 ggml-virtgpu ggml-vulkan ggml-webgpu ggml-zdnn ggml-zendnn ggml-hip)

prepare() {
  local src bench_src stage
  src="$(crate_src)"
  [ -n "$src" ] || die "llama-cpp-sys-2's source is not in the cargo registry (run cargo fetch)"
  bench_src="$(first_dir "$REF"/src/*/llama.cpp/tools/llama-bench)"
  for f in "$MODELS/SmolLM2-135M-Instruct-Q4_1.gguf" "$MODELS/all-MiniLM-L6-v2/tokenizer.json" \
           "$MODELS/whisper-tiny.en.bin"; do
    [ -f "$f" ] || die "$f missing: scripts/fetch-models (and the tiny.en import that scripts/test does)"
  done
  if [ "$DRY" = 1 ]; then
    echo "would build: scripts/build-cuda --for-gpu-check --arch $ARCH (--no-flash-attn unless GPU_CHECK_FA=ON)"
    echo "llama.cpp source: $src"
    echo "llama-bench source: ${bench_src:-missing: bench/build-reference.sh would fetch it}"
    echo "would pack into: $CARRY (limit $LIMIT_MIB MiB)"
    return
  fi
  if [ -z "$bench_src" ]; then
    say "fetching the reference source for llama-bench (bench/build-reference.sh)"
    "$REPO/bench/build-reference.sh"
    bench_src="$(first_dir "$REF"/src/*/llama.cpp/tools/llama-bench)"
    [ -n "$bench_src" ] || die "bench/build-reference.sh left no tools/llama-bench under $REF/src"
  fi
  say "building the daemon and the speech worker (scripts/build-cuda --for-gpu-check)"
  local fa=(--no-flash-attn)
  [ "${GPU_CHECK_FA:-OFF}" = ON ] && fa=()
  "$REPO/scripts/build-cuda" --for-gpu-check --arch "$ARCH" "${fa[@]}"
  local target="${CUDA_TARGET_DIR:-$HOME/.cache/appliance/target-cuda}/release"

  stage="$WORK/stage"
  rm -rf "$stage" "$CARRY"
  mkdir -p "$stage/bin" "$stage/llama.cpp/tools"
  cp "$target/appliance" "$target/appliance-stt-worker" "$stage/bin/"
  strip --strip-debug "$stage/bin/appliance" "$stage/bin/appliance-stt-worker"
  readelf -d "$stage/bin/appliance" | awk '/NEEDED/ {print $5}' | tr -d '[]' > "$stage/bin/needed.txt"
  say "llama.cpp source from $src"
  local part
  for part in CMakeLists.txt cmake include src common vendor ggml LICENSE; do
    cp -r "$src/$part" "$stage/llama.cpp/"
  done
  for part in "${UNUSED_BACKENDS[@]}"; do
    rm -rf "$stage/llama.cpp/ggml/src/$part"
  done
  cp -r "$bench_src" "$stage/llama.cpp/tools/llama-bench"
  # Only llama-bench of tools/: the crate's copy has no tools/CMakeLists.txt to use.
  printf '\n# Added by bench/gpu-check.sh: the reference llama-bench against this source.\nif (LLAMA_GPU_CHECK_BENCH)\n    add_subdirectory(tools/llama-bench)\nendif()\n' \
    >> "$stage/llama.cpp/CMakeLists.txt"
  say "the models' skeleton (bench/gpu/synth.py extract)"
  python3 "$REPO/bench/gpu/synth.py" extract "$MODELS" "$stage/skeleton"
  git -C "$REPO" rev-parse --short HEAD > "$stage/commit.txt"

  say "packing $CARRY (xz: Python's tarfile unpacks it there without any tool)"
  tar -C "$stage" -cf - . | xz -T2 -9 > "$CARRY"
  rm -rf "$stage"
  local carry_mib tree_mib
  carry_mib=$(( $(stat -c %s "$CARRY") / 1048576 ))
  tree_mib=$(( $(git -C "$REPO" ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s}') / 1048576 ))
  echo "carry: $(du -h "$CARRY" | cut -f1) ($carry_mib MiB); tracked tree: $tree_mib MiB; limit 64 MiB together"
  [ $((carry_mib + tree_mib)) -lt 64 ] || die "over the device tool's 64 MiB"
  echo "next, with the device tool: run(command=\"bench/gpu-check.sh run\", carry=[\"bench/work/gpu/carry.tar.xz\"], timeout_s=600)"
}

# Directories holding the CUDA 13 libraries the binaries link (cuBLAS, cuRAND, NVRTC,
# cudart): the toolkit's, else PyTorch's pip-installed nvidia packages.
cuda_lib_dirs() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libcublas.so.13" ] && printf '%s:' "$d"
  done
  python3 - <<'EOF' 2>/dev/null || true
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = {os.path.dirname(p) for r in roots for p in glob.glob(f"{r}/nvidia/**/libcublas.so.13", recursive=True)}
dirs |= {os.path.dirname(p) for r in roots for p in glob.glob(f"{r}/nvidia/**/libnvrtc.so.13", recursive=True)}
dirs |= {os.path.dirname(p) for r in roots for p in glob.glob(f"{r}/nvidia/**/libcurand.so.10", recursive=True)}
sys.stdout.write("".join(d + ":" for d in sorted(dirs)))
EOF
}

run_there() {
  local out="${OUT:-$WORK/out}/gpu-check" unpacked="$WORK/unpacked" build="$WORK/build"
  local t0=$SECONDS deadline
  deadline=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-570} ))
  if [ "$DRY" = 1 ]; then
    echo "run $PHASE: unpack $CARRY into $unpacked; build llama.cpp (CUDA, sm_$ARCH, FA ${GPU_CHECK_FA:-OFF}) in $build;"
    echo "  synthesise models into $WORK/models; run bench/gpu/check.py; results in $out"
    for tool in nvidia-smi nvcc cmake python3; do
      printf '  %-10s %s\n' "$tool" "$(command -v "$tool" || echo 'MISSING (needed there)')"
    done
    python3 "$REPO/bench/gpu/check.py" --bin . --models . --llama-bench . --out . --dry-run
    return
  fi
  mkdir -p "$out"
  exec > >(tee -a "$out/run.log") 2>&1
  for tool in nvidia-smi nvcc cmake python3; do
    command -v "$tool" >/dev/null || die "'$tool' not found on the GPU machine"
  done
  nvidia-smi > "$out/nvidia-smi-start.txt" 2>&1 || true
  if [ ! -f "$unpacked/commit.txt" ] || [ "$CARRY" -nt "$unpacked/commit.txt" ]; then
    [ -f "$CARRY" ] || die "$CARRY missing: run 'bench/gpu-check.sh prepare' here and carry it"
    say "unpacking $CARRY"
    rm -rf "$unpacked" && mkdir -p "$unpacked"
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$CARRY" "$unpacked"
  fi
  echo "carried build of commit $(cat "$unpacked/commit.txt")"

  if [ "$PHASE" != check ]; then
    say "building llama.cpp with CUDA (sm_$ARCH) and llama-bench"
    local gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    # Same options as llama-cpp-sys-2's shared build here, plus CUDA: the daemon's
    # binary then finds the same library interface.
    cmake -S "$unpacked/llama.cpp" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
      -DGGML_CUDA_FA="${GPU_CHECK_FA:-OFF}" -DGGML_CUDA_NCCL=OFF -DGGML_OPENMP=ON -DLLAMA_CURL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
      -DLLAMA_GPU_CHECK_BENCH=ON > "$out/cmake-configure.log" 2>&1 \
      || { tail -40 "$out/cmake-configure.log"; die "cmake configure failed"; }
    cmake --build "$build" -j "$(nproc)" --target llama llama-bench > "$out/cmake-build.log" 2>&1 \
      || { tail -60 "$out/cmake-build.log"; die "llama.cpp build failed"; }
    echo "llama.cpp built in $((SECONDS - t0)) s"
    find "$build/bin" -maxdepth 1 -printf '%10s %f\n' | sort -k2 | tee "$out/llama-libs.txt"
  fi
  [ "$PHASE" = build ] && return

  [ -x "$build/bin/llama-bench" ] || die "no llama.cpp build in $build: run 'bench/gpu-check.sh run build' first"
  say "random-weight models (bench/gpu/synth.py make)"
  if [ ! -f "$WORK/models/.done" ]; then
    python3 "$REPO/bench/gpu/synth.py" make "$unpacked/skeleton" "$WORK/models" | tee "$out/models.json"
    touch "$WORK/models/.done"
  fi
  local libs
  libs="$(cuda_lib_dirs)"
  export LD_LIBRARY_PATH="$build/bin:$libs${LD_LIBRARY_PATH:-}"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  local missing
  missing="$(ldd "$unpacked/bin/appliance" "$unpacked/bin/appliance-stt-worker" | grep 'not found' || true)"
  [ -z "$missing" ] || { ldd "$unpacked/bin/appliance"; die "libraries not found: $missing"; }
  say "checks (bench/gpu/check.py)"
  python3 "$REPO/bench/gpu/check.py" --bin "$unpacked/bin" --models "$WORK/models" \
    --llama-bench "$build/bin/llama-bench" --out "$out" --deadline "$deadline"
  nvidia-smi > "$out/nvidia-smi-end.txt" 2>&1 || true
  echo "done in $((SECONDS - t0)) s; results in $out/results.json"
}

case "$MODE" in
  prepare) prepare ;;
  run) run_there ;;
  *) usage >&2; exit 2 ;;
esac
