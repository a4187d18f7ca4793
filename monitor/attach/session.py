"""mnmon's loaded BPF program: start it (facts -> plan -> compile -> attach), keep its
notifier callbacks probed, read it as one Snapshot, and deliver its rare events.

The jobs live in their own modules: loader.py compiles, attach.py attaches one probe,
watch.py keeps callbacks probed as modules come and go, readers.py reads the maps.
Nothing here prints: outcomes are ProbeStatus records and exceptions with context.
"""
import dataclasses
import os
import re
import tempfile
import time

from monitor.plan import attach_plan
from monitor.read import cgroups
from monitor.read import kubepods
from monitor.plan import coverage
from monitor.read import events
from monitor.kernel import facts as kernel
from monitor.kernel import layout
from monitor.attach import loader
from monitor.attach import memory
from monitor.read import reading
from monitor.read import readers
from monitor.attach.probe import ProbeStatus, attach_spec, disabled  # noqa: F401 -- ProbeStatus is public here
from monitor.kernel.symbols import Symbols
from monitor.attach.callback_watch import CallbackWatcher
from monitor.attach.latency_windows import LatencyWindows, moved

# refresh() hands malloc's free heap back every this many calls (a minute at 5 s), and at
# once when RSS has grown by this much since the last time (memory.Trimmer says why).
TRIM_EVERY = 12
TRIM_GROWTH_KB = 2048
# process_mrelease's syscall functions: the arch wrappers (__x64_sys_..., __arm64_sys_...),
# __se_sys_ and __do_sys_ where not inlined, plain sys_ on architectures without wrappers.
MRELEASE_FUNCS = re.compile(r"(__[a-z0-9]+_sys|__do_sys|__se_sys|sys)_process_mrelease")


class MonitorError(Exception):
    """mnmon cannot run here; the message says why and what would fix it."""


