#!/usr/bin/env bash
# Install, upgrade, remove and purge of the .deb in a fresh Debian 12 root made by
# debootstrap (cached), plus the .rpm's file list and scriptlets. Needs root (chroot,
# mounts) and the network (apt resolves the package's dependencies from Debian's
# mirror). Run by scripts/test-package, which builds the packages:
#
#   tests/package/deb-install.sh OLD.deb NEW.deb PACKAGE.rpm
#
# NEW.deb is a newer build: this tree, with OLD.deb an older revision (a schema migration
# in between), or the same tree under a higher version. systemd cannot be PID 1 in a
# chroot, so the service is checked as far as that allows: enabled (the symlink),
# `systemd-analyze verify` on the installed unit, and the daemon run directly as the
# appliance user the way the unit runs it (its sd_notify messages caught on a socket).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/bookworm-root.sh"

if [ "$#" -ne 3 ]; then
  echo "usage: $0 OLD.deb NEW.deb PACKAGE.rpm" >&2
  exit 2
fi
OLD_DEB="$(realpath "$1")"
NEW_DEB="$(realpath "$2")"
RPM="$(realpath "$3")"
if [ "$(id -u)" != 0 ]; then
  echo "error: $0 needs root (debootstrap root, chroot, mounts)" >&2
  exit 1
fi

RESULTS=()
pass() { RESULTS+=("PASS  $*"); echo "  ok: $*"; }
skip() { RESULTS+=("SKIP  $*"); echo "  skipped: $*"; }
fail() {
  echo "FAIL: $*" >&2
  summary
  exit 1
}
summary() {
  echo
  echo "==> package test summary"
  printf '%s\n' "${RESULTS[@]}"
}

ROOT="$(mktemp -d /var/tmp/appliance-pkgtest.XXXXXX)"
DAEMON_PID=""
NOTIFY_PID=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null || true
  [ -n "$NOTIFY_PID" ] && kill "$NOTIFY_PID" 2>/dev/null || true
  for m in run sys proc; do
    mountpoint -q "$ROOT/$m" && umount -l "$ROOT/$m"
  done
  rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT

in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
# As the service's user, with its supplementary groups, the way systemd's User= does.
as_appliance() {
  in_root setpriv --reuid=appliance --regid=appliance --init-groups --reset-env "$@"
}
apt_in_root() {
  in_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 "$@"
}
# The database's schema version as `appliance doctor` reports it ("schema v10", or
# "schema version 9 (this build: 10)" before a migration).
# The schema version doctor reports (empty when it names none). doctor exits non-zero
# on any warning (6) or failure, which is not this function's business.
schema_version() {
  { as_appliance appliance --system doctor 2>&1 || true; } |
    { grep -oE 'schema (v|version )[0-9]+' || true; } | head -n 1 | grep -oE '[0-9]+$' || true
}
# The default config.toml a package ships.
shipped_config() { dpkg-deb --fsys-tarfile "$1" | tar -xOf - ./etc/appliance/config.toml; }

echo "==> fresh Debian bookworm root in $ROOT"
bookworm_root "$ROOT"
mount -t proc proc "$ROOT/proc"
mount -t sysfs -o ro sysfs "$ROOT/sys"
mount -t tmpfs -o mode=0755 tmpfs "$ROOT/run"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp "$OLD_DEB" "$NEW_DEB" "$ROOT/tmp/"
OLD_IN_ROOT="/tmp/$(basename "$OLD_DEB")"
NEW_IN_ROOT="/tmp/$(basename "$NEW_DEB")"
apt_in_root update >/dev/null

# Waits up to 5 s for the line $1 in the file $2 (the notify listener may lag behind
# what the daemon already did).
wait_for_line() {
  for _ in $(seq 50); do
    grep -qx "$1" "$2" && return 0
    sleep 0.1
  done
  return 1
}

