"""The benchmark on every pinned stock kernel, one boot each (`make bench-matrix`).

    python -m bed.bench_matrix                          # every kernel in kernels.KERNELS
    python -m bed.bench_matrix --kernels 5.10.0-46-amd64 --bench-args="--reps 3"

Each leg fetches its kernel (build/kernels/), builds the fixture for it, and boots it with
the instruction-counting plugin to run `python -m bench` with the configurations the
matrix table shows (the default and lean builds, not the kprobe and in-flight-hash ones).
The run holds every guest slot (bed/slots.py) from its first leg to its last, as a
plugin's guest does, so no other guest shares the machine with the timings, nor starts
between two legs. build/bench/<release>/ keeps the leg's RESULTS.md,
RESULTS.json, log.txt and leg.json (exit status, seconds); bed/bench_table.py writes
the README's table from those. Exit status: 0 when every leg passed.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

from bed import kernels, matrix, slots

REPO = kernels.REPO
OUT = REPO / "build" / "bench"
PLUGIN = OUT / "plugin" / "libinsncount.so"
# What the matrix table needs: the default build (it also measures start, RSS and idle
# CPU), latency always, every probe (latency full) and lean. The kprobe and in-flight-hash builds each cost a compile and their own
# overhead runs; `make bench` measures them on one kernel. Three repetitions per state,
# not five: a repetition is ~20 s of attaching, settling and warming up under emulation,
# and two builds of four kernels at five would take the run past 30 minutes; the least
# two of three still have to agree within 1 % (RESULTS.md says where they do not).
# Exactness is not in the table: 100,000 invalidations show a kernel's counts agree.
BENCH_ARGS = ["--variants", "lean,always,full", "--reps", "3", "--million", "100000"]
# A leg takes 5-8 minutes booted (5.10 the longest: bcc compiles for 100 s there, twice);
# a frozen guest fails its leg instead of the run.
LEG_TIMEOUT = 1500


def leg_dir(release, out=OUT):
    return out / release


def bench_command(release, out=OUT, plugin=PLUGIN, extra=(), timeout=LEG_TIMEOUT):
    """The host's command line of one leg: boot release on one vCPU with the insncount
    plugin and run the benchmark, its results and counts in the leg's directory."""
    d = leg_dir(release, out)
    insns = d / "insns.log"
    return [matrix.PY, "-m", "bed.vm", "--kernel", release, "--cpus", "1", "--timeout", str(timeout),
            "--plugin", f"{plugin},out={insns}", "--",
            matrix.PY, "-m", "bench", "--insns", str(insns), "--results", str(d / "RESULTS.md"),
            *BENCH_ARGS, *extra]


def booted_seconds(log_text):
    """The guest's own time (boot and bench) as bed.vm reports it, without the wait for
    the slots; None when it never booted."""
    found = re.findall(r"^vm: .* ran (\d+) s$", log_text, re.M)
    return int(found[-1]) if found else None


def run_leg(release, out=OUT, extra=(), timeout=LEG_TIMEOUT, env=None):
    """Fetch, build the fixture for, boot and benchmark one kernel; returns its leg.json as a dict."""
    d = leg_dir(release, out)
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*"):
        if f.is_file():
            f.unlink()
    t0 = time.monotonic()
    with (d / "log.txt").open("w") as log:
        try:
            rc = matrix.prepare(release, log)
            prepared = time.monotonic() - t0
            if rc == 0:
                cmd = bench_command(release, out, extra=extra, timeout=timeout)
                print("bench-matrix:", shlex.join(cmd), file=log, flush=True)
                rc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        except kernels.KernelError as e:
            print(f"bench-matrix: {release}: {e}", file=log)
            rc, prepared = 2, time.monotonic() - t0
    booted = booted_seconds((d / "log.txt").read_text())
    leg = {"release": release, "rc": rc, "prepare_seconds": round(prepared), "booted_seconds": booted,
           "wall_seconds": round(time.monotonic() - t0), "date": time.strftime("%Y-%m-%d")}
    (d / "leg.json").write_text(json.dumps(leg, indent=1) + "\n")
    return leg


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bed.bench_matrix", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", default=",".join(kernels.KERNELS),
                    help="comma-separated releases (default: every pinned kernel)")
    ap.add_argument("--bench-args", default="", help="more arguments for python -m bench, e.g. '--reps 3'")
    args = ap.parse_args(argv)
    releases = [r for r in args.kernels.split(",") if r]
    for r in releases:
        if r not in kernels.KERNELS:
            ap.error(f"unknown kernel {r!r}; pinned: {', '.join(kernels.KERNELS)}")
    if not PLUGIN.exists():
        ap.error(f"{PLUGIN.relative_to(REPO)} is missing: make bench-matrix builds it")
    t0, legs = time.monotonic(), []
    print("bench-matrix: waiting for every guest slot (other guests finish first)...", flush=True)
    with slots.slot(whole_machine=True):
        held = time.monotonic()
        for release in releases:
            legs.append(run_and_report(release, shlex.split(args.bench_args)))
    print(f"bench-matrix: {len(legs)} legs in {time.monotonic() - held:.0f} s with the machine held "
          f"({held - t0:.0f} s waiting for it)", flush=True)
    return 0 if legs and all(leg["rc"] == 0 for leg in legs) else 1


def run_and_report(release, extra):
    """One leg, its guest told that the run holds every slot (its bed.vm takes none)."""
    print(f"bench-matrix: {release} ...", flush=True)
    leg = run_leg(release, extra=extra, env=dict(os.environ, **{slots.HELD: "whole"}))
    print(f"bench-matrix: {release}: {'done' if leg['rc'] == 0 else 'FAILED rc=%d' % leg['rc']} in "
          f"{leg['wall_seconds']} s ({leg['booted_seconds']} s booted; log: "
          f"{(leg_dir(release) / 'log.txt').relative_to(REPO)})", flush=True)
    if leg["rc"]:           # a CI log should say why without the artifact
        print("".join((leg_dir(release) / "log.txt").read_text().splitlines(True)[-40:]), flush=True)
    return leg


if __name__ == "__main__":
    sys.exit(main())
