"""Where mnmon's BPF C sources (bpf/mnmon.bpf.c and what it includes) are.

    MNMON_BPF_DIR         when set, that directory and no other
    <checkout>/bpf        beside the monitor package: a checkout, or its virtualenv's
                          editable install
    /usr/share/mnmon/bpf  the Debian package's (debian/mnmon.install)

The checkout comes first so that running from one never compiles another install's
sources; it is taken only if it holds mnmon.bpf.c, since beside an installed package is
site-packages, where a directory named bpf may belong to something else.
"""
import os
from pathlib import Path

MAIN = "mnmon.bpf.c"
CHECKOUT = Path(__file__).resolve().parents[1] / "bpf"
INSTALLED = Path("/usr/share/mnmon/bpf")


def find(env=os.environ, checkout=CHECKOUT, installed=INSTALLED):
    """The directory to compile from: the first of the above that applies (installed
    when none has the sources, so that the error names where they were expected)."""
    if env.get("MNMON_BPF_DIR"):
        return Path(env["MNMON_BPF_DIR"]).resolve()
    if (checkout / MAIN).is_file():
        return checkout
    return installed


BPF_DIR = find()