class Monitor:
    """The loaded program, what is attached, and the maps to read."""

    def __init__(self, bpf, facts, plan, symbols, statuses, started_at=0.0):
        self.bpf, self.facts, self.plan = bpf, facts, plan
        self.statuses = statuses                   # planned probe name -> ProbeStatus
        self.started_at = started_at               # when the core probes attached (time.time())
        self.coverage = coverage.of(plan, statuses)   # what this run measures, decided once
        self.watcher = CallbackWatcher(bpf, symbols, probe_ends=plan.probe_ends,
                                       core_ends=self.coverage.ends and self.coverage.walked,
                                       fentry=plan.callback_fentry_off is None,
                                       sampled=plan.sampled) if bpf is not None else None
        # probes.latency: sampled: the callbacks' timing probes in windows, opened by refresh();
        # always: one window held open from the start (the share of time timed reads 1)
        # (a window opens only when a core start ran since the last one: nothing to time else)
        self.windows = LatencyWindows(self.watcher.set_timing, busy=moved(lambda: readers.core_starts(bpf))) \
            if plan.sampled and bpf is not None else None
        if self.windows and getattr(plan, "timed_always", False):
            self.windows.hold()
        self.cgroups = cgroups.CgroupNames()
        self.failures = reading.Failures()
        self._user_lost = 0
        self._trimmer = memory.Trimmer(TRIM_EVERY, TRIM_GROWTH_KB)

    @classmethod
    def start(cls, disable=(), force=None, inflight=None, callbacks=None, lean=False, latency="full"):
        """Compile and attach. Raises MonitorError when nothing useful can run.

        force: {probe: "fentry" | "kprobe"}, inflight: "task-storage" | "hash" and
        callbacks: "fentry" | "kprobe" (how notifier callbacks are probed), lean (the
        lean configuration) and latency ("sampled", "always", "off", "full": every probe, the
        default here; serve's is sampled), passed to attach_plan.plan(). With latency sampled,
        windows opens and closes the callbacks' timing probes as refresh() is called
        (windows.hold() keeps them on, as latency always does from the start).
        """
        try:
            bcc, _ = loader.import_bcc()
            if not kernel.privileged():
                raise MonitorError("mnmon needs root, or CAP_BPF and CAP_PERFMON "
                                   "(CAP_SYS_ADMIN on kernels before 5.8)")
            symbols = Symbols.load()
            facts = _gather(bcc, symbols)
        except (loader.LoadError, ValueError) as e:
            raise MonitorError(str(e)) from None
        bpf, plan, statuses = compile_and_attach(facts, symbols, dict(force or {}), inflight, callbacks, lean, disable,
                                                 latency)
        # bcc and libbpf print why an attach failed; the ProbeStatus says it once.
        with loader.stderr_to(tempfile.TemporaryFile()):
            mon = cls(bpf, facts, plan, symbols, statuses, started_at=time.time())
            if statuses.get("notifier_release") and statuses["notifier_release"].attached:
                # mm teardown's walk counts interval calls outside a start (attribute.bpf.c)
                t = bpf[b"release_walked"]
                t[t.Key(0)] = t.Leaf(1)
            if statuses.get("list_failure_log") and statuses["list_failure_log"].attached:
                # a failed start with no list failure logged failed in its interval pass
                t = bpf[b"failure_log_on"]
                t[t.Key(0)] = t.Leaf(1)
            mon.refresh()
        memory.release_compiler_memory(bpf)      # ~130 MB of the compile's RSS
        return mon

    # ------------------------------------------------------------ callbacks
    @property
    def symbols(self):
        return self.watcher.symbols

    @property
    def callbacks(self):
        """(symbol, module) -> watch.Probed: every notifier callback mnmon knows."""
        return self.watcher.callbacks

    def is_attached(self, symbol, module=None):
        """Whether the probes of this notifier callback are attached."""
        return self.watcher.is_attached(symbol, module)

    def refresh(self):
        """Attach callbacks found since last time (watch.CallbackWatcher.refresh). Cheap when
        nothing changed; the daemon calls it every few seconds."""
        # Scrapes free megabytes of buffers (the exposition, gzip, map reads) that glibc
        # keeps in its free lists; given back once a minute at the default interval, or
        # sooner after a burst, RSS stays flat instead of creeping up by tens of MB over
        # hours of scrapes. (0.2 ms a trim on real CPUs; every refresh cost a fifth of its
        # CPU emulated. The check is one read of /proc/self/statm.)
        # After the refresh: what attaching callbacks left resident goes back too.
        found = [] if self.coverage.callbacks else self.watcher.refresh()   # none can attach (or lean)
        if self.windows:
            self.windows.tick()
        self._trimmer.tick()
        return found

    def all_statuses(self):
        """Planned probes' and callbacks' ProbeStatus, as mnmon_probe_attached shows them."""
        return list(self.statuses.values()) + self.watcher.statuses()

    # ------------------------------------------------------------ reading
    def snapshot(self):
        """The numbers now, as one Snapshot (monitor/read/readers.py lists the series)."""
        ctx = readers.Context(self.watcher.resolve, tuple(self.watcher.attached()), self.coverage, self.cgroup_path,
                              extra_lost=lambda: self._user_lost + self._kretprobe_misses())
        snap = reading.collect(lambda maps: readers.read_raw(self.bpf, maps), ctx, self.failures)
        readers.probes_attached(snap, self.all_statuses())
        if self.windows:
            snap.set("mnmon_latency_sampled_ratio", self.windows.share())
        return snap

    def open_events(self, callback):
        """Deliver rare events (monitor.read.events.Event) to callback from poll_events()."""
        def raw(_ctx, data, size):
            callback(events.decode(data, size))
        if self.plan.ring_buffer:
            self.bpf[b"events"].open_ring_buffer(raw)
        else:
            self.bpf[b"events"].open_perf_buffer(lambda cpu, data, size: raw(None, data, size),
                                                lost_cb=self._lost)

    def cgroup_path(self, cgroup_id):
        """A victim's cgroup path; when its directory is gone, what BPF read of its name:
        '.../parent/leaf'."""
        path = self.cgroups.path(cgroup_id)
        if path != "unknown":
            return path
        try:
            t = self.bpf[b"cgroup_names"]
            names = t[t.Key(cgroup_id)]
        except KeyError:
            return path
        leaf, parent = names.leaf.decode(errors="replace"), names.parent.decode(errors="replace")
        return f".../{parent}/{leaf}" if parent else f".../{leaf}" if leaf else path

    def describe(self, event):
        """An event as `mnmon watch --json` prints it: callbacks named, victims with their cgroup
        (and the pod and container where its path says so)."""
        out = event.describe(self.watcher.resolve)
        if "victim_pid" in out or event.type in ("oom_victim", "premature_victim"):
            out.update(self._victim_cgroup(out.get("victim_pid", out.get("pid"))))
        if event.type == "premature_victim":
            # Both victims named: the earlier one is alive (its mm held), /proc has its comm
            # where the tracepoint had none (before 6.9 and its stable backports).
            first = self._victim_cgroup(event.first_pid)
            out["first_cgroup"] = first.get("cgroup", "unknown")
            for key, pid in (("comm", event.pid), ("first_comm", event.first_pid)):
                out[key] = out.get(key) or _proc_comm(pid)
            domain = out.pop("domain_id")
            out["domain"] = "machine" if domain == 0 else self.cgroup_path(domain)
        return out

    def _victim_cgroup(self, pid):
        try:
            t = self.bpf[b"victim_cgroup"]
            cgroup_id = t[t.Key(pid)].value
        except KeyError:        # not recorded (yet), or this program has no such map
            return {}
        if not cgroup_id:
            return {}
        path = self.cgroup_path(cgroup_id)
        return {"cgroup": path, **kubepods.workload(path)}

    def poll_events(self, timeout_ms=1000):
        if self.plan.ring_buffer:
            self.bpf.ring_buffer_poll(timeout_ms)
        else:
            self.bpf.perf_buffer_poll(timeout_ms)

    def _lost(self, n):
        self._user_lost += n

    def _kretprobe_misses(self):
        """Returns our kretprobes missed (all instances busy): counted as lost events."""
        tfs = kernel.tracefs(mount=False)
        try:
            text = (tfs / "kprobe_profile").read_text() if tfs else ""
        except OSError:
            return 0
        return sum(int(line.split()[2]) for line in text.splitlines()
                   if line.split() and line.split()[0].endswith(f"_bcc_{os.getpid()}"))

    def close(self):
        if self.watcher and self.watcher.mf:
            self.watcher.mf.close()        # fentry links on callbacks: their modules may unload again
        self.bpf.cleanup()


