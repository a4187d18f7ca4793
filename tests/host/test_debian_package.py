"""The Debian package as its users meet it: `make deb` builds build/deb/mnmon_<version>_all.deb,
lintian has nothing to say but the overrides debian/ justifies, the package holds what a
daemon's package holds, and on a fresh Debian 12 root (mmdebstrap, the system tier's cached
root) `apt install ./mnmon_*.deb` gives a working mnmon whose purge leaves nothing behind.
Each step's time is printed at the end of the run."""
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import monitor
from tests.system import roots

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="apt-get build-dep, a chroot and BPF need root")

REPO = Path(__file__).resolve().parents[2]
DEB = REPO / "build" / "deb" / f"mnmon_{monitor.__version__}_all.deb"
FIGURES = {}


def timed(step, fn, *args, **kw):
    t0 = time.monotonic()
    try:
        return fn(*args, **kw)
    finally:
        FIGURES[step] = time.monotonic() - t0


def summary():
    return ["debian package: " + ", ".join(f"{step} {s:.0f} s" for step, s in FIGURES.items())]


@pytest.fixture(scope="module")
def deb():
    r = timed("make deb", subprocess.run, ["make", "--no-print-directory", "deb"], cwd=REPO,
              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout[-3000:]
    assert sorted(DEB.parent.glob("*.deb")) == [DEB]
    return DEB


def test_lintian_says_nothing_but_the_justified_overrides(deb):
    changes = deb.parent / f"mnmon_{monitor.__version__}_amd64.changes"
    r = timed("lintian", subprocess.run,
              ["lintian", "--pedantic", "--display-info", "--display-experimental", "--show-overrides",
               "--fail-on", "error,warning", str(changes)],
              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    tags = [line for line in r.stdout.splitlines() if re.match(r"[EWIPXO]: ", line)]
    assert r.returncode == 0 and not [t for t in tags if t[0] in "EW"], r.stdout
    overridden = {t.split()[2] for t in tags if t.startswith("O: ")}
    justified = {line.split()[1] for line in (REPO / "debian" / "mnmon.lintian-overrides").read_text().splitlines()
                 if line.startswith("mnmon: ")}
    # Every override still matches a tag, and nothing else is said (info and pedantic included).
    assert overridden == justified and len(tags) == len(overridden), r.stdout


def deb_file(deb, path):
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, stdout=subprocess.PIPE).stdout
    return subprocess.run(["tar", "-xO", "." + path], input=tar, check=True, stdout=subprocess.PIPE).stdout.decode()


def test_the_package_holds_what_a_daemons_package_holds(deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, stdout=subprocess.PIPE, text=True).stdout
    paths = {line.split()[5].lstrip(".").rstrip("/") for line in listing.splitlines()}
    for path in ["/usr/bin/mnmon", "/lib/systemd/system/mnmon.service", "/etc/mnmon/config.yaml",
                 "/usr/share/man/man1/mnmon.1.gz", "/usr/share/doc/mnmon/copyright",
                 "/usr/share/doc/mnmon/README.md",
                 "/usr/lib/python3/dist-packages/monitor/__main__.py",
                 "/usr/share/mnmon/bpf/mnmon.bpf.c", "/usr/share/mnmon/bpf/mnmon.h",
                 "/usr/share/mnmon/dashboards/mnmon-overview.json",
                 "/usr/share/mnmon/dashboards/provisioning/datasources/mnmon.yaml",
                 "/usr/share/mnmon/prometheus/mnmon.alerts.yml", "/usr/share/mnmon/prometheus/mnmon.rules.yml"]:
        assert path in paths, f"{path} is not in {deb.name}"
    assert {p.name for p in (REPO / "bpf").iterdir()} == \
        {Path(p).name for p in paths if p.startswith("/usr/share/mnmon/bpf/")}
    assert not [p for p in paths if re.search(r"/opt/|\.venv|__pycache__|\.pyc$|/tests/unit|egg-info", p)]

    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Architecture", "Version", "Depends", "Recommends"],
                            check=True, stdout=subprocess.PIPE, text=True).stdout
    assert "Architecture: all" in fields and f"Version: {monitor.__version__}\n" in fields
    depends = set(re.findall(r"[\w.+-]+", re.search(r"^Depends: (.*)$", fields, re.M).group(1)))
    assert {"python3-bpfcc", "python3-prometheus-client", "python3-click", "python3-yaml",
            "python3-bcrypt"} <= depends
    assert "linux-headers-amd64" in re.search(r"^Recommends: (.*)$", fields, re.M).group(1)

    conffiles = subprocess.run(["dpkg-deb", "-I", str(deb), "conffiles"], check=True,
                               stdout=subprocess.PIPE, text=True).stdout.split()
    assert conffiles == ["/etc/mnmon/config.yaml"]
    unit = deb_file(deb, "/lib/systemd/system/mnmon.service")
    assert re.findall(r"^ExecStart=(.*)$", unit, re.M) == ["/usr/bin/mnmon serve"] and "/opt/mnmon" not in unit


