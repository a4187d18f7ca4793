"""The kernel's own evidence: trace events it emitted, lines it logged.

Scenario tests compare what they drove, and later what mnmon reports, with these.
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

    def __init__(self, name, events, buffer_kb=8192):
        self.dir = TRACEFS / "instances" / f"mnmon-{name}-{os.getpid()}"
        self.wanted = events
        self.buffer_kb = buffer_kb
        self.text = ""

    def __enter__(self):
        if self.dir.exists():
            self.dir.rmdir()
        self.dir.mkdir()
        (self.dir / "buffer_size_kb").write_text(str(self.buffer_kb))
        for ev in self.wanted:
            (self.dir / "events" / ev / "enable").write_text("1")
        return self

    def __exit__(self, *exc):
        for ev in self.wanted:
            (self.dir / "events" / ev / "enable").write_text("0")
        self.text = (self.dir / "trace").read_text()
        self.dir.rmdir()

    def events(self, name):
        """Events named 'system/event' from the buffer, each as {field: value} plus 'pid' of the emitter."""
        return parse_events(self.text, name)


def parse_events(text, name):
    """Events named 'system/event' in a trace buffer's text, each as {field: value}."""
    short = name.split("/")[1]
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*(\S+)-(\d+)\s+\[\d+\].*?\s" + re.escape(short) + r": (.*)$", line)
        if m:
            fields = dict(re.findall(r"(\w+)=(\S+)", m.group(3)))
            fields["_task"], fields["_tid"] = m.group(1), int(m.group(2))
            out.append(fields)
    return out


class HitCounter:
    """Counts every hit of one trace event exactly: with a hist trigger (no buffer to
    overflow), or where the kernel has none (Debian's 5.10: CONFIG_HIST_TRIGGERS off)
    by its lines in a buffer whose overrun must stay 0: a private instance's, or the
    top-level one where instances lack the event (5.10 gives them no module events)."""

    def __init__(self, event, instance="count"):
        self.event = event
        self.inst = TraceInstance(f"{instance}-{event.replace('/', '-')}", [], buffer_kb=32768)
        self.hits = None
        self.mode = "hist"

    def __enter__(self):
        self.inst.__enter__()
        if not (self.inst.dir / "events" / self.event).is_dir():
            self.inst.__exit__(None, None, None)
            self.mode, self.dir = "top", TRACEFS
            (TRACEFS / "buffer_size_kb").write_text("32768")
            (TRACEFS / "trace").write_text("")
            (TRACEFS / "events" / self.event / "enable").write_text("1")
            return self
        try:
            (self.inst.dir / "events" / self.event / "trigger").write_text("hist:keys=common_pid:vals=hitcount")
        except OSError:
            self.mode, self.dir = "buffer", self.inst.dir
            self.inst.wanted = [self.event]
            (self.inst.dir / "events" / self.event / "enable").write_text("1")
        return self

    def __exit__(self, *exc):
        if self.mode != "hist":
            overrun = sum(parse_overrun(p.read_text()) for p in (self.dir / "per_cpu").glob("cpu*/stats"))
            if self.mode == "top":
                (TRACEFS / "events" / self.event / "enable").write_text("0")
                text = (TRACEFS / "trace").read_text()
            else:
                self.inst.__exit__(*exc)
                text = self.inst.text
            self.hits = len(parse_events(text, self.event))
            assert overrun == 0, f"{self.event}: trace buffer overran by {overrun} events"
            return
        trig = self.inst.dir / "events" / self.event / "trigger"
        hist = (self.inst.dir / "events" / self.event / "hist").read_text()
        trig.write_text("!hist:keys=common_pid:vals=hitcount")
        self.inst.__exit__(*exc)
        self.hits, dropped = parse_hist_totals(hist)
        assert dropped == 0, f"{self.event}: hist trigger dropped {dropped} entries"


def parse_overrun(stats):
    """Events lost to a full ring buffer, from a per_cpu/cpuN/stats file."""
    m = re.search(r"^overrun:\s*(\d+)", stats, re.M)
    return int(m.group(1)) if m else 0


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
