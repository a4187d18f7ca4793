"""What this mnmon is and runs on, for `mnmon --version`, `sample --json` and the logs.

The commit is stamped at build time into monitor/_build.py (`make deb` writes it into the
tree it packages, so the package and the image made from it carry it; it is not in the
repository). Without it the build is "unknown": a checkout never runs git to find out,
which would name whatever the working directory holds rather than what was built.
"""
import os
import platform

from monitor import __version__
from monitor.kernel.facts import bcc_version


def commit():
    """The commit mnmon was built from, "unknown" when no build stamped it."""
    try:
        from monitor._build import COMMIT   # noqa: PLC0415 -- optional, generated
    except ImportError:
        return "unknown"
    return COMMIT or "unknown"


def facts():
    """{"mnmon", "build", "bcc", "python", "kernel"}: bcc is None when it cannot be imported."""
    bcc = bcc_version()
    return {"mnmon": __version__, "build": commit(), "bcc": None if bcc == "none" else bcc,
            "python": platform.python_version(), "kernel": os.uname().release}


def version_text(f=None):
    """`mnmon --version`, in the shape of Prometheus exporters' first line and indented facts."""
    f = facts() if f is None else f
    return "\n".join([
        f"mnmon, version {f['mnmon']} (build: {f['build']})",
        f"  bcc:     {f['bcc'] or 'bcc not importable'}",
        f"  python:  {f['python']}",
        f"  kernel:  {f['kernel']}",
    ])