# The daemon as systemd would start it, for a few seconds: RuntimeDirectory= made by
# hand, NOTIFY_SOCKET caught by a small listener on the host. $1: a label.
serve_and_probe() {
  local label="$1" port notify_log
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  install -d -o "$(in_root id -u appliance)" -g "$(in_root id -g appliance)" -m 0755 "$ROOT/run/appliance"
  notify_log="$(mktemp)"
  rm -f "$ROOT/run/notify.sock"
  python3 - "$ROOT/run/notify.sock" "$notify_log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        out.write(s.recv(4096).decode() + "\n")
PY
  NOTIFY_PID=$!
  for _ in $(seq 50); do [ -S "$ROOT/run/notify.sock" ] && break; sleep 0.1; done
  chroot "$ROOT" setpriv --reuid=appliance --regid=appliance --init-groups --reset-env \
    env NOTIFY_SOCKET=/run/notify.sock WATCHDOG_USEC=2000000 \
    /usr/bin/appliance --system --port "$port" serve >"$ROOT/tmp/serve.log" 2>&1 &
  DAEMON_PID=$!
  local healthy=0
  for _ in $(seq 100); do
    if in_root curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then healthy=1; break; fi
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.2
  done
  if [ "$healthy" != 1 ]; then
    cat "$ROOT/tmp/serve.log" >&2
    fail "$label: the daemon did not answer /healthz on port $port"
  fi
  pass "$label: the daemon runs as user appliance (setpriv, as User= would) and answers /healthz"
  wait_for_line READY=1 "$notify_log" || fail "$label: no READY=1 on NOTIFY_SOCKET (got: $(tr '\n' ' ' <"$notify_log"))"
  pass "$label: sd_notify READY=1 received on NOTIFY_SOCKET"
  sleep 2.5
  if grep -qx 'WATCHDOG=1' "$notify_log"; then
    pass "$label: WATCHDOG=1 pings with WATCHDOG_USEC=2s"
  else
    skip "$label: no WATCHDOG=1 within 2.5 s of WATCHDOG_USEC=2s (this build of the daemon does not ping the watchdog yet)"
  fi
  kill -TERM "$DAEMON_PID"
  local code=0
  wait "$DAEMON_PID" || code=$?
  DAEMON_PID=""
  [ "$code" = 0 ] || { cat "$ROOT/tmp/serve.log" >&2; fail "$label: the daemon exited with $code after SIGTERM"; }
  wait_for_line STOPPING=1 "$notify_log" || fail "$label: no STOPPING=1 on NOTIFY_SOCKET"
  pass "$label: SIGTERM: STOPPING=1, clean exit 0"
  kill "$NOTIFY_PID" 2>/dev/null || true
  wait "$NOTIFY_PID" 2>/dev/null || true
  NOTIFY_PID=""
  rm -f "$notify_log" "$ROOT/run/notify.sock"
}

# ---------------------------------------------------------------- install
echo "==> install $(basename "$OLD_DEB") with apt (dependencies from the mirror)"
apt_in_root install "$OLD_IN_ROOT" >"$ROOT/tmp/install.log" 2>&1 || { cat "$ROOT/tmp/install.log" >&2; fail "apt-get install of the .deb"; }
pass "install: apt-get install resolves the dependencies and the maintainer scripts succeed"

for f in /usr/bin/appliance /usr/bin/appliance-stt-worker \
  /usr/lib/systemd/system/appliance.service /usr/lib/sysusers.d/appliance.conf \
  /usr/lib/tmpfiles.d/appliance.conf /etc/appliance/config.toml \
  /usr/share/man/man1/appliance.1.gz /usr/share/man/man1/appliance-serve.1.gz \
  /usr/share/bash-completion/completions/appliance /usr/share/zsh/vendor-completions/_appliance \
  /usr/share/fish/vendor_completions.d/appliance.fish \
  /usr/share/appliance/grafana/appliance-dashboard.json \
  /usr/share/appliance/prometheus/appliance-alerts.yml; do
  [ -f "$ROOT$f" ] || fail "install: $f is missing"
done
pass "install: binaries, unit, sysusers.d, tmpfiles.d, config, man pages, completions, dashboard and alert rules in place"

in_root dpkg-query -W -f='${Conffiles}\n' appliance | grep -q '^ /etc/appliance/config.toml ' ||
  fail "install: /etc/appliance/config.toml is not a conffile"
in_root appliance config default | cmp -s - "$ROOT/etc/appliance/config.toml" ||
  fail "install: /etc/appliance/config.toml differs from \`appliance config default\`"
pass "install: /etc/appliance/config.toml is a conffile equal to \`appliance config default\`"

passwd_line="$(in_root getent passwd appliance)" || fail "install: no user appliance"
case "$passwd_line" in
  appliance:x:*:*:*:/var/lib/appliance:/usr/sbin/nologin) ;;
  *) fail "install: unexpected passwd entry: $passwd_line" ;;
