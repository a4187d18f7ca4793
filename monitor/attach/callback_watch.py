"""Keeping notifier callbacks probed as they come and go: found in BTF of modules as they
load, at registration, and in mms' subscriptions (bpf/attribute.bpf.c); dropped and found
again when their module is unloaded or reloaded.

Until a callback's probes are attached, the core probes count its calls: a callback probe
adds what only it can see (latency, which of several notifiers failed), never the count.

A callback is probed by fentry/fexit where its module has BTF (5.11+; a trampoline hit
costs less than half a kprobe's), else by kprobe: chosen per callback, the fallback's
reason kept in its ProbeStatus. A module whose callbacks have fentry programs cannot be
unloaded while they are attached (the kernel holds a reference for each trampoline);
the plan's callbacks=kprobe keeps every module unloadable.
"""
import ctypes
import os
import time
from dataclasses import dataclass
from pathlib import Path

from monitor.attach import probe as attach
from monitor.attach import discovery
from monitor.read import readers
from monitor.plan.attach_plan import FENTRY, KPROBE
from monitor.attach.module_fentry import ModuleFentry, ModuleFentryError

# The method of a callback whose calls the core probes count with no probe of its own.
CORE = "core"
from monitor.kernel.symbols import UNKNOWN, Symbols


@dataclass
class Probed:
    """One callback mnmon knows, and its probe."""
    callback: discovery.Callback
    addr: int                   # its function's address (0: not in kallsyms)
    status: attach.ProbeStatus
    since: float                # when its probe attached (time.time()); 0: not attached
    links: tuple = ()           # its fentry/fexit links (status.method == FENTRY)
    live: bool = True           # its probes are attached now (sampled latency: in a window)
    suspended: tuple = ()       # its fentry programs, loaded, while detached between windows

    @property
    def probe(self):
        return self.status.probe


