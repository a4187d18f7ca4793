"""Compiling mnmon's BPF program, attaching it as the plan says, and keeping
notifier callbacks attached as they are discovered.

Nothing here prints: outcomes are ProbeStatus records and exceptions with context.
"""
import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from monitor import attach_plan, discovery, events, headers, kernel, memory, readers
from monitor.symbols import Symbols

BPF_DIR = Path(os.environ.get("MNMON_BPF_DIR", Path(__file__).resolve().parent.parent / "bpf")).resolve()
# kretprobe instances per callback: sleeping notifiers on many threads hold one each.
MAXACTIVE = 256
# refresh() hands malloc's free heap back every this many calls (a minute at 5 s).
TRIM_EVERY = 12
# process_mrelease's syscall functions: the arch wrappers (__x64_sys_..., __arm64_sys_...),
# __se_sys_ and __do_sys_ where not inlined, plain sys_ on architectures without wrappers.
MRELEASE_FUNCS = re.compile(r"(__[a-z0-9]+_sys|__do_sys|__se_sys|sys)_process_mrelease")


class MonitorError(Exception):
    """mnmon cannot run here; the message says why and what would fix it."""


@dataclass
class ProbeStatus:
    probe: str
    method: str          # what attached, or what was tried last
    attached: bool
    reason: str = ""
    disabled: bool = False   # left off by configuration (probes.disable), not by the kernel


def _bcc():
    try:
        import bcc
    except ImportError as e:
        raise MonitorError(f"bcc is not importable ({e}): install python3-bpfcc") from None

    class NoAutoload(bcc.BPF):
        # bcc attaches every kfunc__ program on load and one refusal aborts the
        # whole load; mnmon attaches each probe itself, with its fallbacks.
        def _trace_autoload(self):
            pass
    return bcc, NoAutoload