esac
uid="$(in_root id -u appliance)"
[ "$uid" -lt 1000 ] || fail "install: appliance is not a system user (uid $uid)"
groups="$(in_root id -nG appliance)"
for g in video render; do
  if in_root getent group "$g" >/dev/null; then
    case " $groups " in *" $g "*) ;; *) fail "install: appliance is not in group $g (groups: $groups)" ;; esac
  fi
done
pass "install: system user appliance (uid $uid, home /var/lib/appliance, nologin), groups: $groups"

check_dir() { # path owner:group mode
  local got
  got="$(in_root stat -c '%U:%G %a' "$1" 2>/dev/null)" || fail "install: $1 does not exist"
  [ "$got" = "$2 $3" ] || fail "install: $1 is $got, expected $2 $3"
}
check_dir /var/lib/appliance appliance:appliance 750
check_dir /var/lib/appliance/models appliance:appliance 750
check_dir /var/lib/appliance/backups appliance:appliance 750
check_dir /var/log/appliance appliance:appliance 750
check_dir /etc/appliance root:appliance 750
pass "install: directories made by tmpfiles.d with their owners and modes (/etc/appliance root:appliance 0750)"

[ "$(in_root systemctl is-enabled appliance.service 2>&1)" = enabled ] ||
  fail "install: appliance.service is not enabled ($(in_root systemctl is-enabled appliance.service 2>&1))"
[ -L "$ROOT/etc/systemd/system/multi-user.target.wants/appliance.service" ] ||
  fail "install: no multi-user.target.wants symlink"
pass "install: appliance.service enabled (multi-user.target.wants), not started (no systemd in a chroot; start=false)"

# The unit as installed, with the real binary in place. man-db is not in the root, so
# the Documentation= man page is checked as a file above instead.
verify_out="$(in_root systemd-analyze verify --man=no /usr/lib/systemd/system/appliance.service 2>&1)" ||
  fail "install: systemd-analyze verify: $verify_out"
[ -z "$verify_out" ] || fail "install: systemd-analyze verify printed: $verify_out"
pass "install: systemd-analyze verify of the installed unit is clean"

version_out="$(as_appliance appliance version)" || fail "install: appliance version failed"
pass "install: \`appliance version\` as user appliance: $version_out"

doctor_code=0
doctor_out="$(as_appliance appliance --system doctor 2>&1)" || doctor_code=$?
case "$doctor_code" in
  0 | 6) ;;
  *) echo "$doctor_out" >&2; fail "install: appliance --system doctor exited with $doctor_code" ;;
esac
pass "install: \`appliance --system doctor\` ran (exit $doctor_code: $(echo "$doctor_out" | grep -ciE 'warn|fail') warning/failure lines, e.g. no models or GPU in the test root)"

serve_and_probe install
# Data to find again after the upgrade.
as_appliance appliance --system users add pkgtest-user >/dev/null ||
  fail "install: appliance users add failed"
echo "# kept across upgrades (local edit by the package test)" >>"$ROOT/etc/appliance/config.toml"
pass "install: made data (user pkgtest-user) and edited the conffile"

# ---------------------------------------------------------------- upgrade
old_version="$(in_root dpkg-query -W -f='${Version}' appliance)"
old_schema="$(schema_version)"
[ -n "$old_schema" ] || fail "install: appliance doctor reports no schema version"

# The preinst's contract, checked with a stand-in for the OLD binary (a shell wrapper
# around the real one that answers `backup`): a failing backup stops the upgrade and
# leaves the old version installed; a working one is run as user appliance and writes
# /var/lib/appliance/backups/pre-upgrade-OLDVERSION-TIMESTAMP.tar.zst.
real_backup=0
as_appliance appliance backup --help >/dev/null 2>&1 && real_backup=1
mv "$ROOT/usr/bin/appliance" "$ROOT/usr/bin/appliance.real"
cat >"$ROOT/usr/bin/appliance" <<'STANDIN'
#!/bin/sh
# Stand-in for an old version with `backup` (tests/package/deb-install.sh).
if [ "$1" = backup ] && [ "$2" = --help ]; then exit 0; fi
if [ "$1 $2 $3" = "--system backup create" ]; then
  if [ -e /tmp/backup-fails ]; then echo "error: no space left on device (simulated)" >&2; exit 1; fi
  shift 3
  [ "$1" = --to ] || exit 2
  echo "stand-in backup by $(id -un)" >"$2"
  exit 0
