"""The kernel's own evidence: trace events it emitted, lines it logged.

Scenario tests compare what they drove, and later what mnmon reports, with these.
No pytest here: a booted system's checkout (tests/system/guest_scenario.py) uses
this module without the test requirements installed.
"""
import errno
import os
import re
from pathlib import Path


TRACEFS = Path("/sys/kernel/tracing")


class TraceInstance:
    """A private tracefs instance with some events enabled, so tests never share buffers.

    with TraceInstance("oom", ["oom/mark_victim", "oom/start_task_reaping"]) as t:
        ...
    t.events("oom/mark_victim") -> list of the events' field dicts
    """

    def __init__(self, name, events, buffer_kb=8192, clock=None):
        self.dir = TRACEFS / "instances" / f"mnmon-{name}-{os.getpid()}"
        self.wanted = events
        self.buffer_kb = buffer_kb
        self.clock = clock          # "mono": timestamps on CLOCK_MONOTONIC, BPF's and ktime_get_ns()'s
        self.text = ""

    def __enter__(self):
        if self.dir.exists():
            self.dir.rmdir()
        self.dir.mkdir()
        (self.dir / "buffer_size_kb").write_text(str(self.buffer_kb))
        if self.clock:
            (self.dir / "trace_clock").write_text(self.clock)
        for ev in self.wanted:
            (self.dir / "events" / ev / "enable").write_text("1")
        return self

    def __exit__(self, *exc):
        for ev in self.wanted:
            (self.dir / "events" / ev / "enable").write_text("0")
        self.text = (self.dir / "trace").read_text()
        self.dir.rmdir()

    def events(self, name):
        """Events named 'system/event' from the buffer, each as {field: value} plus '_task', '_tid'
        of the emitter and '_ts', its timestamp in seconds."""
        short = name.split("/")[1]
        out = []
        for line in self.text.splitlines():
            m = re.match(r"\s*(\S+)-(\d+)\s+\[\d+\].*?\s" + re.escape(short) + r": (.*)$", line)
            if m:
                fields = dict(re.findall(r"(\w+)=(\S+)", m.group(3)))
                fields["_task"], fields["_tid"] = m.group(1), int(m.group(2))
                ts = re.search(r"\s(\d+\.\d+):\s", line)
                fields["_ts"] = float(ts.group(1)) if ts else None
                out.append(fields)
        return out


class HitCounter:
    """Counts every hit of one trace event with a hist trigger: exact, no buffer to overflow."""

    def __init__(self, event, instance="count"):
        self.event = event
        self.label = event.replace("/", ":")      # what counted, for messages
        self.inst = TraceInstance(f"{instance}-{event.replace('/', '-')}", [])
        self.hits = None

    def __enter__(self):
        self.inst.__enter__()
        (self.inst.dir / "events" / self.event / "trigger").write_text("hist:keys=common_pid:vals=hitcount")
        return self

    def __exit__(self, *exc):
        trig = self.inst.dir / "events" / self.event / "trigger"
        hist = (self.inst.dir / "events" / self.event / "hist").read_text()
        trig.write_text("!hist:keys=common_pid:vals=hitcount")
        self.inst.__exit__(*exc)
        self.hits, dropped = parse_hist_totals(hist)
        assert dropped == 0, f"{self.event}: hist trigger dropped {dropped} entries"


def parse_hist_totals(text):
    """(hits, dropped) from a hist trigger's 'Totals:' block."""
    hits = re.search(r"^\s*Hits:\s*(\d+)", text, re.M)
    dropped = re.search(r"^\s*Dropped:\s*(\d+)", text, re.M)
    return int(hits.group(1)) if hits else 0, int(dropped.group(1)) if dropped else 0


class KernelLog:
    """Kernel log lines written after construction (reads /dev/kmsg from its end)."""

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def lines(self):
        out = []
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    return out
                if e.errno == errno.EPIPE:      # overwritten records: skip ahead
                    continue
                raise
            out.append(rec.decode(errors="replace").split(";", 1)[-1].rstrip("\n").split("\n")[0])

    def close(self):
        os.close(self.fd)


def kvm_available():
    return Path("/dev/kvm").exists()


# KVM's count of the ranges it unmaps, the ground truth for KVM's notifier: a tracepoint of
# generic KVM since 5.13, fired once per call of kvm_mmu_notifier_invalidate_range_start.
# Before (Debian's 5.10), the kernel counts the calls of that function itself: a tracefs
# kprobe event (not BPF: no program of mnmon's is involved) traced into an instance.
KVM_UNMAP_EVENT = "kvm/kvm_unmap_hva_range"
KVM_START = "kvm_mmu_notifier_invalidate_range_start"


class FunctionHits:
    """Counts every call of a kernel function: a kprobe event of tracefs, traced into a
    private instance and counted there (hist triggers need CONFIG_HIST_TRIGGERS, which
    Debian's 5.10 lacks; a buffer that overran fails the count instead of lowering it)."""

    def __init__(self, function):
        self.name = f"mnmon_hits_{os.getpid()}"
        self.function = function
        self.trace = TraceInstance(f"fn-{function}", [f"kprobes/{self.name}"])
        self.label = f"calls of {function} (tracefs kprobe event)"
        self.hits = None

    def __enter__(self):
        _append(TRACEFS / "kprobe_events", f"p:kprobes/{self.name} {self.function}\n")
        try:
            self.trace.__enter__()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc):
        try:
            overrun = sum(int(re.search(r"^overrun: (\d+)", (d / "stats").read_text(), re.M).group(1))
                          for d in (self.trace.dir / "per_cpu").iterdir())
            self.trace.__exit__(*exc)
        finally:
            self._remove()
        assert overrun == 0, f"{self.name}: the trace buffer overran by {overrun} events"
        # Counted by the event's name alone: a task's name may hold spaces ("CPU 0/KVM").
        self.hits = sum(f" {self.name}: (" in line for line in self.trace.text.splitlines())

    def _remove(self):
        _append(TRACEFS / "kprobe_events", f"-:kprobes/{self.name}\n")


def _append(path, line):
    # As a shell's >> does: O_APPEND and one write. Python's open(path, "a") also seeks
    # to the end, which kprobe_events refuses (EINVAL) on 5.10.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def kvm_invalidations():
    """Counter of KVM's notifier calls as the kernel counts them (.hits after the with)."""
    if (TRACEFS / "events" / KVM_UNMAP_EVENT).is_dir():
        return HitCounter(KVM_UNMAP_EVENT)
    return FunctionHits(KVM_START)
