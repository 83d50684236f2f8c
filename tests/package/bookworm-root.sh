# shellcheck shell=bash
# A fresh Debian 12 (bookworm) root filesystem for the package tests. Sourced, not
# executed. debootstrap takes minutes and the network, so its result is cached as a
# tarball under ~/.cache/appliance/; later runs unpack it in seconds.

# What the tests need inside the root besides minbase: systemd (systemctl,
# systemd-sysusers, systemd-tmpfiles, systemd-analyze), curl (for /healthz).
ROOT_PACKAGES="systemd,curl"
ROOT_SUITE=bookworm
ROOT_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOT_CACHE_DIR="${ROOT_CACHE_DIR:-$HOME/.cache/appliance/debootstrap}"
# The cache key changes when the package list does, so a stale tarball is never reused.
ROOT_TARBALL="$ROOT_CACHE_DIR/$ROOT_SUITE-minbase-${ROOT_PACKAGES//,/-}.tar.zst"

# Makes (or refreshes) the cached tarball.
bookworm_tarball() {
  if [ -s "$ROOT_TARBALL" ]; then
    return
  fi
  command -v debootstrap >/dev/null || {
    echo "==> installing debootstrap"
    apt-get install -y -qq debootstrap >/dev/null
  }
  mkdir -p "$ROOT_CACHE_DIR"
  local build
  build="$(mktemp -d "$ROOT_CACHE_DIR/build.XXXXXX")"
  echo "==> debootstrap $ROOT_SUITE (minbase + $ROOT_PACKAGES) from $ROOT_MIRROR; cached at $ROOT_TARBALL"
  debootstrap --variant=minbase --include="$ROOT_PACKAGES" "$ROOT_SUITE" "$build" "$ROOT_MIRROR" \
    >"$ROOT_CACHE_DIR/debootstrap.log" 2>&1 || {
    echo "error: debootstrap failed; the last lines of $ROOT_CACHE_DIR/debootstrap.log:" >&2
    tail -20 "$ROOT_CACHE_DIR/debootstrap.log" >&2
    rm -rf "$build"
    return 1
  }
  rm -rf "$build/var/cache/apt/archives/"*.deb
  chmod 0755 "$build"
  tar -C "$build" --numeric-owner -cf - . | zstd -q -T0 -o "$ROOT_TARBALL.tmp"
  mv "$ROOT_TARBALL.tmp" "$ROOT_TARBALL"
  rm -rf "$build"
}

# Unpacks a fresh root into $1 (an empty directory).
bookworm_root() {
  bookworm_tarball
  zstd -q -dc "$ROOT_TARBALL" | tar -C "$1" --numeric-owner -xf -
  # The tarball's "." came from a mktemp directory (0700); as / it must be 0755, or
  # no user but root can reach a thing in it.
  chmod 0755 "$1"
}