fi
exec /usr/bin/appliance.real "$@"
STANDIN
chmod 0755 "$ROOT/usr/bin/appliance"
touch "$ROOT/tmp/backup-fails"
echo "==> upgrade with a failing pre-upgrade backup (must stop)"
if apt_in_root install "$NEW_IN_ROOT" >"$ROOT/tmp/upgrade-fail.log" 2>&1; then
  cat "$ROOT/tmp/upgrade-fail.log" >&2
  fail "upgrade: went on although the pre-upgrade backup failed"
fi
grep -q "the pre-upgrade backup failed" "$ROOT/tmp/upgrade-fail.log" || { cat "$ROOT/tmp/upgrade-fail.log" >&2; fail "upgrade: no clear message for the failed backup"; }
[ "$(in_root dpkg-query -W -f='${Version} ${Status}' appliance)" = "$old_version install ok installed" ] ||
  fail "upgrade: after the failed backup dpkg says: $(in_root dpkg-query -W -f='${Version} ${Status}' appliance)"
[ -x "$ROOT/usr/bin/appliance.real" ] && as_appliance appliance version >/dev/null || fail "upgrade: the old binary is not intact"
pass "upgrade: a failing pre-upgrade backup stops the upgrade with its reason; $old_version stays installed and configured"
rm -f "$ROOT/tmp/backup-fails"
if [ "$real_backup" = 1 ]; then
  mv "$ROOT/usr/bin/appliance.real" "$ROOT/usr/bin/appliance"
fi

echo "==> upgrade $old_version -> $(basename "$NEW_DEB")"
# As unattended upgrades do: a conffile edited here and changed upstream keeps the
# local version (the new default lands beside it as .dpkg-dist) instead of a prompt.
apt_in_root -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install "$NEW_IN_ROOT" \
  >"$ROOT/tmp/upgrade.log" 2>&1 || { cat "$ROOT/tmp/upgrade.log" >&2; fail "upgrade: apt-get install of the newer .deb"; }
rm -f "$ROOT/usr/bin/appliance.real"
new_version="$(in_root dpkg-query -W -f='${Version}' appliance)"
[ "$new_version" != "$old_version" ] || fail "upgrade: the version did not change ($new_version)"
cmp -s "$ROOT/usr/bin/appliance" <(dpkg-deb --fsys-tarfile "$NEW_DEB" | tar -xOf - ./usr/bin/appliance) ||
  fail "upgrade: /usr/bin/appliance is not the new package's"
pass "upgrade: $old_version -> $new_version"

# The preinst puts the version in the file name with anything outside [A-Za-z0-9.+-]
# (the "~" of a snapshot version) as "_".
safe_old_version="$(printf '%s' "$old_version" | tr -c 'A-Za-z0-9.+-' '_')"
backup="$(ls "$ROOT"/var/lib/appliance/backups/pre-upgrade-*.tar.zst 2>/dev/null | head -n 1)"
[ -n "$backup" ] || { cat "$ROOT/tmp/upgrade.log" >&2; fail "upgrade: no /var/lib/appliance/backups/pre-upgrade-*.tar.zst"; }
case "$(basename "$backup")" in
  "pre-upgrade-$safe_old_version-"20[0-9][0-9][01][0-9][0-3][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z.tar.zst) ;;
  *) fail "upgrade: unexpected backup name $(basename "$backup")" ;;