def _proc_comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().rstrip("\n")
    except OSError:
        return ""


def _mark_mrelease_text(bpf, symbols):
    """Where process_mrelease's code is, for the reap probes to tell its calls (bpf/oom.bpf.c)."""
    table = bpf[b"mrelease_text"]
    for i, (lo, hi) in enumerate(symbols.extents(MRELEASE_FUNCS)[:len(table)]):
        table[table.Key(i)] = table.Leaf(lo, hi)


def start_monitor(disable=(), callbacks=None, lean=False, latency="full"):
    return Monitor.start(disable=disable, callbacks=callbacks, lean=lean, latency=latency)


def compile_and_attach(facts, symbols, force, inflight, callbacks, lean, disable, latency="full"):
    """(bpf, plan, {probe: ProbeStatus}): the plan compiled and its probes attached, but
    those in disable. MonitorError when it cannot compile or what was asked cannot run."""
    def attempt(force):
        try:
            plan = attach_plan.plan(facts, force, inflight, callbacks, lean, latency)
            bpf = loader.compile_program(plan, facts)
        except (loader.LoadError, ValueError) as e:       # ValueError: what was asked cannot run here
            raise MonitorError(str(e)) from None
        return bpf, plan, _attach_planned(bpf, plan, symbols, disable)

    bpf, plan, statuses = attempt(force)
    retry = plan.fallbacks(statuses)
    if not retry:
        return bpf, plan, statuses
    # An fentry the kernel refused after all: its kprobe flavour needs a compile of its own.
    bpf.cleanup()
    failed = statuses
    bpf, plan, statuses = attempt({**force, **retry})
    for probe in retry:
        if statuses[probe].attached:
            statuses[probe].reason = f"fentry refused ({failed[probe].reason}): kprobe stands in"
    return bpf, plan, statuses


def _attach_planned(bpf, plan, symbols, disable):
    """{probe: ProbeStatus} of attaching plan's probes, but those in disable, to bpf. Where
    the compile left out the kprobe flavour (Plan.kprobe_twins), fentry is the only try."""
    _mark_mrelease_text(bpf, symbols)
    statuses = {}
    # bcc and libbpf print why an attach failed; the ProbeStatus says it once. (Not around
    # the compile: mnmon's own log lines from it must reach the log.)
    with loader.stderr_to(tempfile.TemporaryFile()):
        for spec in plan.probes:
            if spec.probe in disable:
                statuses[spec.probe] = disabled(spec.probe)
                continue
            if not plan.kprobe_twins and spec.methods[:1] == (attach_plan.FENTRY,):
                spec = dataclasses.replace(spec, methods=spec.methods[:1])
            statuses[spec.probe] = attach_spec(bpf, spec)
    return statuses


def inspect_host(lean=False, latency="full"):
    """(KernelFacts, Plan) of this host, without compiling or attaching anything."""
    try:
        bcc, _ = loader.import_bcc()
    except loader.LoadError as e:
        raise MonitorError(str(e)) from None
    facts = _gather(bcc, Symbols.load())
    try:
        return facts, attach_plan.plan(facts, lean=lean, latency=latency)
    except ValueError as e:
        raise MonitorError(str(e)) from None


def _gather(bcc, symbols):
    """This host's KernelFacts, with what the imported bcc can do."""
    facts = kernel.gather(symbols, kfunc_support=lambda: loader.kfunc_support(bcc, symbols),
                          bcc_version=getattr(bcc, "__version__", ""))
    found, why = layout.read(facts.headers)
    return dataclasses.replace(facts, layout=found, layout_error=why)