def chroot(root, command):
    r = roots.in_chroot(root, command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.returncode, r.stdout


@pytest.fixture(scope="module")
def installed(deb):
    """A fresh Debian 12 root with the package installed as a user would: apt, recommends and all."""
    tar = timed("fresh root (cached in build/system)", roots.root_tar, "base", ["ca-certificates"])
    root = roots.unpack(tar, roots.BUILD / "deb-root")
    roots.trust_local_cas(root)
    shutil.copy(deb, root / "tmp")
    rc, out = timed("apt install", chroot, root, "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
                    f"apt-get install -y -q ./tmp/{shlex.quote(deb.name)}")
    assert rc == 0, out[-3000:]
    return root


def test_installed_mnmon_runs_from_usr_share_mnmon(installed):
    for command, expect in [("mnmon --help", "mnmon serve"),
                            ("mnmon --version", f"mnmon, version {monitor.__version__}"),
                            ("mnmon config check /etc/mnmon/config.yaml", "/etc/mnmon/config.yaml: ok"),
                            ("python3 -c 'from monitor.attach import loader; print(loader.BPF_DIR)'",
                             "/usr/share/mnmon/bpf")]:
        rc, out = chroot(installed, command)
        assert rc == 0 and expect in out, (command, out)
    # bcc compiles the installed sources against Debian's headers (the recommended
    # linux-headers-amd64; degraded on a kernel Debian does not package) and attaches.
    rc, out = timed("mnmon sample (bcc compile)", chroot, installed, "mnmon sample --duration 1s")
    assert rc == 0 and "attached" in out and "Traceback" not in out, out
    # dh_installsystemd enabled the unit; no systemd runs in the chroot to start it.
    wants = installed / "etc/systemd/system/multi-user.target.wants/mnmon.service"
    assert os.readlink(wants) == "/lib/systemd/system/mnmon.service"


def test_purge_leaves_nothing_of_its_own(installed, deb):
    # What mnmon makes when run by hand (merged headers under /run/mnmon), as well as the
    # package's files, the enabled unit's links and the byte-compiled modules.
    # A file the administrator added to /etc/mnmon is theirs (dpkg leaves it, with the
    # directory, and says so); everything else goes.
    rc, out = timed("apt purge", chroot, installed, "export DEBIAN_FRONTEND=noninteractive; "
                    "mkdir -p /run/mnmon/headers && echo '# mine' > /etc/mnmon/web.yaml && "
                    "apt-get purge -y -q mnmon")
    assert rc == 0, out[-3000:]
    assert (installed / "etc/mnmon/web.yaml").read_text() == "# mine\n"
    assert [p.name for p in (installed / "etc/mnmon").iterdir()] == ["web.yaml"]
    shutil.rmtree(installed / "etc/mnmon")
    rc, out = chroot(installed, "dpkg-query -W -f='${db:Status-Status}' mnmon 2>/dev/null")
    assert out in ("", "not-installed"), out
    rc, out = chroot(installed, "find / -xdev -path /proc -prune -o \\( -name '*mnmon*' -o "
                                "-path '*/dist-packages/monitor' \\) -print")
    assert rc == 0 and out.split() == [f"/tmp/{deb.name}"], out
