"""The kernel matrix: the probe and OOM tests on every pinned stock kernel, one boot each.

    python -m bed.matrix                       # every kernel in kernels.KERNELS
    python -m bed.matrix --kernels 5.10.0-46-amd64,6.12.117+deb12-amd64
    python -m bed.matrix --kernels 6.12.117+deb12-amd64:6.1.0-57-amd64   # with 6.1's headers only

Each leg fetches its kernel (build/kernels/), builds the fixture for it, boots it and
runs LEG_TESTS; what it found goes to build/matrix/<release>/: the log, pytest's
junit.xml, the attach facts of each Monitor the tests started (facts-<store>.json) and
leg.json (exit status, seconds). bed/matrix_table.py writes the README's
support table from those files. Exit status: 0 when every leg passed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bed import kernels

REPO = kernels.REPO
OUT = REPO / "build" / "matrix"
PY = str(REPO / ".venv" / "bin" / "python")
# The probe and OOM tests, and drivers that come while mnmon runs; the million-invalidation
# load test stays in 6.1's full tier.
# Every leg runs the default configuration's counts (test_counts.py) and crowd;
# test_zz_mrelease.py last, as in the full tier. The modules from test_probes.py on run
# every probe on one monitor held across them (tests/kernel/held_monitor.py): one compile.
LEG_TESTS = ["tests/kernel/test_bed.py", "tests/kernel/test_layout.py", "tests/kernel/test_first_invalidation.py",
             "tests/kernel/test_crowd.py", "tests/kernel/test_counts.py",
             "tests/kernel/test_probes.py", "tests/kernel/test_two_pass.py", "tests/kernel/test_premature.py",
             "tests/kernel/test_zz_mrelease.py"]
LEG_SELECT = "not a_million"
# A leg runs mnmon with the in-flight store it picks on its kernel; the installed kernel's
# full tier runs both stores (tests/kernel/kernel_facts.stores).
LEG_ENV = ["MNMON_STORES=default"]
LEG_TIMEOUT = 1500


def prepare(release, log):
    """Fetch release if it is not installed and build the fixture for it, output to log;
    make's exit status."""
    if not Path(f"/lib/modules/{release}/build").exists():
        kernels.fetch(release)
    return subprocess.run(["make", "--no-print-directory", "fixture", f"KVER={release}"],
                          cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode


def record(mon, out=None):
    """Inside a leg: write what this Monitor attached, and how, for the support table."""
    out = out or os.environ.get("MNMON_MATRIX_OUT")
    if not out:
        return
    import bcc
    facts = {
        "release": os.uname().release,
        "bcc": getattr(bcc, "__version__", "?"),
        "inflight": mon.plan.inflight,
        # The planned probes and every callback's probe (Monitor.all_statuses).
        "probes": {st.probe: {"method": st.method, "attached": st.attached, "reason": st.reason}
                   for st in sorted(mon.all_statuses(), key=lambda st: st.probe)},
    }
    path = Path(out) / f"facts-{mon.plan.inflight}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():           # each test module starts its own Monitor: what any attached
        for name, st in json.loads(path.read_text())["probes"].items():
            if st["attached"] or name not in facts["probes"]:
                facts["probes"][name] = st
    path.write_text(json.dumps(facts, indent=1) + "\n")


def parse_leg(text):
    """'RELEASE' (its own headers) or 'RELEASE:HEADERS' (only HEADERS' kernel's) -> (release, headers or None)."""
    release, _, headers = text.partition(":")
    for r in filter(None, (release, headers)):
        if r not in kernels.KERNELS:
            raise SystemExit(f"matrix: unknown kernel {r!r}; pinned: {', '.join(kernels.KERNELS)}")
    return release, headers or None


def leg_name(release, headers=None):
    """The leg's directory under build/matrix/."""
    return f"{release}+headers-{headers}" if headers else release


def headers_dir(release):
    """A kernel's headers as bcc takes them: installed, else fetched (build/kernels/)."""
    installed = Path(f"/usr/src/linux-headers-{release}")
    if installed.is_dir():
        return installed
    return kernels.fetch(release) / "root" / "usr" / "src" / f"linux-headers-{release}"


def guest_command(cmd, headers=None):
    """cmd as the guest runs it: with only headers' kernel's headers in reach, if given."""
    if not headers:
        return cmd
    return ["sh", str(REPO / "bed" / "other_headers.sh"), str(headers_dir(headers)), *cmd]


def run_leg(release, out=OUT, tests=LEG_TESTS, select=LEG_SELECT, timeout=LEG_TIMEOUT, headers=None):
    """Fetch, build, boot and test one kernel (with another's headers only, if headers);
    returns its leg.json as a dict."""
    d = out / leg_name(release, headers)
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*"):
        f.unlink()
    t0 = time.monotonic()
    log = (d / "log.txt").open("w")
    try:
        rc = prepare(release, log)
        built = time.monotonic() - t0
        if rc == 0:
            # Tests print their figures next to ground truth: junit.xml keeps them.
            cmd = guest_command(["env", f"MNMON_MATRIX_OUT={d}", *LEG_ENV, PY, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "-rsxX", f"--junitxml={d / 'junit.xml'}", "-o", "junit_logging=system-out",
                                 "-k", select, *tests], headers)
            log.flush()
            rc = subprocess.run([PY, "-m", "bed.vm", "--kernel", release, "--cpus", "1",
                                 "--timeout", str(timeout), "--", *cmd],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    except kernels.KernelError as e:
        print(f"matrix: {release}: {e}", file=log)
        rc, built = 2, time.monotonic() - t0
    log.close()
    # The guest's own time, without the wait for the bed's lock (others' guests).
    booted = re.findall(r"^vm: .* ran (\d+) s$", (d / "log.txt").read_text(), re.M)
    leg = {"release": release, "headers": headers or "own", "rc": rc, "seconds": round(built) + (int(booted[-1]) if booted else 0),
           "wall_seconds": round(time.monotonic() - t0), "prepare_seconds": round(built),
           "date": time.strftime("%Y-%m-%d")}
    (d / "leg.json").write_text(json.dumps(leg, indent=1) + "\n")
    return leg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", default=",".join(kernels.KERNELS),
                    help="comma-separated releases (default: every pinned kernel); RELEASE:HEADERS boots "
                         "RELEASE with only HEADERS' kernel's headers in reach")
    ap.add_argument("--skip", default="", help="comma-separated releases to leave out (CI: the one the full tier ran)")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    legs = []
    for release, headers in map(parse_leg, filter(None, args.kernels.split(","))):
        if release in skip:
            continue
        name = leg_name(release, headers)
        print(f"matrix: {name} ...", flush=True)
        leg = run_leg(release, headers=headers)
        legs.append(leg)
        print(f"matrix: {name}: {'passed' if leg['rc'] == 0 else 'FAILED rc=%d' % leg['rc']} "
              f"in {leg['seconds']} s (log: build/matrix/{name}/log.txt)", flush=True)
        if leg["rc"]:           # a CI log should say why without the artifact
            print("".join((OUT / name / "log.txt").read_text().splitlines(True)[-60:]), flush=True)
    return 0 if legs and all(leg["rc"] == 0 for leg in legs) else 1


if __name__ == "__main__":
    sys.exit(main())
