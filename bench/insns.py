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


class PluginFile:
    """A file the plugin appends to, read from where the last read stopped, in whole
    records: the plugin writes and flushes a record before the guest goes on."""

    def __init__(self, path, missing):
        self.path = Path(path)
        if not self.path.exists():
            raise InsnsError(f"{self.path}: no such file: {missing}")
        self.offset = self.path.stat().st_size

    def read_new(self, end):
        """The whole records (each ending with end) appended since the last read."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        data = data[:data.rfind(end) + len(end)] if end in data else b""
        self.offset += len(data)
        return data.decode()


class Counter(PluginFile):
    """The plugin's output file, read from where the last take() stopped."""

    def __init__(self, path):
        super().__init__(path, f"is the guest running under QEMU with -plugin libinsncount.so,out={path}? "
                               "(make bench does that)")

    def take(self):
        """The counts of the loops that ran since the last take(), oldest first."""
        return parse(self.read_new(b"\n"))

    def one(self):
        """The count of the one loop that ran since the last take()."""
        counts = self.take()
        if len(counts) != 1:
            raise InsnsError(f"expected the count of one loop, found {len(counts)}: "
                             "is the plugin loaded, and the guest on one vCPU?")
        return counts[0]
