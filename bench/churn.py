"""The invalidation loop (bench/churn.c), built with this machine's gcc and run as a child."""
import re
import select
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "bench" / "churn.c"
HEADER_DIR = REPO / "bed" / "fixture"
BINARY = REPO / "build" / "bench" / "churn"
# A mode is a notifier, and ":PAGES" for invalidations of more than one page at a time.
MODES = ("kvm", "list", "interval", "kvm:64")
# A multi-page iteration faults in and zaps every page (64 pages: ~40 times a one-page
# iteration's time, emulated): a quarter of the iterations, runs of ~2 s, long enough
# for the host's noise to average out.
MULTI_PAGE_SHARE = 4


def notifier(mode):
    """kvm, list or interval."""
    return mode.split(":")[0]


def pages(mode):
    return int(mode.split(":")[1]) if ":" in mode else 1


def iterations_for(mode, iterations):
    """The iterations of a run of mode where a one-page mode would run `iterations`."""
    return iterations if pages(mode) == 1 else max(1, iterations // MULTI_PAGE_SHARE)


def _argv(mode, iterations, *flags):
    return [str(BINARY), *flags, "-p", str(pages(mode)), notifier(mode), str(iterations)]


class ChurnError(RuntimeError):
    pass


@dataclass
class Result:
    ns_per_iter: float
    iterations: int
    slot: int             # the fixture's slot id; -1 for kvm
    utime_ns: int
    stime_ns: int


def parse_result(line):
    """'ns_per_iter=F iterations=N slot=S utime_ns=U stime_ns=K' -> Result."""
    kv = dict(item.split("=", 1) for item in line.split())
    try:
        return Result(float(kv["ns_per_iter"]), int(kv["iterations"]), int(kv["slot"]),
                      int(kv["utime_ns"]), int(kv["stime_ns"]))
    except (KeyError, ValueError):
        raise ChurnError(f"churn printed {line!r}") from None


def build():
    """Compile churn.c into build/bench/ unless the binary is newer than its sources."""
    newest = max(SOURCE.stat().st_mtime, (HEADER_DIR / "mnmon_fixture.h").stat().st_mtime)
    if BINARY.exists() and BINARY.stat().st_mtime >= newest:
        return BINARY
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{HEADER_DIR}", "-o", str(BINARY),
                        str(SOURCE)], capture_output=True, text=True)
    if p.returncode:
        raise ChurnError(f"gcc {SOURCE.name}: {p.stderr.strip()}")
    return BINARY


def run(mode, iterations):
    """Run the loop to the end; its Result."""
    p = subprocess.run(_argv(mode, iterations), capture_output=True, text=True)
    if p.returncode:
        raise ChurnError(f"churn {mode} {iterations}: rc={p.returncode}: {p.stderr.strip()}")
    return parse_result(p.stdout.strip())


class Held:
    """churn -w: subscribed and waiting. go() starts the loop; wait_result() returns its
    Result while the process still holds its mm; close() lets it exit.

        with Held("interval", 10**6) as c:
            ...attach to the new notifier (c.slot, c.pid)...
            c.go()
            r = c.wait_result()
    """

    def __init__(self, mode, iterations):
        self.proc = subprocess.Popen(_argv(mode, iterations, "-w"), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"ready pid=(\d+) slot=(-?\d+)", line)
        if not m:
            self.close()
            raise ChurnError(f"churn -w {mode}: {line.strip() or self.proc.stderr.read().strip()}")
        self.pid, self.slot = int(m.group(1)), int(m.group(2))

    def go(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result_ready(self, timeout):
        """True once the result line can be read (waits up to timeout seconds)."""
        return bool(select.select([self.proc.stdout], [], [], timeout)[0])

    def wait_result(self):
        line = self.proc.stdout.readline()
        if not line:
            raise ChurnError(f"churn died: rc={self.proc.wait()}: {self.proc.stderr.read().strip()}")
        return parse_result(line)

    def close(self):
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