class Monitor:
    """The loaded program, what is attached, and the maps to read."""

    def __init__(self, bpf, facts, plan, symbols, statuses):
        self.bpf, self.facts, self.plan, self.symbols = bpf, facts, plan, symbols
        self.statuses = statuses                   # probe name -> ProbeStatus
        self.callbacks = {}                        # (symbol, module) -> (Callback, addr)
        self.scanner = discovery.BTFScanner()
        self._modules = None                       # {module: state} at the last BTF scan; None: none yet
        self._user_lost = 0
        self._refreshes = 0

    @classmethod
    def start(cls, disable=(), force=None, inflight=None):
        """Compile and attach. Raises MonitorError when nothing useful can run.

        force: {probe: "fentry" | "kprobe"} and inflight: "task-storage" | "hash",
        passed to attach_plan.plan().
        """
        bcc, NoAutoload = _bcc()
        if not kernel.privileged():
            raise MonitorError("mnmon needs root, or CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8)")
        symbols = Symbols.load()
        facts = _gather(bcc, symbols)
        with _stderr_to(tempfile.TemporaryFile()) as noise:
            try:
                return cls._start(bcc, NoAutoload, symbols, facts, disable, force, inflight)
            except MonitorError as e:
                noise.seek(0)
                detail = noise.read().decode(errors="replace").strip().splitlines()
                raise MonitorError(f"{e}{': ' + detail[0] if detail else ''}") from None

    @classmethod
    def _start(cls, bcc, NoAutoload, symbols, facts, disable, force=None, inflight=None):
        if facts.headers == "none":
            raise MonitorError(f"no kernel headers for {facts.release}: bcc cannot compile "
                               f"(apt-get install linux-headers-{facts.release})")
        plan = attach_plan.plan(facts, force, inflight)
        if facts.headers == "other":
            # Tracepoint programs compile against any headers; struct readers are off (HAVE_STRUCTS=0).
            try:
                os.environ["BCC_KERNEL_SOURCE"] = str(headers.usable_headers(facts.headers_dir))
            except (OSError, headers.HeadersError) as e:
                raise MonitorError(f"no usable kernel headers for {facts.release}: {e}") from None
        try:
            bpf = NoAutoload(text=compile_unit().encode(), cflags=plan.cflags + [f"-I{BPF_DIR}"])
        except Exception as e:      # bcc raises bare Exception on compile errors
            raise MonitorError(f"BPF program did not compile: {e}") from None
        _mark_mrelease_text(bpf, symbols)
        statuses = {}
        for spec in plan.probes:
            if spec.probe in disable:
                statuses[spec.probe] = ProbeStatus(spec.probe, "", False, "disabled by configuration", disabled=True)
            else:
                statuses[spec.probe] = _attach(bpf, spec)
        mon = cls(bpf, facts, plan, symbols, statuses)
        mon.refresh()
        memory.release_compiler_memory(bpf)      # ~130 MB of the compile's RSS
        return mon

    # ------------------------------------------------------------ discovery
    def refresh(self):
        """Attach callbacks found since last time: in BTF of new modules, at registration.
        Cheap when nothing changed; the daemon calls it every few seconds."""
        # Scrapes free megabytes of buffers (the exposition, gzip, map reads) that glibc
        # keeps in its free lists; given back once a minute at the default interval,
        # RSS stays flat instead of creeping up by tens of MB over hours of scrapes.
        # (0.2 ms a trim on real CPUs; every refresh cost a fifth of its CPU emulated.)
        self._refreshes += 1
        if self._refreshes % TRIM_EVERY == 0:
            memory.malloc_trim()
        if self.plan.callbacks:
            return []
        modules = _read_modules()
        found = []
        # New BTF appears only with a new module: /sys/kernel/btf is listed again only then.
        if modules != self._modules:
            if self._modules is not None:      # start() has just read kallsyms
                self.symbols = Symbols.load()
                for gone in set(self._modules) - set(modules):
                    self.scanner.forget(gone)
                    self._drop_module(gone)
            self._modules = modules
            found = self.scanner.scan()
        table = self.bpf[b"discovered"]
        for k, v in table.items():
            name, module = self.symbols.resolve(k.value)
            if name == "unknown":       # a module loaded after our kallsyms read
                self.symbols = Symbols.load()
                name, module = self.symbols.resolve(k.value)
            found.append(discovery.Callback(name, module, v.value))
        return [st for cb in found if (st := self.attach_callback(cb))]

    def attach_callback(self, cb):
        """Probe one callback; returns its ProbeStatus, or None if it already was."""
        key = (cb.symbol, cb.module)
        sym = self.symbols.lookup(cb.symbol)
        if key in self.callbacks or cb.symbol == "unknown":
            return None
        probe = f"notifier:{cb.symbol}"
        if sym is None or sym.module != cb.module:
            st = ProbeStatus(probe, attach_plan.KPROBE, False, "not in kallsyms")
        else:
            entry, ret = {discovery.LIST: ("cb_list_entry", "cb_list_return"),
                          discovery.INTERVAL: ("cb_interval_entry", "cb_interval_return"),
                          discovery.LIST_END: ("cb_list_end", None)}[cb.kind]
            try:
                self.bpf.attach_kprobe(event=_b(cb.symbol), fn_name=_b(entry))
                if ret:
                    self.bpf.attach_kretprobe(event=_b(cb.symbol), fn_name=_b(ret), maxactive=MAXACTIVE)
                if cb.kind == discovery.LIST_END:
                    t = self.bpf[b"probed_end_fns"]
                    t[t.Key(sym.addr)] = t.Leaf(1)
                st = ProbeStatus(probe, attach_plan.KPROBE, True)
            except Exception as e:
                st = ProbeStatus(probe, attach_plan.KPROBE, False, str(e))
        self.callbacks[key] = (cb, sym.addr if sym else 0)
        self.statuses[probe] = st
        return st

    def _drop_module(self, module):
        # The kernel removed the kprobes with the module's text; forget them so a reload re-attaches.
        for key in [k for k in self.callbacks if k[1] == module]:
            cb, _ = self.callbacks.pop(key)
            for fn in (cb.symbol,):
                for detach in (self.bpf.detach_kprobe, self.bpf.detach_kretprobe):
                    try:
                        detach(event=_b(fn))
                    except Exception:
                        pass
            self.statuses.pop(f"notifier:{cb.symbol}", None)

    def snapshot(self):
        """The numbers now, as one Snapshot (monitor/readers.py lists the series)."""
        cbs = [(cb.symbol, cb.module, cb.kind_name) for cb, _ in self.callbacks.values()
               if self.statuses.get(f"notifier:{cb.symbol}") and self.statuses[f"notifier:{cb.symbol}"].attached]
        snap = readers.build_snapshot(readers.read_raw(self.bpf), self.symbols.resolve, cbs,
                                      list(self.statuses.values()))
        snap.add("mnmon_events_lost_total", self._user_lost + self._kretprobe_misses())
        return snap

    def open_events(self, callback):
        """Deliver rare events (monitor.events.Event) to callback from poll_events()."""
        def raw(_ctx, data, size):
            callback(events.decode(data, size))
        if self.facts.version >= (5, 8):
            self.bpf[b"events"].open_ring_buffer(raw)
        else:
            self.bpf[b"events"].open_perf_buffer(lambda cpu, data, size: raw(None, data, size),
                                                lost_cb=self._lost)
        self._events_open = True

    def poll_events(self, timeout_ms=1000):
        if self.facts.version >= (5, 8):
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
        self.bpf.cleanup()


