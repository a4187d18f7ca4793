"""monitor.bpf_sources: a checkout compiles its own bpf/, the Debian package its
/usr/share/mnmon/bpf, MNMON_BPF_DIR overrides both."""
from pathlib import Path

from monitor import bpf_sources
from monitor.attach import loader
from monitor.read import contract

REPO = Path(__file__).resolve().parents[2]


def test_a_checkout_finds_its_own_sources():
    assert bpf_sources.CHECKOUT == REPO / "bpf"
    assert bpf_sources.find(env={}) == REPO / "bpf"
    assert loader.BPF_DIR == REPO / "bpf" and contract.HEADER == REPO / "bpf" / "mnmon.h"


def test_an_installed_package_finds_usr_share(tmp_path):
    # Installed, the package sits in dist-packages: nothing named bpf beside it, or a
    # bpf/ of some other package's, without mnmon.bpf.c.
    site = tmp_path / "dist-packages"
    assert bpf_sources.find(env={}, checkout=site / "bpf") == Path("/usr/share/mnmon/bpf")
    (site / "bpf").mkdir(parents=True)
    (site / "bpf" / "__init__.py").write_text("")
    assert bpf_sources.find(env={}, checkout=site / "bpf") == Path("/usr/share/mnmon/bpf")


def test_mnmon_bpf_dir_wins(tmp_path):
    assert bpf_sources.find(env={"MNMON_BPF_DIR": str(tmp_path)}) == tmp_path
    assert bpf_sources.find(env={"MNMON_BPF_DIR": ""}) == REPO / "bpf"
