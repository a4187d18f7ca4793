"""Rare events from the BPF ring buffer: decoding (pure), naming, and the lines `mnmon watch` prints."""
import ctypes
import json
from dataclasses import dataclass

from monitor.printable import printable

from monitor.read.contract import EVENT_TYPES as TYPES
from monitor.read.contract import KINDS, MODES, REAP_CALLERS, REAP_RESULTS, RESULTS
from monitor.read.contract import Event as RawEvent      # struct mnmon_event of bpf/mnmon.h


def _name(names, i):
    return names[i] if 0 <= i < len(names) else "?"


@dataclass
class Event:
    type: str
    ts_ns: int
    pid: int
    tid: int
    comm: str
    ip: int = 0
    duration_ns: int = 0
    rss_kb: int = 0
    result: int = 0
    caller: int = 0
    kind: int = 0
    domain: int = 0         # premature_victim: the OOM domain's cgroup id (0: the machine)
    first_pid: int = 0      # premature_victim: the earlier victim whose mm was held
    first_comm: str = ""

    def describe(self, resolve):
        """The event as named fields, what `mnmon watch --json` prints."""
        out = {"event": self.type, "ts_ns": self.ts_ns}
        if self.type == "notifier_failed":
            name, module = resolve(self.ip)
            out.update(notifier=name, module=module, kind=_name(KINDS, self.kind),
                       mode=_name(MODES, self.caller), result=_name(RESULTS, self.result),
                       duration_seconds=self.duration_ns / 1e9, pid=self.pid, comm=self.comm)
        elif self.type == "oom_victim":
            out.update(pid=self.pid)
            if self.comm:
                out["comm"] = self.comm
            if self.rss_kb:
                out["rss_kb"] = self.rss_kb
        elif self.type == "reap_attempt":
            out.update(victim_pid=self.pid, result=_name(REAP_RESULTS, self.result))
            if _name(REAP_RESULTS, self.result) != "skipped":      # a skip is not a call: no caller, no time
                out.update(caller=_name(REAP_CALLERS, self.caller), duration_seconds=self.duration_ns / 1e9)
            if self.ip:
                out["blocked_by"], out["blocked_by_module"] = resolve(self.ip)
        elif self.type == "reaper_gave_up":
            out.update(victim_pid=self.pid)
        elif self.type == "premature_victim":
            name, module = resolve(self.ip) if self.ip else ("unknown", "unknown")
            out.update(pid=self.pid, comm=self.comm, first_pid=self.first_pid, first_comm=self.first_comm,
                       blocked_by=name, blocked_by_module=module, first_held_seconds=self.duration_ns / 1e9,
                       domain_id=self.domain)
        elif self.type == "unpaired_start":
            out.update(unpaired=self.result, pid=self.pid, comm=self.comm)
        return out


def decode(data, size=None):
    """An Event from a ring buffer record (a pointer or bytes)."""
    if isinstance(data, (bytes, bytearray)):
        raw = RawEvent.from_buffer_copy(bytes(data[:ctypes.sizeof(RawEvent)]))
    else:
        raw = ctypes.cast(data, ctypes.POINTER(RawEvent)).contents
    return Event(type=TYPES.get(raw.type, f"type{raw.type}"), ts_ns=raw.ts_ns, pid=raw.pid, tid=raw.tid,
                 comm=raw.comm.decode(errors="replace"), ip=raw.ip, duration_ns=raw.duration_ns,
                 rss_kb=raw.rss_kb, result=raw.result, caller=raw.caller, kind=raw.kind, domain=raw.domain,
                 first_pid=raw.first_pid, first_comm=raw.first_comm.decode(errors="replace"))


def line(described, clock):
    """One `mnmon watch` line of a describe()d event: "12:00:00 oom_victim       pid=1 comm=x".
    Every value is escaped: a victim's comm is whatever the process set, newlines and
    terminal escapes included, and must not forge a line or drive the terminal."""
    d = dict(described)
    return f"{clock} {printable(d.pop('event'), True):<16} " + " ".join(
        f"{k}={printable(v, True)}" for k, v in d.items() if k != "ts_ns")


def json_line(described):
    """The event as one JSON line (`mnmon watch --json`); json escapes control characters,
    and ensure_ascii the C1 ones, so the exact comm survives on one line."""
    return json.dumps(described)