def _mark_mrelease_text(bpf, symbols):
    """Where process_mrelease's code is, for the reap probes to tell its calls (bpf/oom.bpf.c)."""
    table = bpf[b"mrelease_text"]
    for i, (lo, hi) in enumerate(symbols.extents(MRELEASE_FUNCS)[:len(table)]):
        table[table.Key(i)] = table.Leaf(lo, hi)


def _attach(bpf, spec):
    """Attach one planned probe, trying its methods in order; a method that half
    attached is rolled back before the next is tried (no double counting)."""
    if not spec.methods:
        return ProbeStatus(spec.probe, "", False, spec.reason)
    errors = []
    for method in spec.methods:
        if method == attach_plan.ATTEMPT_COUNT:
            return ProbeStatus(spec.probe, method, True)     # lives inside the oom tracepoint programs
        entry, ret = spec.programs[method]
        done = []
        try:
            for target in spec.targets:
                for fn, is_ret in attach_order(entry, ret):
                    if fn:
                        _attach_one(bpf, method, target, fn, is_ret)
                        done.append((method, target, fn, is_ret))
            return ProbeStatus(spec.probe, method, True)
        except Exception as e:
            for d in done:
                _detach_one(bpf, *d)
            errors.append(f"{method}: {_explain(e)}")
    return ProbeStatus(spec.probe, spec.methods[-1], False, "; ".join(errors))


def attach_order(entry, ret):
    """((program, is_ret), ...): the return program first. An entry attached alone would
    leave in flight the calls it sees, which the BPF side counts as lost at the thread's
    next call; a return without its entry ignores the call."""
    return ((ret, True), (entry, False))


def _attach_one(bpf, method, target, fn, is_ret):
    if method == attach_plan.FENTRY:
        (bpf.attach_kretfunc if is_ret else bpf.attach_kfunc)(fn_name=_b(fn))
    elif method == attach_plan.KPROBE:
        if is_ret:
            bpf.attach_kretprobe(event=_b(target), fn_name=_b(fn), maxactive=MAXACTIVE)
        else:
            bpf.attach_kprobe(event=_b(target), fn_name=_b(fn))
    else:
        bpf.attach_tracepoint(tp=_b(target), fn_name=_b(fn))


def _detach_one(bpf, method, target, fn, is_ret):
    try:
        if method == attach_plan.FENTRY:
            (bpf.detach_kretfunc if is_ret else bpf.detach_kfunc)(fn_name=_b(fn))
        elif method == attach_plan.KPROBE:
            (bpf.detach_kretprobe if is_ret else bpf.detach_kprobe)(event=_b(target))
        else:
            bpf.detach_tracepoint(tp=_b(target))
    except Exception:
        pass        # it was not attached after all


def _b(text):
    """bcc wants bytes (it warns on str, and echoes the whole program text)."""
    return text.encode()


def _explain(exc):
    msg = str(exc)
    # bcc says this for any EPERM; as root it means the kernel refuses the attach itself.
    if "super-user" in msg and os.geteuid() == 0:
        return "refused by the kernel (EPERM) although running as root"
    return msg


def start_monitor(disable=()):
    return Monitor.start(disable=disable)


def inspect_host():
    """(KernelFacts, Plan) of this host, without compiling or attaching anything."""
    bcc, _ = _bcc()
    facts = _gather(bcc, Symbols.load())
    return facts, attach_plan.plan(facts)


def _gather(bcc, symbols):
    """This host's KernelFacts, with what the imported bcc can do."""
    return kernel.gather(symbols, kfunc_support=bcc.BPF.support_kfunc, bcc_version=getattr(bcc, "__version__", ""))


@contextlib.contextmanager
def _stderr_to(sink):
    """Send C-level stderr (bcc's and libbpf's messages) to sink while attaching:
    what failed is reported once, in a ProbeStatus or MonitorError, not as noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
        yield sink
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def compile_unit(main=None):
    """bpf/mnmon.bpf.c with its concern files (#include "x.bpf.c") put in place.

    bcc rewrites map calls (.lookup, .atomic_increment...) and makes programs only
    in the main file it is given, so the concern files must be part of it. Headers
    (.h) stay includes.
    """
    main = Path(main or BPF_DIR / "mnmon.bpf.c")
    out = []
    for line in main.read_text().splitlines(keepends=True):
        m = re.match(r'#include "([\w.]+\.bpf\.c)"', line)
        out.append((main.parent / m.group(1)).read_text() if m else line)
    return "".join(out)


def _read_modules():
    """{module: state} of /proc/modules. A module is listed as Loading before its BTF is in
    /sys/kernel/btf; its turn to Live is a change too, so its BTF gets scanned."""
    try:
        lines = Path("/proc/modules").read_text().splitlines()
    except OSError:
        return {}
    return {f[0]: f[4] if len(f) > 4 else "" for f in (line.split() for line in lines) if f}
