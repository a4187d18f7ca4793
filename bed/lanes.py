"""The real-kernel tiers of `make test`, run side by side: one guest per core.

    python -m bed.lanes --kernel 6.1.0-57-amd64

Stages: the whole kernel tier on the installed kernel, the system tier (a booted
Debian 12 host and the container image), one matrix leg per other pinned kernel, and
the host tier (this host's own kernel, no guest). Each guest stage boots its own
single-vCPU guest and shares nothing with the others but the repository's build/
directory, where each writes its own files; so as many run at once as there are guest
slots (bed/slots.py), longest first. The host tier takes a lane like a guest (one core
each) and, shortest, runs last: beside the last leg, not before every guest. Each stage's output goes to
build/ci/<stage>.log and is printed whole when the stage ends, so logs do not
interleave. Exit status: 0 when every stage passed.
"""
import argparse
import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bed import kernels, slots

REPO = kernels.REPO
OUT = REPO / "build" / "ci"
PY = str(REPO / ".venv" / "bin" / "python")
# Seconds each stage took in the last full run from a fresh clone (2 cores, TCG; the kernel
# tier and legs with the held monitor, tests/kernel/held_monitor.py): the order to start
# them in when no run on this machine recorded its own (OUT/times.json).
DEFAULT_SECONDS = {"kernel": 1230, "system": 1430, "7.2": 640, "6.12": 510, "5.10": 680, "host": 150}
# The host tier builds the Debian package and a fresh root in build/, as the system tier
# does: it starts when that stage has ended (with two lanes it starts fourth-to-end anyway).
AFTER = {"host": "system"}
# Each guest tier says which of its tests took longest: where the next minutes of CI go.
DURATIONS = "PYTEST_ARGS=--durations=15"
# Legs booted with only another kernel's headers in reach, as fleets run (issue: BTF layout):
# 6.1's are what Debian 12's linux-headers-amd64 installs on a host whose kernel Debian does
# not package. The installed kernel's tier and the newest kernel keep their own headers, so
# both kinds run in every CI run without a leg more.
OTHER_HEADERS = {"5.10.0-46-amd64": "6.1.0-57-amd64", "6.12.117+deb12-amd64": "6.1.0-57-amd64"}


def stages(kver, releases=None):
    """[(name, argv)] for kver's full tier, the system tier, every other pinned kernel and
    this host's tier."""
    make = ["make", "--no-print-directory"]
    out = [(f"kernel {kver}", make + ["test-kernel", f"KVER={kver}", DURATIONS]),
           ("system", make + ["test-system", DURATIONS]), ("host", make + ["test-host"])]
    for release in releases if releases is not None else kernels.KERNELS:
        if release != kver:
            leg = f"{release}:{OTHER_HEADERS[release]}" if release in OTHER_HEADERS else release
            out.append((f"matrix {leg}", [PY, "-m", "bed.matrix", "--kernels", leg]))
    return out


def expected(name, times):
    """A stage's expected seconds: its last recorded time, else the default for its kind."""
    if name in times:
        return times[name]
    for key, seconds in DEFAULT_SECONDS.items():
        if key == name.split()[0] or name.startswith(f"matrix {key}"):
            return seconds
    return 600


def order(named, times):
    """Longest first: with two lanes the last stage to start is a short one."""
    return sorted(named, key=lambda s: -expected(s[0], times))


def slug(name):
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", name)


def run_stage(name, argv, printed, ended=None):
    """Run one stage (after the stage AFTER names, if it is in ended: {name: Event})."""
    ended = ended or {}
    if AFTER.get(name) in ended:
        ended[AFTER[name]].wait()
    log = OUT / f"{slug(name)}.log"
    t0 = time.monotonic()
    with log.open("w") as f:
        rc = subprocess.run(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = round(time.monotonic() - t0)
    with printed:       # one stage's log at a time
        print(f"===== {name} =====", flush=True)
        sys.stdout.write(log.read_text(errors="replace"))
        print(f"lanes: {name}: {'passed' if rc == 0 else f'FAILED rc={rc}'} in {seconds} s", flush=True)
    if name in ended:
        ended[name].set()
    return name, rc, seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", required=True, help="the installed kernel whose whole tier runs")
    ap.add_argument("--lanes", type=int, default=0, help="stages at once (default: the bed's guest slots)")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    times_file = OUT / "times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    todo = order(stages(args.kernel), times)
    lanes = args.lanes or slots.count()
    print(f"lanes: {len(todo)} stages, {lanes} at once: {', '.join(n for n, _ in todo)}", flush=True)
    t0 = time.monotonic()
    printed = threading.Lock()
    ended = {name: threading.Event() for name, _ in todo if name in AFTER.values()}
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        results = list(pool.map(lambda s: run_stage(*s, printed, ended), todo))
    wall = round(time.monotonic() - t0)
    times.update({name: seconds for name, _, seconds in results})
    times_file.write_text(json.dumps(times, indent=1) + "\n")
    print(f"lanes: {lanes} at once, {wall} s in all:")
    for name, rc, seconds in results:
        print(f"  {name:32} {'passed' if rc == 0 else 'FAILED'} {seconds:5d} s")
    return 0 if all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
