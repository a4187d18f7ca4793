"""Guest instructions per churn loop, as the QEMU TCG plugin bench/plugin/insncount.c
counts them: every instruction the (single) vCPU executes between the two markers
bench/churn.c runs around its loop.

The plugin appends one line "insns=N" per loop to a file on the host; the guest's root
is the host's filesystem, so the benchmark reads the line its run added. Unlike time
under emulation, the count does not depend on how busy the host is: repeated runs
agree to a fraction of a percent (what still varies is the guest's own timer interrupts
and background tasks during the loop).
"""
from pathlib import Path


class InsnsError(RuntimeError):
    pass


def parse(text):
    """'insns=N' lines -> [N, ...]."""
    counts = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key != "insns" or not value.isdigit():
            raise InsnsError(f"instruction count file: unexpected line {line!r}")
        counts.append(int(value))
    return counts


class Counter:
    """The plugin's output file, read from where the last take() stopped."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise InsnsError(f"{self.path}: no such file: is the guest running under QEMU with "
                             f"-plugin libinsncount.so,out={self.path}? (make bench does that)")
        self.offset = self.path.stat().st_size

    def take(self):
        """The counts of the loops that ran since the last take(), oldest first."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        # The plugin writes and flushes whole lines before the guest goes on.
        data = data[:data.rfind(b"\n") + 1]
        self.offset += len(data)
        return parse(data.decode())

    def one(self):
        """The count of the one loop that ran since the last take()."""
        counts = self.take()
        if len(counts) != 1:
            raise InsnsError(f"expected the count of one loop, found {len(counts)}: "
                             "is the plugin loaded, and the guest on one vCPU?")
        return counts[0]