class CallbackWatcher:
    """The callbacks of one loaded program: callbacks[(symbol, module)] -> Probed."""

    def __init__(self, bpf, symbols, scanner=None, proc_modules="/proc/modules", probe_ends=True,
                 fentry=False, module_fentry=None, core_ends=True, sampled=False):
        self.bpf, self.symbols = bpf, symbols
        self.scanner = scanner or discovery.BTFScanner()
        self.callbacks = {}
        self.probe_ends = probe_ends        # False: the core probes count every end (plan.probe_ends)
        self.core_ends = core_ends          # ... and they attached: they do count them
        # fentry first where BTF allows (plan.callback_fentry_off is None); the vmlinux BTF is the scanner's
        self.fentry = fentry
        self.mf = module_fentry or (ModuleFentry(vmlinux=self.scanner.base) if fentry else None)
        self._proc_modules = proc_modules
        self._modules = None                # {module: (state, load, address)} at the last scan; None: none yet
        self._names = {}                    # ip -> (symbol, module) of unloaded modules' callbacks
        self._unresolved = set()            # discovered addresses kallsyms did not name
        # Sampled latency: callbacks' probes time calls only in windows (set_timing); the
        # walk counts them. A callback found outside a window is attached once, to learn
        # how it attaches or why not, and detached.
        self.timing = not sampled

    # ------------------------------------------------------------ queries
    def is_attached(self, symbol, module=None):
        return any(p.status.attached for (s, m), p in self.callbacks.items()
                   if s == symbol and module in (None, m))

    def statuses(self):
        return [p.status for p in self.callbacks.values()]

    def attached(self):
        """[(symbol, module, kind name)] of callbacks whose probes are attached."""
        return [(p.callback.symbol, p.callback.module, p.callback.kind_name)
                for p in self.callbacks.values() if p.status.attached]

    def resolve(self, ip):
        """(symbol, module) of a counted address, also of a module unloaded since."""
        sym = self.symbols.find(ip)
        if sym is None:
            return self._names.get(ip, UNKNOWN)
        return sym.name, sym.module

    # ------------------------------------------------------------ discovery
    def refresh(self):
        """Attach callbacks found since last time; returns their ProbeStatus. Cheap when
        nothing changed; the daemon calls it every few seconds."""
        # Only modules with probed callbacks need telling reloads apart (a stat each).
        modules = read_modules(self._proc_modules, watched={m for _, m in self.callbacks})
        found = []
        # New BTF appears only with a new module: /sys/kernel/btf is listed again only then.
        # A reload under the same name is a new /sys/module/NAME.
        if modules != self._modules:
            if self._modules is not None:      # the caller has just read kallsyms
                old = self._modules
                gone = (set(old) - set(modules)) | {
                    m for m in modules if m in old and any(new and was and new != was
                                                           for new, was in zip(modules[m][1:], old[m][1:]))}
                if gone:
                    # Their counts stay theirs: name the addresses before kallsyms forgets them.
                    self._remember_names(gone)
                self.symbols = Symbols.load()
                for module in gone:
                    self.scanner.forget(module)
                    self._drop_module(module)
            self._modules = modules
            found = self.scanner.scan()
        found += self._discovered()
        self._note_loads({cb.module for cb in found})
        return [st for cb in found if (st := self.attach_callback(cb))]

    def _note_loads(self, modules):
        """Which load of each module is about to be probed, for modules nothing probed at the
        last read: a reload often lands at the same address, and only the load tells it then.
        Noted before the probes attach: a reload in between shows as one at the next refresh."""
        for m in modules:
            if m in self._modules and not self._modules[m][1]:
                state, _, address = self._modules[m]
                self._modules[m] = (state, module_load(m), address)

    def _discovered(self):
        """Callbacks the BPF side found (at registration, in subscriptions) since last time."""
        table, out = self.bpf[b"discovered"], []
        for k, v in table.items():
            ip = k.value
            sym = self.symbols.find(ip)
            if sym is None and ip not in self._unresolved:   # loaded after our kallsyms read?
                self.symbols = Symbols.load()
                sym = self.symbols.find(ip)
                if sym is None:
                    self._unresolved.add(ip)
            try:        # handled: the BPF side adds it again only while nothing probes it
                del table[k]
            except KeyError:
                pass
            if sym is not None:         # a callback with no name cannot be probed
                kind, how = discovery.decode_discovered(v.value)
                out.append(discovery.Callback(sym.name, sym.module, kind, how))
        return out

    def attach_callback(self, cb):
        """Probe one callback; returns its ProbeStatus, or None if it already was."""
        key = (cb.symbol, cb.module)
        if key in self.callbacks:
            return None
        sym = self.symbols.lookup(cb.symbol)
        probe = f"notifier:{cb.symbol}"
        since, links = 0.0, ()
        if cb.kind == discovery.LIST_END and not self.probe_ends:
            # Counted by the core probes (attribute.bpf.c): no probe of its own needed.
            if self.core_ends:
                st, since = attach.ProbeStatus(probe, CORE, True), time.time()
            else:
                st = attach.ProbeStatus(probe, CORE, False, "counted by the core probes, which did not attach")
        elif sym is None or sym.module != cb.module:
            st = attach.ProbeStatus(probe, KPROBE, False, "not in kallsyms")
        else:
            st, since, links = self._attach(cb, sym.addr, probe)
            if st.attached and cb.kind == discovery.LIST_END:      # its starts can be checked for pairing
                t = self.bpf[b"probed_end_fns"]
                t[t.Key(sym.addr)] = t.Leaf(1)
        p = self.callbacks[key] = Probed(cb, sym.addr if sym else 0, st, since, tuple(links))
        if not self.timing and self._timed(p):
            self._detach(p)
        return st

    # ------------------------------------------------------------ sampled latency
    def set_timing(self, on):
        """Attach (on) or detach the probes of every callback that times calls."""
        self.timing = on
        for p in list(self.callbacks.values()):
            if self._timed(p) and p.live != on:
                self._reattach(p) if on else self._detach(p)

    @staticmethod
    def _timed(p):
        return p.status.attached and p.status.method in (FENTRY, KPROBE)

    def _detach(self, p):
        if p.status.method == KPROBE:
            attach.detach_callback(self.bpf, p.callback.kind_name, p.callback.symbol)
        # fentry programs stay loaded: loading one runs the verifier, attaching it again does not
        p.suspended = tuple(self.mf.suspend(link) for link in p.links)
        p.links, p.live = (), False

    def _reattach(self, p):
        cb = p.callback
        try:
            if p.status.method == FENTRY:
                p.links = self._resume(p) or tuple(attach.attach_callback_fentry(
                    self.mf, self.bpf, cb.kind_name, cb.symbol, cb.module, p.addr))
            else:
                attach.attach_callback(self.bpf, cb.kind_name, cb.symbol)
            p.live = True
        except Exception:       # noqa: BLE001 -- its module went away: the next refresh drops it
            p.live = False

    def _resume(self, p):
        """The suspended programs' new links; () where the kernel would not attach them again
        (5.10 attaches a tracing program once), which are then unloaded."""
        progs, p.suspended, links = p.suspended, (), []
        for i, prog in enumerate(progs):
            try:
                links.append(self.mf.resume(prog))
            except ModuleFentryError:
                for link in links:
                    self.mf.detach(link)
                for rest in progs[i + 1:]:
                    self.mf.unload(rest)
                return ()
        return tuple(links)

    def _attach(self, cb, addr, probe):
        """(ProbeStatus, since, fentry links): fentry where it can attach, else kprobe, with
        why not fentry in the status's reason."""
        why = ""
        if self.fentry:
            try:
                links = attach.attach_callback_fentry(self.mf, self.bpf, cb.kind_name, cb.symbol, cb.module, addr)
                return attach.ProbeStatus(probe, FENTRY, True), time.time(), links
            except ModuleFentryError as e:
                why = f"fentry: {e}"
        try:
            attach.attach_callback(self.bpf, cb.kind_name, cb.symbol)
            return attach.ProbeStatus(probe, KPROBE, True, why), time.time(), ()
        except Exception as e:      # noqa: BLE001 -- bcc raises bare Exception
            err = ctypes.get_errno()    # bcc's, as attach.explain wants it
            return attach.ProbeStatus(probe, KPROBE, False,
                                      "; ".join(filter(None, (why, attach.explain(e, err))))), 0.0, ()

    # ------------------------------------------------------------ module unloads
    def _drop_module(self, module):
        # The kernel removed the kprobes with the module's text; forget them so a reload re-attaches.
        for key in [k for k in self.callbacks if k[1] == module]:
            p = self.callbacks.pop(key)
            if p.callback.kind == discovery.LIST_END:
                t = self.bpf[b"probed_end_fns"]
                try:
                    del t[t.Key(p.addr)]
                except KeyError:
                    pass
            if p.status.attached and p.status.method == KPROBE and p.live:
                attach.detach_callback(self.bpf, p.callback.kind_name, p.callback.symbol)
            for link in p.links:
                self.mf.detach(link)
            for prog in p.suspended:
                self.mf.unload(prog)
        if self.mf:
            self.mf.forget(module)

    def _remember_names(self, modules):
        """Name every counted address in these modules with the kallsyms that knew them."""
        for ip in readers.counted_addresses(readers.read_raw(self.bpf)):
            name, module = self.symbols.resolve(ip)
            if module in modules:
                self._names[ip] = (name, module)