esac
[ "$(in_root stat -c %U "${backup#"$ROOT"}")" = appliance ] || fail "upgrade: the backup is not owned by appliance"
if [ "$real_backup" = 1 ]; then
  pass "upgrade: automatic pre-upgrade backup by the old version: ${backup#"$ROOT"}"
else
  grep -qx "stand-in backup by appliance" "$backup" || fail "upgrade: the stand-in backup did not run as appliance"
  pass "upgrade: automatic pre-upgrade backup, run as user appliance: ${backup#"$ROOT"} (made by the stand-in)"
  skip "upgrade: a real \`appliance backup\` archive (this build has no backup command yet; the stand-in proved the preinst's side)"
  backup=""
fi

as_appliance appliance --system users list 2>/dev/null | grep -q pkgtest-user || fail "upgrade: the user made before the upgrade is gone"
grep -q "local edit by the package test" "$ROOT/etc/appliance/config.toml" || fail "upgrade: the local conffile edit was lost"
if cmp -s <(shipped_config "$OLD_DEB") <(shipped_config "$NEW_DEB"); then
  [ ! -e "$ROOT/etc/appliance/config.toml.dpkg-dist" ] || fail "upgrade: a .dpkg-dist appeared although the shipped config did not change"
  conffile_note="unchanged upstream"
else
  cmp -s "$ROOT/etc/appliance/config.toml.dpkg-dist" <(shipped_config "$NEW_DEB") ||
    fail "upgrade: the shipped config changed but its new version is not beside the edited one as config.toml.dpkg-dist"
  conffile_note="changed upstream: the new default is config.toml.dpkg-dist, and the daemon runs on the edited old file"
fi
[ "$(in_root systemctl is-enabled appliance.service 2>&1)" = enabled ] || fail "upgrade: the service is no longer enabled"
pass "upgrade: data kept (user pkgtest-user), local conffile edit kept ($conffile_note), service still enabled"
serve_and_probe upgrade
new_schema="$(schema_version)"
if [ "$new_schema" -gt "$old_schema" ]; then
  pass "upgrade: the database migrated from schema v$old_schema to v$new_schema when the new daemon started"
elif [ "$new_schema" = "$old_schema" ]; then
  skip "upgrade: no schema migration between these two builds (both at v$old_schema; scripts/test-package --same-tree?)"
else
  fail "upgrade: the schema went from v$old_schema to v$new_schema"
fi
# Made after the pre-upgrade backup: a rollback to that backup must not have it.
as_appliance appliance --system users add after-upgrade-user >/dev/null ||
  fail "upgrade: appliance users add failed"

# ---------------------------------------------------------------- rollback
# Rollback: the old package again, then `appliance restore` of its pre-upgrade backup,
# as root (restore stages a directory beside /var/lib/appliance, and /var/lib is
# root's); every file must end up owned by appliance. Skipped, with the reason, for a
# build without `appliance restore`.
if [ -n "$backup" ] && in_root appliance restore --help >/dev/null 2>&1; then
  echo "==> rollback: the old package, then restore of the pre-upgrade backup"
  # The edited conffile again differs from both packages' versions: kept, as above.
  apt_in_root -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    install --allow-downgrades "$OLD_IN_ROOT" >"$ROOT/tmp/rollback.log" 2>&1 ||
    { cat "$ROOT/tmp/rollback.log" >&2; fail "rollback: reinstalling $old_version"; }
  [ "$(in_root dpkg-query -W -f='${Version}' appliance)" = "$old_version" ] || fail "rollback: not back at $old_version"
  if [ "$new_schema" -gt "$old_schema" ]; then
    # The old build refuses the migrated database rather than guess at it.
    refused="$(as_appliance appliance --system doctor 2>&1)" && fail "rollback: the old build's doctor accepted schema v$new_schema"
    grep -q "newer than this build" <<<"$refused" ||
      { echo "$refused" >&2; fail "rollback: the old build does not say the database is newer than it"; }
    pass "rollback: the old build refuses the v$new_schema database (\"newer than this build\") until it is restored"
  fi
  in_root appliance --system restore "${backup#"$ROOT"}" ||
    fail "rollback: appliance --system restore ${backup#"$ROOT"}"
  not_ours="$(in_root find /var/lib/appliance ! -user appliance | head -n 5)"
  [ -z "$not_ours" ] || fail "rollback: files not owned by appliance after restore: $not_ours"
  users_after="$(as_appliance appliance --system users list 2>/dev/null)"
  grep -q pkgtest-user <<<"$users_after" || fail "rollback: data from before the upgrade missing after restore"
  ! grep -q after-upgrade-user <<<"$users_after" || fail "rollback: data made after the backup survived the restore"
  [ "$(schema_version)" = "$old_schema" ] || fail "rollback: the restored database is at schema v$(schema_version), not v$old_schema"
  pass "rollback: $old_version reinstalled and its pre-upgrade backup restored (schema v$old_schema again, data from before the upgrade back, data from after it gone, files owned by appliance)"
  serve_and_probe rollback
else
  skip "rollback: needs a pre-upgrade backup and \`appliance restore\` (not in this build yet)"
fi

# ---------------------------------------------------------------- remove
echo "==> remove (data kept)"
apt_in_root remove appliance >"$ROOT/tmp/remove.log" 2>&1 || { cat "$ROOT/tmp/remove.log" >&2; fail "remove"; }
[ ! -e "$ROOT/usr/bin/appliance" ] || fail "remove: /usr/bin/appliance still there"
[ ! -e "$ROOT/usr/lib/systemd/system/appliance.service" ] || fail "remove: the unit is still there"
[ -f "$ROOT/var/lib/appliance/appliance.db" ] || fail "remove: the database was deleted"
[ -f "$ROOT/etc/appliance/config.toml" ] || fail "remove: the configuration was deleted"
in_root getent passwd appliance >/dev/null || fail "remove: the user was deleted"
pass "remove: program and unit gone; database, config, logs dir and user kept"

# ---------------------------------------------------------------- purge
echo "==> purge"
in_root dpkg --purge appliance >"$ROOT/tmp/purge.log" 2>&1 || { cat "$ROOT/tmp/purge.log" >&2; fail "purge"; }
for d in /var/lib/appliance /var/log/appliance /etc/appliance; do
  [ ! -e "$ROOT$d" ] || fail "purge: $d is left"
done
! in_root getent passwd appliance >/dev/null || fail "purge: the user appliance is left"
! in_root getent group appliance >/dev/null || fail "purge: the group appliance is left"
[ -z "$(in_root dpkg-query -W -f='${Status}' appliance 2>/dev/null | grep -v not-installed)" ] ||
  fail "purge: dpkg still knows the package"
# debhelper's convention: the enable symlink outlives `remove` (a reinstall stays
# enabled) and goes with purge, as does the mask `remove` set.
[ -z "$(find "$ROOT/etc/systemd" -name 'appliance.service*' 2>/dev/null)" ] ||
  fail "purge: systemd links left: $(find "$ROOT/etc/systemd" -name 'appliance.service*')"
pass "purge: data, logs, configuration, user, group and the unit's enable links gone"

# ---------------------------------------------------------------- rpm
echo "==> rpm: file list and scriptlets of $(basename "$RPM")"
command -v rpm >/dev/null || { echo "==> installing rpm"; apt-get install -y -qq rpm >/dev/null; }
deb_files="$(dpkg-deb -c "$NEW_DEB" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|' |
  grep -v '^/usr/share/doc/' | sed 's|/zsh/vendor-completions/|/zsh/site-functions/|' | sort)"
rpm_files="$(rpm -qlp "$RPM" 2>/dev/null | sort)"
if [ "$deb_files" != "$rpm_files" ]; then
  diff <(echo "$deb_files") <(echo "$rpm_files") >&2 || true
  fail "rpm: its files differ from the .deb's (< deb, > rpm)"
fi
pass "rpm: the same $(echo "$rpm_files" | wc -l) files as the .deb (zsh completions in site-functions; no /usr/share/doc)"
rpm -qp --configfiles "$RPM" 2>/dev/null | grep -qx /etc/appliance/config.toml || fail "rpm: config.toml is not %config"
scripts="$(rpm -qp --scripts "$RPM" 2>/dev/null)"
for want in "preinstall scriptlet" "pre_upgrade_backup" "postinstall scriptlet" "systemd-sysusers appliance.conf" \
  "systemd-tmpfiles --create appliance.conf" "enable appliance.service" "preuninstall scriptlet" \
  "disable --now appliance.service" "postuninstall scriptlet" "try-restart appliance.service"; do
  grep -qF "$want" <<<"$scripts" || fail "rpm: the scriptlets lack \`$want\`"
done
pass "rpm: %config(noreplace) config; %pre backup, %post user+dirs+enable, %preun disable, %postun try-restart"
requires="$(rpm -qp --requires "$RPM" 2>/dev/null)"
grep -qx systemd <<<"$requires" || fail "rpm: does not require systemd"
grep -q '^libc.so.6' <<<"$requires" || fail "rpm: no automatic library requirements"
pass "rpm: requires systemd and the libraries found automatically ($(grep -c '\.so' <<<"$requires") library requirements, versioned: glibc $(grep -o 'GLIBC_[0-9.]*' <<<"$requires" | sort -uV | tail -n 1))"

summary
