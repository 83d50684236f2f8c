"""Static checks of the package definitions (Cargo.toml metadata, packaging/), cheap
enough for scripts/test. The packages themselves are built and installed by
scripts/test-package (root, minutes)."""

import pathlib
import re
import subprocess
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[2]
CARGO = tomllib.loads((REPO / "Cargo.toml").read_text())
DEB = CARGO["package"]["metadata"]["deb"]
RPM = CARGO["package"]["metadata"]["generate-rpm"]


def test_the_debian_changelog_names_this_version() -> None:
    first = (REPO / DEB["changelog"]).read_text().splitlines()[0]
    found = re.match(r"appliance \(([^)]+)\) ", first)
    assert found, f"not a Debian changelog entry: {first}"
    assert found.group(1).split("-")[0] == CARGO["package"]["version"], (
        f"packaging/debian/changelog is at {found.group(1)}, Cargo.toml at "
        f"{CARGO['package']['version']}: add an entry for the new version"
    )


def test_maintainer_scripts_parse_as_posix_sh() -> None:
    scripts = sorted((REPO / "packaging/debian").glob("p*")) + sorted((REPO / "packaging/rpm").glob("*.sh"))
    assert len(scripts) >= 6
    for script in scripts:
        # dash is Debian's /bin/sh, the stricter of the two formats' shells.
        run = subprocess.run(["dash", "-n", str(script)], capture_output=True, text=True)
        assert run.returncode == 0, f"{script}: {run.stderr}"


def test_deb_and_rpm_install_the_same_files() -> None:
    deb = {dest if not dest.endswith("/") else dest + pathlib.Path(src).name for src, dest, _ in DEB["assets"]}
    deb = {"/" + d.replace("/zsh/vendor-completions/", "/zsh/site-functions/") for d in deb}
    # cargo-deb installs the unit itself (systemd-units); the rpm lists it.
    deb.add("/usr/lib/systemd/system/appliance.service")
    rpm = {
        a["dest"] if not a["dest"].endswith("/") else a["dest"] + pathlib.Path(a["source"]).name
        for a in RPM["assets"]
    }
    assert deb == rpm, f"only in the .deb: {deb - rpm}; only in the .rpm: {rpm - deb}"
    config = [a for a in RPM["assets"] if a["dest"] == "/etc/appliance/config.toml"]
    assert config and config[0].get("config") == "noreplace"
    assert DEB["conf-files"] == ["/etc/appliance/config.toml"]


def test_the_service_user_may_open_the_gpu() -> None:
    lines = [line.split() for line in (REPO / "packaging/appliance.sysusers").read_text().splitlines()
             if line and not line.startswith("#")]
    assert ["m", "appliance", "video"] in lines and ["m", "appliance", "render"] in lines
    assert any(line[:2] == ["u", "appliance"] and "/var/lib/appliance" in line for line in lines)


def test_the_preinst_serves_both_formats() -> None:
    preinst = (REPO / RPM["pre_install_script"]).read_text()
    assert RPM["pre_install_script"] == DEB["maintainer-scripts"].rstrip("/") + "/preinst"
    # dpkg: `upgrade OLD-VERSION`; rpm: the count of installed versions.
    assert 'upgrade)' in preinst and '[0-9]*)' in preinst
    assert "backup create" in preinst and "exit 1" in preinst
