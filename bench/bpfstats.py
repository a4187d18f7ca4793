"""Time the kernel spent running each of mnmon's BPF programs (kernel.bpf_stats_enabled).

With the sysctl on, the kernel counts run_cnt and run_time_ns per program and shows
them in the fdinfo of the program's fd (what `bpftool prog show` prints), so no
bpftool is needed: the fds are the loaded bcc program's own.
"""
import re
from contextlib import contextmanager
from pathlib import Path

SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


def parse_fdinfo(text):
    """(run_cnt, run_time_ns) of a BPF program's fdinfo text; (0, 0) when absent."""
    cnt = re.search(r"^run_cnt:\s*(\d+)", text, re.M)
    ns = re.search(r"^run_time_ns:\s*(\d+)", text, re.M)
    return (int(cnt.group(1)) if cnt else 0, int(ns.group(1)) if ns else 0)


def read(bpf, extra=None):
    """{program name: (run_cnt, run_time_ns)} of every program bcc has loaded, and of
    extra {fd: name} (programs loaded past bcc: fentry on module callbacks)."""
    out = {}
    fds = [(name.decode() if isinstance(name, bytes) else name, fn.fd) for name, fn in bpf.funcs.items()]
    for name, fd in fds + [(name, fd) for fd, name in (extra or {}).items()]:
        try:
            out[name] = parse_fdinfo(Path(f"/proc/self/fdinfo/{fd}").read_text())
        except OSError:
            pass
    return out


def delta(after, before):
    """Per program (runs, ns) between two read()s, programs that ran only."""
    out = {}
    for name, (cnt, ns) in after.items():
        c0, n0 = before.get(name, (0, 0))
        if cnt - c0:
            out[name] = (cnt - c0, ns - n0)
    return out


@contextmanager
def enabled():
    """kernel.bpf_stats_enabled=1 for the duration (it costs two clock reads per run)."""
    old = SYSCTL.read_text().strip()
    SYSCTL.write_text("1")
    try:
        yield
    finally:
        SYSCTL.write_text(old)
