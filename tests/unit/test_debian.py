"""debian/: the package's unit is the repository's with only where mnmon is changed, its
version is mnmon's, and what it installs exists (tests/host/test_debian_package.py
builds and installs it)."""
import glob
import re
import subprocess
from pathlib import Path

import monitor
from tests.unit.test_systemd_unit import UNIT, directives

REPO = Path(__file__).resolve().parents[2]
DEBIAN = REPO / "debian"


def package_unit():
    return subprocess.run(["sed", "-f", DEBIAN / "unit.sed", UNIT], check=True,
                          stdout=subprocess.PIPE, text=True).stdout


def test_the_package_unit_runs_usr_bin_mnmon_and_is_otherwise_the_repositorys():
    text = package_unit()
    assert "/opt/mnmon" not in text
    ours, theirs = directives(text), directives(UNIT.read_text())
    assert ours.pop(("Service", "ExecStart")) == ["/usr/bin/mnmon serve"]
    assert ours.pop(("Unit", "Documentation")) == ["man:mnmon(1) file:///usr/share/doc/mnmon/README.md"]
    del theirs[("Service", "ExecStart")], theirs[("Unit", "Documentation")]
    assert ours == theirs
    # Of the comments, only the paragraph on installing a checkout's unit is replaced: the
    # directives' reasons stay.
    paragraph = re.search(r"^# Assumed install path:.*?^# `mnmon serve` reads.*?$", UNIT.read_text(),
                          re.M | re.S).group(0).splitlines()
    gone = [line for line in UNIT.read_text().splitlines() if line not in text.splitlines()]
    assert set(gone) - set(paragraph) == {"ExecStart=/opt/mnmon/.venv/bin/mnmon serve",
                                          "Documentation=file:///opt/mnmon/README.md"}


def test_the_package_version_is_mnmons():
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    assert re.match(r"mnmon \(([^)]+)\) ", first).group(1) == monitor.__version__


def test_what_the_package_installs_exists():
    for line in (DEBIAN / "mnmon.install").read_text().splitlines():
        *sources, _ = line.split()
        for source in sources:
            assert glob.glob(str(REPO / source)), f"debian/mnmon.install: {source} matches nothing"
    assert (REPO / "bpf" / "mnmon.bpf.c").exists()


def test_the_test_setup_installs_the_build_dependencies():
    # tests/run's one command builds the package on a fresh Debian 12: install-debian.sh
    # --test must install what debian/control asks for.
    control = (DEBIAN / "control").read_text()
    field = re.search(r"^Build-Depends:(.*?)^\S", control, re.M | re.S).group(1)
    wanted = {re.match(r"[\w.+-]+", d.strip()).group(0) for d in field.split(",") if d.strip()}
    wanted -= {"debhelper-compat", "dh-sequence-python3"}     # provided by debhelper, dh-python
    script = (REPO / "deploy" / "install-debian.sh").read_text()
    testpkgs = set(re.search(r'^testpkgs="(.*?)"', script, re.M | re.S).group(1).split())
    assert wanted <= testpkgs and "lintian" in testpkgs, wanted - testpkgs
