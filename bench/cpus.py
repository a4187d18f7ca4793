"""One online CPU in the emulated guest while the benchmark runs.

Attaching and detaching probes patches kernel text (text_poke_bp: int3, then IPIs to
every other CPU to resynchronise them). In the bed's two-vCPU guest under QEMU TCG,
that froze the whole guest now and then: three times in ~150 attach/detach rounds,
with no kernel message, both vCPUs busy. With one CPU online there is no one to
interrupt, and the loop being timed no longer shares the host with a second vCPU
thread. The benchmark's work is sequential, so one CPU loses nothing.
"""
from contextlib import contextmanager
from pathlib import Path

SYSFS = Path("/sys/devices/system/cpu")


def parse_cpulist(text):
    """'0-2,5' -> {0, 1, 2, 5}."""
    out = set()
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def online():
    return parse_cpulist((SYSFS / "online").read_text())


def present():
    return parse_cpulist((SYSFS / "present").read_text())


@contextmanager
def only_cpu0():
    """Take every CPU but 0 offline for the with-block, then bring them back."""
    taken = []
    try:
        for cpu in sorted(online() - {0}):
            (SYSFS / f"cpu{cpu}" / "online").write_text("0")
            taken.append(cpu)
        yield
    finally:
        for cpu in taken:
            try:
                (SYSFS / f"cpu{cpu}" / "online").write_text("1")
            except OSError:
                pass
