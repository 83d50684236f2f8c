"""The systemd unit (systemd/appliance.service) as systemd itself judges it:
`systemd-analyze verify` is clean and `systemd-analyze security --offline=true` rates
its exposure at most 2.0, with the settings the daemon relies on still in place.

Cheap (no build, no root): it runs in scripts/test. The package test
(tests/package/deb-install.sh) verifies the unit again as installed from the .deb."""

import pathlib
import re
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "appliance.service"
MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    # scripts/test installs systemd (APT_PACKAGES); a machine without it fails loudly.
    assert path, "systemd-analyze missing: apt-get install systemd"
    return path


def settings() -> dict[str, list[str]]:
    """Every `Key=value` of the unit, values in order (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_verify_is_clean(tmp_path: pathlib.Path) -> None:
    # A root holding the host's units (for the targets it names), the unit where the
    # package installs it, and stand-ins for the executables it runs: verify checks
    # that each exists and is executable, and /usr/bin/appliance is not installed here.
    system = tmp_path / "usr/lib/systemd/system"
    shutil.copytree("/usr/lib/systemd/system", system, symlinks=True)
    shutil.copy(UNIT, system / "appliance.service")
    (tmp_path / "usr/bin").mkdir(parents=True)
    for exe in ("appliance", "kill"):
        stub = tmp_path / "usr/bin" / exe
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    (tmp_path / "bin").symlink_to("usr/bin")
    # --man=no: man pages are generated at package time (scripts/package).
    run = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", f"--root={tmp_path}", "appliance.service"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and not run.stdout.strip() and not run.stderr.strip(), (
        f"systemd-analyze verify:\n{run.stdout}{run.stderr}"
    )


def test_security_exposure_is_at_most_2() -> None:
    run = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for appliance\.service: (\d+\.\d+)", run.stdout)
    assert found, f"no exposure level in:\n{run.stdout}{run.stderr}"
    exposure = float(found.group(1))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{run.stdout}"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("User", "appliance"),
        ("StateDirectory", "appliance"),
        ("LogsDirectory", "appliance"),
        ("RuntimeDirectory", "appliance"),
        ("Restart", "on-failure"),
        # The GPU: device nodes allowed, never hidden.
        ("DeviceAllow", "char-nvidiactl rw"),
        ("DeviceAllow", "char-nvidia-frontend rw"),
        ("DeviceAllow", "char-nvidia-uvm rw"),
    ],
)
def test_the_daemon_gets_what_it_needs(key: str, value: str) -> None:
    assert value in settings().get(key, []), f"{key}={value} missing from {UNIT}"


def test_nothing_breaks_the_gpu_or_the_watchdog() -> None:
    s = settings()
    # PrivateDevices hides /dev/nvidia*; CUDA's JIT needs writable+executable memory.
    assert s.get("PrivateDevices", ["no"]) == ["no"]
    assert s.get("MemoryDenyWriteExecute", ["no"]) == ["no"]
    assert "AF_INET" in s["RestrictAddressFamilies"][0] and "AF_UNIX" in s["RestrictAddressFamilies"][0]
    assert s["WatchdogSec"], "WatchdogSec= missing (the daemon pings at half of it)"
    assert s["StartLimitIntervalSec"] and s["StartLimitBurst"]


def test_stop_timeout_covers_the_graceful_drain() -> None:
    # server.shutdown_grace_secs (default 10) + the engine's workers (10) + writes left
    # by requests (10) + closing (1): the bounded steps of the stop path in serve.rs.
    default = (REPO / "src/config/default.toml").read_text()
    grace = int(re.search(r"^shutdown_grace_secs = (\d+)", default, re.M).group(1))
    stop = settings()["TimeoutStopSec"][0]
    assert stop.endswith("s")
    assert int(stop[:-1]) >= grace + 10 + 10 + 1, f"TimeoutStopSec={stop} < the stop path's {grace + 21} s"
