"""`mnmon doctor`: what this kernel offers and what mnmon can attach, and how."""
from monitor.collector import bcc_version

CORE = ("invalidate_range_start", "invalidate_range_end")


def facts_lines(f, privileged_as):
    yn = lambda b: "yes" if b else "no"
    return [
        f"kernel       {f.release}",
        f"BTF          {yn(f.btf)}" + (" (/sys/kernel/btf/vmlinux)" if f.btf else " (no fentry, no BTF discovery)"),
        f"kprobes      {yn(f.kprobes)}",
        f"fentry       {'bcc sees BPF trampolines' if f.kfunc else 'no'}",
        f"headers      {f.headers}" + (f": {f.headers_dir}" if f.headers_dir else "") +
        ("" if f.headers == "matching" else "  (struct-reading probes stay off)"),
        f"tracepoints  {len(f.tracepoints)} of interest: {', '.join(sorted(f.tracepoints)) or 'none'}",
        f"bcc          {bcc_version()}",
        f"privileges   {privileged_as}",
    ]


def probe_lines(statuses, callbacks_reason, attempted):
    """One line per probe: how it attached, or why not. attempted=False: the plan only."""
    out = [f"{'probe':<44} {'method':<14} state"]
    for st in statuses:
        if st.attached:
            state = "attached" if attempted else f"would try {st.method}"
        else:
            state = f"unavailable: {st.reason}"
        out.append(f"{st.probe:<44} {st.method or '-':<14} {state}")
    out.append("")
    out.append("notifier callbacks: " + (f"not attachable: {callbacks_reason}" if callbacks_reason else
                                         "attachable (kprobe), found in BTF and at registration"))
    return out


def core_ok(statuses, callbacks_reason):
    """The exit status's question: can per-notifier outcomes be counted here?"""
    by = {st.probe: st for st in statuses}
    return not callbacks_reason and all(by.get(p) and by[p].attached for p in CORE)


def tracefs_line(tfs):
    return f"tracefs      {tfs if tfs else 'not mounted (and could not mount it)'}"

