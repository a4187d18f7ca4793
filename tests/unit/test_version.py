"""`mnmon --version`: mnmon's, bcc's, Python's and the kernel's versions, and the build."""
import os
import platform
import sys
import types

from click.testing import CliRunner

from monitor import __version__, build
from monitor.cli.commands import main


def test_version_names_mnmon_bcc_python_kernel_and_build():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0, r.output
    first, *rest = r.output.splitlines()
    assert first == f"mnmon, version {__version__} (build: {build.commit()})"
    facts = dict(line.split(":", 1) for line in rest)
    assert {k.strip() for k in facts} == {"bcc", "python", "kernel"}
    assert facts["  python"].strip() == platform.python_version()
    assert facts["  kernel"].strip() == os.uname().release


def test_without_bcc_it_says_so():
    text = build.version_text({"mnmon": "1.2.3", "build": "unknown", "bcc": None,
                               "python": "3.11.2", "kernel": "6.1.0-18-amd64"})
    assert "  bcc:     bcc not importable" in text.splitlines()


def test_the_build_is_the_stamped_commit_else_unknown(monkeypatch):
    monkeypatch.setitem(sys.modules, "monitor._build", None)      # import fails: not stamped
    assert build.commit() == "unknown"
    monkeypatch.setitem(sys.modules, "monitor._build", types.SimpleNamespace(COMMIT="0595719f2d80"))
    assert build.commit() == "0595719f2d80"
