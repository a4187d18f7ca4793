"""Guest slots: how many emulated guests run at once on this host.

Each guest has one vCPU, and software emulation keeps one host core busy per vCPU,
so the bed allows one guest per core (two on the 2-core machines it runs on; more
would time each other out). MNMON_BED_SLOTS overrides the count. A benchmark takes
every slot: its figures must not share the machine with another guest. A run of several
benchmark boots (bed/bench_matrix.py) holds every slot across them, so no other guest
starts between two legs and makes the next wait for it; its children's slot() see
MNMON_BED_HELD=whole and take nothing more.
"""
import fcntl
import os
import time
from contextlib import contextmanager

LOCK = "/tmp/mnmon-vm.lock"
HELD = "MNMON_BED_HELD"


def count():
    """The number of guests allowed at once."""
    try:
        n = int(os.environ.get("MNMON_BED_SLOTS", "") or min(os.cpu_count() or 1, 2))
    except ValueError:
        n = 1
    return max(n, 1)


def _open(i):
    return open(f"{LOCK}.{i}", "w")


@contextmanager
def slot(whole_machine=False, poll=1.0):
    """Hold one guest slot (every slot with whole_machine) while the block runs."""
    if os.environ.get(HELD) == "whole":     # a parent holds every slot for us
        yield
        return
    held = []
    try:
        if whole_machine:
            # In order, blocking: holders of one slot never wait while holding, so no cycle.
            for i in range(count()):
                f = _open(i)
                fcntl.flock(f, fcntl.LOCK_EX)
                held.append(f)
        else:
            while not held:
                for i in range(count()):
                    f = _open(i)
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        f.close()
                        continue
                    held.append(f)
                    break
                else:
                    time.sleep(poll)
        yield
    finally:
        for f in held:
            f.close()
