"""Attaching and detaching one probe: each planned probe with its ordered fallbacks and
rollback, and the probes of notifier callbacks. Outcomes are ProbeStatus records;
nothing here prints."""
import ctypes
import errno
import os
from dataclasses import dataclass
from typing import Optional

from monitor.plan import attach_plan
from monitor.plan.decisions import Off

# kretprobe instances per callback: sleeping notifiers on many threads hold one each.
MAXACTIVE = 256


@dataclass
class ProbeStatus:
    probe: str
    method: str          # what attached, or what was tried last
    attached: bool
    reason: str = ""            # for people: why not attached, or why a fallback attached
    off: Optional[Off] = None   # why not attached, as a value (None: attached, or refused at attach)

    @property
    def disabled(self):
        """Switched off by choice (configuration, the lean configuration), not refused."""
        return self.off is not None and self.off.by_choice


def disabled(probe):
    return ProbeStatus(probe, "", False, "disabled by configuration", Off.CONFIG)


def attach_spec(bpf, spec):
    """Attach one planned probe, trying its methods in order; a method that half
    attached is rolled back before the next is tried (no double counting)."""
    if not spec.methods:
        return ProbeStatus(spec.probe, "", False, spec.reason, spec.off)
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
                        attach(bpf, method, target, fn, is_ret)
                        done.append((method, target, fn, is_ret))
            return ProbeStatus(spec.probe, method, True)
        except Exception as e:      # noqa: BLE001 -- bcc raises bare Exception
            err = ctypes.get_errno()    # bcc's, before detaching calls into it again
            for d in done:
                detach(bpf, *d)
            errors.append(f"{method}: {explain(e, err)}")
    return ProbeStatus(spec.probe, spec.methods[-1], False, "; ".join(errors))


def attach_order(entry, ret):
    """((program, is_ret), ...): the return program first. An entry attached alone would
    leave in flight the calls it sees, which the BPF side counts as lost at the thread's
    next call; a return without its entry ignores the call."""
    return ((ret, True), (entry, False))


def attach(bpf, method, target, fn, is_ret):
    """Attach program fn to target (a function or 'category:event') by method."""
    if method in (attach_plan.FENTRY, attach_plan.LEAN_FEXIT, attach_plan.COUNTS_FEXIT):
        (bpf.attach_kretfunc if is_ret else bpf.attach_kfunc)(fn_name=_b(fn))
    elif method == attach_plan.KPROBE:
        if is_ret:
            bpf.attach_kretprobe(event=_b(target), fn_name=_b(fn), maxactive=MAXACTIVE)
        else:
            bpf.attach_kprobe(event=_b(target), fn_name=_b(fn))
    elif method == attach_plan.RAW_TRACEPOINT:
        bpf.attach_raw_tracepoint(tp=_b(target), fn_name=_b(fn))
    else:
        bpf.attach_tracepoint(tp=_b(target), fn_name=_b(fn))


def detach(bpf, method, target, fn, is_ret):
    """Undo attach(); quiet when it was not attached after all."""
    try:
        if method in (attach_plan.FENTRY, attach_plan.LEAN_FEXIT, attach_plan.COUNTS_FEXIT):
            (bpf.detach_kretfunc if is_ret else bpf.detach_kfunc)(fn_name=_b(fn))
        elif method == attach_plan.KPROBE:
            (bpf.detach_kretprobe if is_ret else bpf.detach_kprobe)(event=_b(target))
        elif method == attach_plan.RAW_TRACEPOINT:
            bpf.detach_raw_tracepoint(tp=_b(target))
        else:
            bpf.detach_tracepoint(tp=_b(target))
    except Exception:      # noqa: BLE001
        pass


# Programs probing one notifier callback, by kind (bpf/notifiers.bpf.c): (entry, return).
CALLBACK_PROGRAMS = {"list": ("cb_list_entry", "cb_list_return"),
                     "interval": ("cb_interval_entry", "cb_interval_return"),
                     "list_end": ("cb_list_end", None)}


# The same as fentry/fexit programs (bpf/notifiers.bpf.c, CB_KFUNC): (entry, {arguments: return}).
# An fexit program reads the return value after the arguments: one per arity.
CALLBACK_FENTRY = {"list": ("cbf_list_entry", {2: "cbf_list_return2"}),
                   "interval": ("cbf_interval_entry", {3: "cbf_interval_return3", 4: "cbf_interval_return4"}),
                   "list_end": ("cbf_list_end", None)}


def attach_callback_fentry(mf, bpf, kind, symbol, module, addr):
    """fentry (and fexit) on one callback through mf (a module_fentry.ModuleFentry), its
    address addr written into the entry program; the links, return first. Raises
    ModuleFentryError, with nothing left attached."""
    from monitor.read.contract import DEFINES
    from monitor.attach.module_fentry import ModuleFentryError

    entry, returns = CALLBACK_FENTRY[kind]
    _type_id, nargs = mf.function(module, symbol)
    ret = returns.get(nargs) if returns is not None else None
    if returns is not None and ret is None:
        raise ModuleFentryError(f"{module}:{symbol}: {nargs} arguments, an fexit program reads "
                                f"{' or '.join(map(str, sorted(returns)))}")
    links = []
    try:
        if ret:
            links.append(mf.attach(bpf, ret, module, symbol, ret=True))
        links.append(mf.attach(bpf, entry, module, symbol, patch={DEFINES["CB_IP_PLACEHOLDER"]: addr}))
    except ModuleFentryError:
        for link in links:
            mf.detach(link)
        raise
    return links


def attach_callback(bpf, kind, symbol):
    """Kprobe one notifier callback (return program first); raises what bcc raises."""
    entry, ret = CALLBACK_PROGRAMS[kind]
    done = []
    try:
        for fn, is_ret in attach_order(entry, ret):
            if fn:
                attach(bpf, attach_plan.KPROBE, symbol, fn, is_ret)
                done.append((attach_plan.KPROBE, symbol, fn, is_ret))
    except Exception:
        for d in done:
            detach(bpf, *d)
        raise


def detach_callback(bpf, kind, symbol):
    entry, ret = CALLBACK_PROGRAMS[kind]
    for fn, is_ret in attach_order(entry, ret):
        if fn:
            detach(bpf, attach_plan.KPROBE, symbol, fn, is_ret)


def _b(text):
    """bcc wants bytes (it warns on str, and echoes the whole program text)."""
    return text.encode()


def explain(exc, err=0):
    """Why an attach failed, for people. err: the errno bcc's failed call left (bcc's
    library is loaded with use_errno)."""
    # bcc says "Need super-user privileges" for any EPERM; as root it means the kernel
    # refuses the attach itself.
    if err == errno.EPERM and os.geteuid() == 0:
        return "refused by the kernel (EPERM) although running as root"
    return str(exc)