def read_modules(path="/proc/modules", watched=None):
    """{module: (state, load, address)} of /proc/modules. A module is listed as Loading before
    its BTF is in /sys/kernel/btf; its turn to Live is a change too, so its BTF gets scanned. A
    reload under the same name has a new /sys/module/NAME (a new inode), maybe at the same
    address: load is that inode for the watched modules (all when watched is None), else 0.
    A reload at another address changes address: the names kallsyms gave its old text are
    wrong now, also for a module nothing probes yet (a callback discovered there next)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for f in (line.split() for line in lines):
        if f:
            load = module_load(f[0]) if watched is None or f[0] in watched else 0
            out[f[0]] = (f[4] if len(f) > 4 else "", load, f[5] if len(f) > 5 else "")
    return out


def module_load(name):
    """The inode of /sys/module/NAME: new with each load of the module; 0 if none."""
    try:
        return os.stat(f"/sys/module/{name}").st_ino
    except OSError:
        return 0


def counting_lines(callbacks, walked, started_at):
    """`mnmon doctor`'s per-notifier lines: how each callback was found, since when its calls
    are counted and since when timed. walked: whether the core probes count every notifier
    from its first call (coverage.walked); started_at: when they attached."""
    def when(t):
        return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"
    out = [f"{'notifier callback':<44} {'module':<16} {'kind':<9} {'found by':<13} {'counted since':<14} timed since"]
    for (symbol, module), p in sorted(callbacks.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        counted = started_at if walked else p.since
        timed = when(p.since) if p.status.attached else f"never: {p.status.reason}"
        out.append(f"{symbol:<44} {module:<16} {p.callback.kind_name:<9} {p.callback.found:<13} "
                   f"{when(counted):<14} {timed}")
    if len(out) == 1:
        out.append("(none found yet)")
    return out
