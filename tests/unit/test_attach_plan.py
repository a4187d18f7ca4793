"""attach_plan.plan() for every kernel generation mnmon knows, and for hosts where only part
of it can attach (the sandbox this is developed on, kernels without kprobes or headers)."""
import re
from pathlib import Path

import pytest

from monitor.plan.attach_plan import (ATTEMPT_COUNT, FENTRY, HASH, KPROBE, TASK_STORAGE, TRACEPOINT, api_generation,
                                 plan)
from monitor.attach.probe import ProbeStatus, attach_spec
from monitor.plan import coverage
from monitor.plan.decisions import Off
from monitor.kernel import layout
from monitor.kernel.facts import KernelFacts, bcc_has_task_storage, parse_tracepoint_format, parse_version
from tests.unit.test_kernel_facts import MARK_VICTIM_6_1, MARK_VICTIM_6_9

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
F, K, T, A = (FENTRY,), (KPROBE,), (TRACEPOINT,), (ATTEMPT_COUNT,)
FK = (FENTRY, KPROBE)
OOM_TPS = ("oom:mark_victim", "oom:start_task_reaping", "oom:finish_task_reaping", "oom:skip_task_reaping",
           "oom:wake_reaper")
MRELEASE_TPS = ("syscalls:sys_enter_process_mrelease", "syscalls:sys_exit_process_mrelease")
CORE_SYMBOLS = frozenset({"__mmu_notifier_invalidate_range_start", "__mmu_notifier_invalidate_range_end",
                          "__mmu_notifier_register", "__oom_reap_task_mm", "sched_show_task",
                          "__mmu_notifier_release", "out_of_memory", "exit_mmap", "vprintk_emit"})
# Every field found in BTF (offsets as on Debian's 6.1 where the walk reads them).
LAYOUT = layout.Layout(layout.BTF_SOURCE, {**{f[0]: 8 * i for i, f in enumerate(layout.FIELDS)},
                                           "SUBS_HAS_ITREE": 8, "SUBS_LEFTMOST": 40})
NO_BTF = "no BTF (/sys/kernel/btf/vmlinux)"
INTERVAL_SYMBOLS = frozenset({"mmu_interval_notifier_insert", "mmu_interval_notifier_insert_locked"})


def facts(release, *, btf, kfunc, kprobes=True, headers="matching", headers_dir=None, symbols=None,
          tracepoints=None, mark_victim=MARK_VICTIM_6_1, bcc_task_storage=True, layout_=None,
          ringbuf=None, module_btf=None, machine="x86_64"):
    """A kernel as monitor.kernel.facts.gather() would describe it; what exists follows its version."""
    version = parse_version(release)
    if symbols is None:
        symbols = CORE_SYMBOLS | (INTERVAL_SYMBOLS if version >= (5, 5) else frozenset())
    if tracepoints is None:
        tracepoints = frozenset(OOM_TPS) | (frozenset(MRELEASE_TPS) if version >= (5, 15) else frozenset())
    if layout_ is None:     # as layout.read() finds it: BTF first, else the headers if they are this kernel's
        layout_ = LAYOUT if btf else layout.headers_only() if headers == "matching" else None
    if headers_dir is None:
        headers_dir = "" if headers == "none" else f"/lib/modules/{release}/build"
    return KernelFacts(release=release, version=version, btf=btf, headers=headers, headers_dir=headers_dir,
                       kprobes=kprobes, kfunc=kfunc, bcc_task_storage=bcc_task_storage,
                       symbols=frozenset(symbols), tracepoints=frozenset(tracepoints),
                       mark_victim_fields=parse_tracepoint_format(mark_victim), layout=layout_,
                       layout_error="" if layout_ else NO_BTF,
                       ringbuf=ringbuf, module_btf=module_btf, machine=machine)


def reason(block):
    """A plan's Block as its reason; "" where nothing is blocked."""
    return block.reason if block else ""


def methods(p):
    return {spec.probe: spec.methods for spec in p.probes}


def by_name(p):
    return {spec.probe: spec for spec in p.probes}


def cflags(api, structs, core_kfunc, reap_kfunc, gave_up, ringbuf, task_storage=0, walk=0, ends=0, victim_task=0,
           cb_kfunc=None, lean=0, btf=1, cgroup=1, premature=None, twins=None, counts=0, failure_log=None):
    out = [f"-DMN_API={api}", f"-DHAVE_STRUCTS={structs}", f"-DCGROUP_FIELDS={cgroup}", f"-DCORE_KFUNC={core_kfunc}",
           f"-DREAP_KFUNC={reap_kfunc}", f"-DGAVE_UP_PROBE={gave_up}", f"-DUSE_RINGBUF={ringbuf}",
           f"-DTASK_STORAGE={task_storage}", f"-DMN_SUBS={walk}", f"-DMV_TASK_ARG={victim_task}",
           f"-DPREMATURE={btf if premature is None else premature}", f"-DENDS_IN_FAILED_START={ends}"]
    # fentry on callbacks: by default wherever module BTF exists (5.11+) with the core's fentry
    if cb_kfunc is None:
        cb_kfunc = int(bool(structs and core_kfunc and task_storage))
    # the kprobe flavour of fentry probes: compiled where one of them prefers kprobe
    if twins is None:
        twins = int(structs and not (core_kfunc and reap_kfunc))
    # the kernel's log line names failed list notifiers where no callback probe does
    if failure_log is None:
        failure_log = int(bool(lean or counts))
    out += [f"-DCB_KFUNC={cb_kfunc}", f"-DLEAN={lean}", f"-DKPROBE_TWINS={twins}", f"-DCOUNTS={counts}",
            "-DTIME_START=0", f"-DFAILURE_LOG={failure_log}"]
    return out + (LAYOUT.cflags() if btf else ["-DBTF_LAYOUT=0"])


def expected_methods(core, reap, gave_up, interval=None, walk=False, premature=True):
    out = {"invalidate_range_start": core, "invalidate_range_end": core, "notifier_register": K if core else (),
           "notifier_release": core if walk else ()}
    if interval is not None:
        out["interval_notifier_insert"] = interval
    out.update({"oom_reap_task_mm": reap, "oom_reaper_gave_up": gave_up, "oom:mark_victim": T,
                "oom:start_task_reaping": T, "oom:skip_task_reaping": T,
                "oom_domain": K if premature else (), "mm_teardown": K if premature else ()})
    return out


PREDATES = "kernel 4.14.0-3-amd64 predates non-blockable invalidation (4.19)"

KERNELS = [
    # release, btf, kfunc, api, cflags, methods
    ("4.14.0-3-amd64", False, False, 0, cflags(419, 0, 0, 0, 0, 0, btf=0), expected_methods((), (), A, premature=False)),
    ("4.19.0-27-amd64", False, False, 419, cflags(419, 1, 0, 0, 1, 0, btf=0), expected_methods(K, K, K, premature=False)),
    ("5.0.21", False, False, 500, cflags(500, 1, 0, 0, 1, 0, btf=0), expected_methods(K, K, K, premature=False)),
    # BTF and a bcc that claims kfunc support, but no BPF trampolines before 5.5
    ("5.2.21", True, True, 502, cflags(502, 1, 0, 0, 1, 0), expected_methods(K, K, K)),
    ("5.4.0-150-generic", True, True, 502, cflags(502, 1, 0, 0, 1, 0), expected_methods(K, K, K)),
    ("5.5.19", True, True, 505, cflags(505, 1, 1, 1, 1, 0), expected_methods(FK, FK, K, interval=K)),
    ("5.10.0-30-amd64", True, True, 505, cflags(505, 1, 1, 1, 1, 1, walk=1, ends=1),
     expected_methods(FK, FK, K, interval=K, walk=True)),
    ("6.1.0-56-amd64", True, True, 505, cflags(505, 1, 1, 1, 1, 1, 1, walk=1, ends=1),
     expected_methods(FK, FK, K, interval=K, walk=True)),
    ("6.6.30", True, True, 505, cflags(505, 1, 1, 1, 1, 1, 1, walk=1, ends=1),
     expected_methods(FK, FK, K, interval=K, walk=True)),
    ("7.1.0", True, True, 701, cflags(701, 1, 1, 1, 1, 1, 1, walk=1, ends=1),
     expected_methods(FK, FK, K, interval=K, walk=True)),
]


@pytest.mark.parametrize("release, btf, kfunc, api, flags, expected", KERNELS, ids=[k[0] for k in KERNELS])
def test_plan_per_kernel(release, btf, kfunc, api, flags, expected):
    p = plan(facts(release, btf=btf, kfunc=kfunc))
    assert p.api == api
    assert p.cflags == flags
    assert methods(p) == expected
    assert reason(p.callbacks_off) == (PREDATES if api == 0 else "")


def test_4_14_is_unsupported():
    p = by_name(plan(facts("4.14.0-3-amd64", btf=False, kfunc=False)))
    for probe in ("invalidate_range_start", "invalidate_range_end", "notifier_register"):
        assert p[probe].reason == PREDATES
    # Before 4.19 __oom_reap_task_mm(tsk, mm) returned false for a contended mmap_sem (a skip that
    # oom:skip_task_reaping already counts), never for a notifier: its result would blame notifiers.
    assert p["oom_reap_task_mm"].reason == PREDATES
    assert (p["oom_reaper_gave_up"].targets, p["oom_reaper_gave_up"].reason) == (("oom:start_task_reaping",), PREDATES)
    assert "interval_notifier_insert" not in p


def test_debian_12_prefers_fentry_and_keeps_kprobes_as_fallback():
    p = by_name(plan(facts("6.1.0-56-amd64", btf=True, kfunc=True)))
    start = p["invalidate_range_start"]
    assert (start.targets, start.methods, start.core, start.reason) == (
        ("__mmu_notifier_invalidate_range_start",), (FENTRY, KPROBE), True, "")
    assert start.programs == {FENTRY: ("kfunc____mmu_notifier_invalidate_range_start",
                                       "kretfunc____mmu_notifier_invalidate_range_start"),
                              KPROBE: ("core_start_entry", "core_start_return")}
    assert p["invalidate_range_end"].programs == {FENTRY: ("kfunc____mmu_notifier_invalidate_range_end", None),
                                                  KPROBE: ("core_end_entry", None)}
    assert p["invalidate_range_end"].core
    reap = p["oom_reap_task_mm"]
    assert (reap.targets, reap.methods, reap.core) == (("__oom_reap_task_mm",), (FENTRY, KPROBE), False)
    assert reap.programs == {FENTRY: ("kfunc____oom_reap_task_mm", "kretfunc____oom_reap_task_mm"),
                             KPROBE: ("reap_entry", "reap_return")}
    assert p["notifier_register"].programs == {KPROBE: ("on_mmu_notifier_register", None)}
    assert p["interval_notifier_insert"].targets == ("mmu_interval_notifier_insert",
                                                     "mmu_interval_notifier_insert_locked")
    assert p["oom_reaper_gave_up"].targets == ("sched_show_task",)
    assert p["oom_reaper_gave_up"].programs == {KPROBE: ("on_sched_show_task", None)}
    assert p["oom:mark_victim"].programs == {TRACEPOINT: ("on_mark_victim", None)}
    assert [s.probe for s in p.values() if s.core] == ["invalidate_range_start", "invalidate_range_end"]


def test_every_planned_program_is_in_the_bpf_source():
    source = "".join(path.read_text() for path in sorted(BPF_DIR.glob("*.bpf.c")))
    for spec in plan(facts("6.1.0-56-amd64", btf=True, kfunc=True)).probes:
        for method, progs in spec.programs.items():
            for prog in filter(None, progs):
                if method == FENTRY:     # bcc names KFUNC_PROBE(fn) kfunc__fn, KRETFUNC_PROBE(fn) kretfunc__fn
                    macro, fn = prog.split("__", 1)
                    assert re.search(rf"^{macro.upper()}_PROBE\({fn},", source, re.M), prog
                else:
                    assert re.search(rf"^int {prog}\(", source, re.M), prog


SANDBOX_HEADERS = "/lib/modules/6.1.0-56-amd64/build"
OTHER_HEADERS = f"headers at {SANDBOX_HEADERS} are not this kernel's, and {NO_BTF}: struct offsets unknown"
NO_KPROBES = "no kprobes on this kernel (CONFIG_KPROBES off)"
NO_FENTRY = ", and no fentry (needs 5.5+, BTF and BPF trampolines)"


@pytest.mark.parametrize("kfunc, core, reap_kfunc", [
    (True, F, 1),         # bcc sees BTF and trampolines; the kernel refuses the attach later (EPERM)
    (False, (), 0),
])
def test_sandbox_host(kfunc, core, reap_kfunc):
    """This development machine: 6.18 with BTF, no kprobes, Debian 6.1's headers, tracepoints load.
    BTF locates every field whatever the headers: what is off is off for the kernel's refusals."""
    f = facts("6.18.44-fc-v657", btf=True, kfunc=kfunc, kprobes=False, headers="other",
              headers_dir=SANDBOX_HEADERS, symbols=CORE_SYMBOLS | INTERVAL_SYMBOLS,
              mark_victim=MARK_VICTIM_6_9)
    p = plan(f)
    assert p.api == 505
    assert p.cflags == cflags(505, 1, reap_kfunc, reap_kfunc, 0, 1, 1, walk=1, ends=1, victim_task=1,
                              cb_kfunc=reap_kfunc, premature=0, twins=0) + [
        "-DMV_ANON_RSS_OFF=24", "-DMV_FILE_RSS_OFF=32", "-DMV_SHMEM_RSS_OFF=40", "-DMV_COMM_LOC_OFF=12"]
    by = by_name(p)
    assert methods(p) == {"invalidate_range_start": core, "invalidate_range_end": core, "notifier_register": (),
                          "notifier_release": core, "interval_notifier_insert": (), "oom_reap_task_mm": core,
                          "oom_reaper_gave_up": A, "oom:mark_victim": T, "oom:start_task_reaping": T,
                          "oom:skip_task_reaping": T, "oom_victim_cgroup": ("raw_tracepoint",),
                          "oom_domain": (), "mm_teardown": ()}
    # Premature victims need kprobes on out_of_memory and exit_mmap: not countable, and why.
    assert by["mm_teardown"].reason.startswith("premature OOM victims not countable: oom_domain: " + NO_KPROBES
                                               + "; mm_teardown: " + NO_KPROBES)
    for probe in ("invalidate_range_start", "invalidate_range_end", "oom_reap_task_mm"):
        assert by[probe].reason == ("" if kfunc else NO_KPROBES + NO_FENTRY)
    for probe in ("notifier_register", "interval_notifier_insert"):
        assert by[probe].reason == NO_KPROBES
    gave_up = by["oom_reaper_gave_up"]
    assert (gave_up.targets, gave_up.reason) == (("oom:start_task_reaping",), NO_KPROBES)
    assert "headers" not in " ".join(spec.reason for spec in p.probes)


def test_other_headers_without_btf_keep_struct_readers_off():
    f = facts("6.18.44-fc-v657", btf=False, kfunc=False, kprobes=True, headers="other",
              headers_dir=SANDBOX_HEADERS, symbols=CORE_SYMBOLS | INTERVAL_SYMBOLS)
    p = plan(f)
    by = by_name(p)
    for probe in ("invalidate_range_start", "invalidate_range_end", "notifier_register", "interval_notifier_insert"):
        assert (by[probe].methods, by[probe].reason) == ((), OTHER_HEADERS)
    assert (by["oom_reaper_gave_up"].targets, by["oom_reaper_gave_up"].reason) == (
        ("oom:start_task_reaping",), OTHER_HEADERS)
    assert reason(p.callbacks_off) == OTHER_HEADERS
    assert "-DHAVE_STRUCTS=0" in p.cflags and "-DCGROUP_FIELDS=0" in p.cflags and "-DBTF_LAYOUT=0" in p.cflags


def missing(*groups):
    """LAYOUT without the groups' fields, as from_btf() reports a kernel that lacks them."""
    gone = {f[0] for f in layout.FIELDS if f[4] in groups}
    return layout.Layout(layout.BTF_SOURCE, {k: v for k, v in LAYOUT.offsets.items() if k not in gone},
                         missing={g: f"struct x has no member {g}_field" for g in groups})


@pytest.mark.parametrize("lacking, off, on", [
    ((layout.RANGE,), {"invalidate_range_start", "invalidate_range_end", "notifier_register", "notifier_release",
                       "interval_notifier_insert"}, {"oom_reap_task_mm", "oom:mark_victim"}),
    ((layout.WALK,), {"notifier_release"}, {"invalidate_range_start", "notifier_register", "oom_reaper_gave_up"}),
    ((layout.TASK,), set(), {"invalidate_range_start", "notifier_release"}),
    ((layout.CGROUP,), set(), {"invalidate_range_start", "oom_reaper_gave_up", "oom:mark_victim"}),
])
def test_a_field_the_kernel_lacks_turns_off_only_the_probes_that_read_it(lacking, off, on):
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True, headers="other", headers_dir=SANDBOX_HEADERS,
                   layout_=missing(*lacking)))
    by = by_name(p)
    for probe in off:
        assert not by[probe].methods and f"{lacking[0]}_field" in by[probe].reason, by[probe]
    for probe in on:
        assert by[probe].methods, by[probe]
    if layout.TASK in lacking:     # the give-up is still counted, from attempts per victim
        assert by["oom_reaper_gave_up"].methods == A and "task_field" in by["oom_reaper_gave_up"].reason
    assert f"-DCGROUP_FIELDS={int(layout.CGROUP not in lacking)}" in p.cflags
    assert ("-DHAVE_STRUCTS=1" in p.cflags) is (layout.RANGE not in lacking)
    assert ("-DMN_SUBS=1" in p.cflags) is (layout.WALK not in lacking and layout.RANGE not in lacking)
    assert not any(f[0] in flag for flag in p.cflags for f in layout.FIELDS
                   if f[4] in lacking and flag.startswith(f"-DF_{f[0]}="))


def test_no_headers():
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True, headers="none"))
    by = by_name(p)
    assert by["invalidate_range_start"].reason == "no kernel headers for this kernel"
    assert by["oom_reap_task_mm"].methods == FK
    assert reason(p.callbacks_off) == "no kernel headers for this kernel"
    assert "-DHAVE_STRUCTS=0" in p.cflags and "-DCORE_KFUNC=0" in p.cflags


def test_no_kprobes_but_fentry():
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True, kprobes=False))
    by = by_name(p)
    assert methods(p) == expected_methods(F, F, A, interval=(), walk=True, premature=False) | \
        {"notifier_register": ()}
    assert by["notifier_register"].reason == "no kprobes on this kernel (CONFIG_KPROBES off)"
    assert by["oom_reaper_gave_up"].reason == "no kprobes on this kernel (CONFIG_KPROBES off)"
    # callbacks: fentry where their module has BTF, so still probed without kprobes
    assert (reason(p.callbacks_off), reason(p.callback_fentry_off)) == ("", "")
    assert p.cflags == cflags(505, 1, 1, 1, 0, 1, 1, walk=1, ends=1, premature=0)


def test_no_kprobes_and_no_module_btf_leaves_callbacks_unprobed():
    p = plan(facts("5.10.0-30-amd64", btf=True, kfunc=True, kprobes=False))
    assert reason(p.callback_fentry_off) == "kernel 5.10.0-30-amd64 predates module BTF (5.11)"
    assert reason(p.callbacks_off) == ("no kprobes on this kernel (CONFIG_KPROBES off), and no fentry on callbacks: "
                           "kernel 5.10.0-30-amd64 predates module BTF (5.11)")


@pytest.mark.parametrize("release, btf, kfunc, why", [
    ("6.1.0-56-amd64", True, True, ""),
    ("7.1.0", True, True, ""),
    ("5.10.0-30-amd64", True, True, "kernel 5.10.0-30-amd64 predates module BTF (5.11)"),
    ("6.1.0-56-amd64", False, False, "no fentry here (needs BTF, BPF trampolines and bcc support)"),
    ("4.19.0-27-amd64", False, False, "no fentry here (needs BTF, BPF trampolines and bcc support)"),
])
def test_callbacks_by_fentry_where_module_btf_can_exist(release, btf, kfunc, why):
    p = plan(facts(release, btf=btf, kfunc=kfunc))
    assert reason(p.callback_fentry_off) == why
    assert f"-DCB_KFUNC={int(not why)}" in p.cflags


def test_callbacks_pinned_to_kprobe_or_fentry():
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), callbacks="kprobe")
    assert reason(p.callback_fentry_off) == "kprobe chosen by configuration (probes.callbacks)"
    assert "-DCB_KFUNC=0" in p.cflags and reason(p.callbacks_off) == ""
    assert plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), callbacks="fentry").callback_fentry_off is None
    with pytest.raises(ValueError, match="fentry forced on notifier callbacks, but kernel 5.10.0-30-amd64 predates"):
        plan(facts("5.10.0-30-amd64", btf=True, kfunc=True), callbacks="fentry")
    with pytest.raises(ValueError, match="not uprobe"):
        plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), callbacks="uprobe")


def test_no_kprobes_no_fentry():
    by = by_name(plan(facts("5.4.0-150-generic", btf=True, kfunc=False, kprobes=False)))
    assert by["invalidate_range_start"].methods == ()
    assert by["invalidate_range_start"].reason == ("no kprobes on this kernel (CONFIG_KPROBES off), "
                                                   "and no fentry (needs 5.5+, BTF and BPF trampolines)")


def test_fentry_needs_btf():
    p = plan(facts("6.1.0-56-amd64", btf=False, kfunc=True))
    assert by_name(p)["invalidate_range_start"].methods == K
    assert "-DCORE_KFUNC=0" in p.cflags and "-DREAP_KFUNC=0" in p.cflags


KALLSYMS_REASON = "not in kallsyms (inlined, static or not built)"


def test_missing_symbols():
    f = facts("6.1.0-56-amd64", btf=True, kfunc=True,
              symbols={"__mmu_notifier_invalidate_range_start", "__mmu_notifier_invalidate_range_end",
                       "__mmu_notifier_register", "mmu_interval_notifier_insert"})
    p = plan(f)
    by = by_name(p)
    reap = by["oom_reap_task_mm"]
    assert (reap.methods, reap.reason) == ((), f"__oom_reap_task_mm {KALLSYMS_REASON}")
    gave_up = by["oom_reaper_gave_up"]
    assert (gave_up.targets, gave_up.methods, gave_up.reason) == (
        ("oom:start_task_reaping",), A, f"sched_show_task {KALLSYMS_REASON}")
    # one of two targets is enough; only the present one is probed
    assert (by["interval_notifier_insert"].targets, by["interval_notifier_insert"].methods) == (
        ("mmu_interval_notifier_insert",), K)
    # the walk of subscriptions needs no symbol; mm teardown's probe does
    assert by["notifier_release"].reason == f"__mmu_notifier_release {KALLSYMS_REASON}"
    # no reap probe: nothing prefers kprobe, so no kprobe flavour is compiled
    assert p.cflags == cflags(505, 1, 1, 0, 0, 1, 1, walk=1, ends=1, premature=0, twins=0)


def test_missing_all_targets_and_tracepoints():
    f = facts("6.1.0-56-amd64", btf=True, kfunc=True, symbols=set(), tracepoints=set())
    by = by_name(plan(f))
    assert by["interval_notifier_insert"].reason == (
        f"mmu_interval_notifier_insert, mmu_interval_notifier_insert_locked {KALLSYMS_REASON}")
    assert by["invalidate_range_start"].reason == f"__mmu_notifier_invalidate_range_start {KALLSYMS_REASON}"
    assert by["oom_reaper_gave_up"].methods == ()             # no tracepoint to count attempts on either
    assert by["oom_reaper_gave_up"].reason == f"sched_show_task {KALLSYMS_REASON}"
    for tp in ("oom:mark_victim", "oom:start_task_reaping", "oom:skip_task_reaping"):
        assert (by[tp].methods, by[tp].reason) == (
            (), "tracepoint not in tracefs (kernel too old or tracefs not mounted)")


def test_a_missing_symbol_is_reported_before_missing_headers():
    f = facts("6.18.44-fc-v657", btf=True, kfunc=False, headers="other", symbols=set())
    assert by_name(plan(f))["invalidate_range_start"].reason == \
        f"__mmu_notifier_invalidate_range_start {KALLSYMS_REASON}"


@pytest.mark.parametrize("mark_victim, extra", [
    (MARK_VICTIM_6_1, []),
    (MARK_VICTIM_6_9, ["-DMV_ANON_RSS_OFF=24", "-DMV_FILE_RSS_OFF=32", "-DMV_SHMEM_RSS_OFF=40",
                       "-DMV_COMM_LOC_OFF=12"]),
    ("", []),                                                              # tracefs not readable
    # rss without comm, comm without all three rss fields
    ("field:unsigned long anon_rss;\toffset:16;\nfield:unsigned long file_rss;\toffset:24;\n"
     "field:unsigned long shmem_rss;\toffset:32;\n", ["-DMV_ANON_RSS_OFF=16", "-DMV_FILE_RSS_OFF=24",
                                                      "-DMV_SHMEM_RSS_OFF=32"]),
    ("field:__data_loc char[] comm;\toffset:12;\nfield:unsigned long anon_rss;\toffset:16;\n",
     ["-DMV_COMM_LOC_OFF=12"]),
])
def test_mark_victim_fields(mark_victim, extra):
    p = plan(facts("6.9.0", btf=True, kfunc=True, mark_victim=mark_victim))
    # a record with comm: the tracepoint passes the victim's task, whose cgroup a raw tracepoint reads
    task = int("comm" in parse_tracepoint_format(mark_victim))
    assert p.cflags == cflags(505, 1, 1, 1, 1, 1, 1, walk=1, ends=1, victim_task=task) + extra
    assert ("oom_victim_cgroup" in by_name(p)) is bool(task)


@pytest.mark.parametrize("release, has_interval", [
    ("5.4.0", False), ("5.4.300", False), ("5.5.0", True), ("6.1.0", True), ("7.1.0", True)])
def test_interval_insert_only_from_5_5(release, has_interval):
    p = plan(facts(release, btf=True, kfunc=True, symbols=CORE_SYMBOLS | INTERVAL_SYMBOLS))
    assert ("interval_notifier_insert" in by_name(p)) is has_interval


@pytest.mark.parametrize("release, ringbuf", [("5.7.19", 0), ("5.8.0", 1), ("5.8", 1)])
def test_ring_buffer_from_5_8_where_not_probed(release, ringbuf):
    p = plan(facts(release, btf=True, kfunc=True))
    assert f"-DUSE_RINGBUF={ringbuf}" in p.cflags
    assert p.facts["ring_buffer"] == "kernel version"


@pytest.mark.parametrize("release, probed, ringbuf", [
    ("5.4.0-150-generic", True, 1),     # a distribution kernel with the ring buffer backported
    ("6.1.0-56-amd64", False, 0),       # a build without it
    ("5.4.0-150-generic", None, 0),     # not probed (no privileges): by the version
])
def test_ring_buffer_as_probed(release, probed, ringbuf):
    p = plan(facts(release, btf=True, kfunc=True, ringbuf=probed))
    assert f"-DUSE_RINGBUF={ringbuf}" in p.cflags and p.ring_buffer is bool(ringbuf)
    assert p.facts["ring_buffer"] == ("kernel version" if probed is None else "probed")


@pytest.mark.parametrize("release, probed, why", [
    ("5.10.0-46-amd64", True, ""),                  # module BTF backported
    ("6.1.0-56-amd64", False, "kernel 6.1.0-56-amd64 has no module BTF (5.11+)"),   # built without it
    ("5.10.0-46-amd64", None, "kernel 5.10.0-46-amd64 predates module BTF (5.11)"),
])
def test_callback_fentry_follows_probed_module_btf(release, probed, why):
    p = plan(facts(release, btf=True, kfunc=True, module_btf=probed))
    assert reason(p.callback_fentry_off) == why
    assert p.facts["module_btf"] == ("kernel version" if probed is None else "probed")


@pytest.mark.parametrize("version, api", [
    ((3, 10, 0), 0), ((4, 18, 20), 0), ((4, 19, 0), 419), ((4, 20, 17), 419), ((5, 0, 0), 500), ((5, 1, 21), 500),
    ((5, 2, 0), 502), ((5, 4, 300), 502), ((5, 5, 0), 505), ((6, 1, 0), 505), ((6, 6, 0), 505), ((7, 0, 99), 505),
    ((7, 1, 0), 701), ((8, 0, 0), 701),
])
def test_api_generation(version, api):
    assert api_generation(version) == api


def test_mn_api_values_are_those_mnmon_bpf_c_tests():
    # Every generation the plan can pass must be one the BPF source distinguishes with >= tests.
    source = "".join(path.read_text() for path in sorted(BPF_DIR.glob("*.[ch]")))
    tested = {int(x) for x in re.findall(r"MN_API >= (\d+)", source)}
    assert tested == {500, 502, 505, 701}
    assert {api_generation(v) for v in ((4, 19, 0), (5, 0, 0), (5, 2, 0), (5, 5, 0), (7, 1, 0))} == {419} | tested


@pytest.mark.parametrize("release, btf, headers, why", [
    ("6.1.0-56-amd64", True, "matching", ""),
    ("5.10.0-46-amd64", True, "matching", ""),
    ("6.1.0-56-amd64", True, "other", ""),          # BTF locates the fields, whatever the headers
    ("5.5.19", True, "matching", "kernel 5.5.19 predates mm->notifier_subscriptions (5.6)"),
    ("6.1.0-56-amd64", False, "matching", "no vmlinux BTF to read the layout of struct mmu_notifier_subscriptions"),
    ("6.1.0-56-amd64", False, "other", OTHER_HEADERS),
])
def test_every_notifier_counted_from_its_first_call_where_the_walk_can_run(release, btf, headers, why):
    # and with the walk on a kernel that pairs ends itself (5.10+), no end callback needs a probe
    p = plan(facts(release, btf=btf, kfunc=True, headers=headers,
                   headers_dir=SANDBOX_HEADERS if headers == "other" else None))
    assert reason(p.walk_off) == why
    assert f"-DMN_SUBS={int(not why)}" in p.cflags
    assert ("-DF_SUBS_LEFTMOST=40" in p.cflags) is btf
    assert (by_name(p)["notifier_release"].methods != ()) is (not why)
    assert p.probe_ends is bool(why)


def test_no_syscall_tracepoint_even_where_the_kernel_has_them():
    # Enabled, a syscalls:* tracepoint sends every syscall of every task down the slow
    # path; process_mrelease's reaps are told by their stack instead (bpf/oom.bpf.c).
    f = facts("6.1.0-56-amd64", btf=True, kfunc=True)
    assert set(MRELEASE_TPS) <= f.tracepoints
    assert not [t for spec in plan(f).probes for t in spec.targets if t.startswith("syscalls:")]


@pytest.mark.parametrize("release, btf, headers, bcc_ok, inflight", [
    ("5.11.22", True, "matching", True, HASH),          # task storage is LSM-only before 5.12
    ("5.12.0", True, "matching", True, TASK_STORAGE),
    ("6.1.0-56-amd64", True, "matching", True, TASK_STORAGE),
    ("6.1.0-56-amd64", False, "matching", True, HASH),   # task storage maps need BTF
    ("6.1.0-56-amd64", True, "other", True, TASK_STORAGE),   # BTF locates the fields, whatever the headers
    ("6.1.0-56-amd64", False, "other", True, HASH),      # no struct-reading programs: nothing in flight
    ("5.15.0-91-generic", True, "matching", False, HASH),  # Ubuntu 22.04's bcc 0.18 cannot declare the map
])
def test_in_flight_records_in_task_storage_from_5_12_with_btf(release, btf, headers, bcc_ok, inflight):
    p = plan(facts(release, btf=btf, kfunc=True, headers=headers, bcc_task_storage=bcc_ok))
    assert p.inflight == inflight
    assert f"-DTASK_STORAGE={int(inflight == TASK_STORAGE)}" in p.cflags


def test_in_flight_storage_can_be_pinned_where_the_kernel_has_it():
    f = facts("6.1.0-56-amd64", btf=True, kfunc=True)
    assert plan(f, inflight=HASH).inflight == HASH
    assert "-DTASK_STORAGE=0" in plan(f, inflight=HASH).cflags
    with pytest.raises(ValueError, match="task-storage needs kernel 5.12"):
        plan(facts("5.10.0-30-amd64", btf=True, kfunc=True), inflight=TASK_STORAGE)
    with pytest.raises(ValueError, match="not percpu"):
        plan(f, inflight="percpu")


@pytest.mark.parametrize("version, has", [("0.26.0", True), ("0.24.0", True), ("0.23.0", False), ("0.18.0", False),
                                          ("1.0", True), ("unknown", False), ("", False)])
def test_bcc_declares_task_storage_from_0_24(version, has):
    assert bcc_has_task_storage(version) is has


def test_lean_is_one_fexit_on_the_core_start_and_says_what_it_leaves_off():
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), lean=True)
    by = by_name(p)
    start = by["invalidate_range_start"]
    assert (start.methods, start.programs["lean-fexit"]) == (("lean-fexit",),
                                                            (None, "kretfunc____mmu_notifier_invalidate_range_start"))
    for name in ("invalidate_range_end", "notifier_register", "interval_notifier_insert", "notifier_release"):
        assert by[name].off is Off.LEAN and by[name].reason.startswith("off in the lean configuration: "), by[name]
    # the reaper's probes stay: who blocked it is the mission's core
    assert by["oom_reap_task_mm"].methods == FK and by["oom_reap_task_mm"].off is None
    assert p.lean and not p.probe_ends and reason(p.callbacks_off) == ""
    assert "-DLEAN=1" in p.cflags and "-DCB_KFUNC=0" in p.cflags and "-DMN_SUBS=1" in p.cflags
    assert "-DCORE_KFUNC=1" in p.cflags       # the fexit is a KRETFUNC_PROBE
    assert not plan(facts("6.1.0-56-amd64", btf=True, kfunc=True)).lean


@pytest.mark.parametrize("release, btf, kfunc, why", [
    ("5.4.0-150-generic", True, True, "no fentry on __mmu_notifier_invalidate_range_start: kprobes only here"),
    ("5.5.19", True, True, "kernel 5.5.19 predates mm->notifier_subscriptions (5.6)"),
    ("4.19.0-27-amd64", False, False, "no fentry on __mmu_notifier_invalidate_range_start"),
])
def test_lean_refused_where_it_cannot_run(release, btf, kfunc, why):
    with pytest.raises(ValueError, match="^the lean configuration cannot run here: " + re.escape(why)):
        plan(facts(release, btf=btf, kfunc=kfunc), lean=True)


def test_latency_off_is_the_counts_configuration_two_programs_on_the_path():
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), latency="off")
    by = by_name(p)
    start = by["invalidate_range_start"]
    assert (start.methods, start.programs["counts-fexit"]) == (
        ("counts-fexit",), (None, "kretfunc____mmu_notifier_invalidate_range_start"))
    # what it measures: every count, no latency histogram
    assert ("mnmon_notifier_invalidations_total", None) in start.feeds
    assert not {f for f, _ in start.feeds} & {"mnmon_notifier_invalidation_duration_seconds",
                                              "mnmon_invalidate_range_start_duration_seconds"}
    assert by["invalidate_range_end"].methods == FK and by["notifier_release"].methods == FK
    for name in ("notifier_register", "interval_notifier_insert"):
        assert by[name].off is Off.COUNTS and by[name].reason == \
            "off with latency off (probes.latency: off): no callback probes to discover for", by[name]
    assert by["list_failure_log"].methods == ("fentry",)
    assert p.counts and not p.lean and not p.probe_ends and p.callback_fentry_off.off is Off.COUNTS
    for flag in ("-DCOUNTS=1", "-DLEAN=0", "-DFAILURE_LOG=1", "-DCB_KFUNC=0", "-DCORE_KFUNC=1", "-DMN_SUBS=1"):
        assert flag in p.cflags, flag
    cov = coverage.of(p, [attach_spec(object(), s) if s.off else ProbeStatus(s.probe, s.methods[0], True)
                          for s in p.probes])
    assert cov.counts and cov.ends and cov.per_notifier and not cov.timed and cov.callbacks.off is Off.COUNTS


def test_the_kernels_log_names_list_failures_only_where_no_callback_probe_does():
    # not a probe of the full configuration (callback probes see each outcome): no series of it
    assert "list_failure_log" not in by_name(plan(facts("6.1.0-56-amd64", btf=True, kfunc=True)))
    lean = by_name(plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), lean=True))["list_failure_log"]
    assert lean.methods == ("fentry",)
    # printk's arguments are read as x86-64 passes them in a va_list
    arm = by_name(plan(facts("6.1.0-56-arm64", btf=True, kfunc=True, machine="aarch64"),
                       latency="off"))["list_failure_log"]
    assert arm.methods == () and arm.off is Off.KERNEL and "x86-64" in arm.reason
    assert "-DFAILURE_LOG=0" in plan(facts("6.1.0-56-arm64", btf=True, kfunc=True, machine="aarch64"),
                                     latency="off").cflags


@pytest.mark.parametrize("release, btf, kfunc, why", [
    ("5.4.0-150-generic", True, True, "no fentry on __mmu_notifier_invalidate_range_start: kprobes only here"),
    ("5.5.19", True, True, "kernel 5.5.19 predates mm->notifier_subscriptions (5.6)"),
])
def test_counts_refused_where_it_cannot_run(release, btf, kfunc, why):
    with pytest.raises(ValueError, match=r"^latency off \(probes.latency: off\) cannot run here: " + re.escape(why)):
        plan(facts(release, btf=btf, kfunc=kfunc), latency="off")
    with pytest.raises(ValueError, match="latency must be sampled, always, off, full, not 'sometimes'"):
        plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), latency="sometimes")
    # sampled latency, the default for users, runs every probe there instead, and says why
    p = plan(facts(release, btf=btf, kfunc=kfunc), latency="sampled")
    assert not p.counts and not p.sampled
    assert p.latency_note == ("latency sampled needs the counts configuration, which cannot run here "
                              f"({why}): every probe runs, callbacks timed always")
    assert by_name(p)["invalidate_range_start"].methods[0] in ("fentry", "kprobe")
    # ... and so does latency always
    p = plan(facts(release, btf=btf, kfunc=kfunc), latency="always")
    assert not p.counts and not p.sampled and not p.timed_always
    assert p.latency_note.startswith(f"latency always needs the counts configuration, which cannot run here ({why})")


def test_latency_always_is_sampled_held_open_and_full_is_every_probe():
    f = facts("6.1.0-56-amd64", btf=True, kfunc=True)
    sampled, always, full = (plan(f, latency=x) for x in ("sampled", "always", "full"))
    # always: the same probes as sampled (the counts fexit, callbacks' timing probes), and an
    # entry beside the counts fexit that times the core start
    assert (always.counts, always.sampled, always.timed_always) == (True, True, True)
    assert not sampled.timed_always
    assert [c for c in always.cflags if c != "-DTIME_START=1"] == [c for c in sampled.cflags if c != "-DTIME_START=0"]
    assert "-DTIME_START=1" in always.cflags and "-DTIME_START=0" in sampled.cflags
    assert [p.methods for p in always.probes] == [p.methods for p in sampled.probes]
    start, start_sampled = by_name(always)["invalidate_range_start"], by_name(sampled)["invalidate_range_start"]
    assert start.programs["counts-fexit"] == ("kfunc____mmu_notifier_invalidate_range_start",
                                              "kretfunc____mmu_notifier_invalidate_range_start")
    assert start_sampled.programs["counts-fexit"][0] is None
    duration = ("mnmon_invalidate_range_start_duration_seconds", None)
    assert duration in start.feeds and duration not in start_sampled.feeds
    # full: every probe, the core start timed too
    assert (full.counts, full.sampled, full.timed_always) == (False, False, False)
    assert "-DCOUNTS=0" in full.cflags and by_name(full)["invalidate_range_start"].methods[0] == "fentry"
    assert plan(f).cflags == full.cflags         # Monitor.start()'s default (tests, watch)


def test_sampled_latency_is_counts_with_callbacks_timed_in_windows():
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), latency="sampled")
    off = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), latency="off")
    assert (p.counts, p.sampled, p.latency_note) == (True, True, "")
    by, by_off = by_name(p), by_name(off)
    assert by["invalidate_range_start"].methods == by_off["invalidate_range_start"].methods == ("counts-fexit",)
    # the same walk counts; the callbacks' probes (fentry where module BTF is) and the probes
    # that find callbacks are there for the windows
    assert "-DCOUNTS=1" in p.cflags and "-DCB_KFUNC=1" in p.cflags and "-DCB_KFUNC=0" in off.cflags
    assert p.callback_fentry_off is None and off.callback_fentry_off.off is Off.COUNTS
    for name in ("notifier_register", "interval_notifier_insert"):
        assert by[name].methods == ("kprobe",) and by_off[name].off is Off.COUNTS
    assert ("mnmon_notifier_invalidation_duration_seconds", None) in by["invalidate_range_start"].feeds
    assert ("mnmon_notifier_invalidation_duration_seconds", None) not in by_off["invalidate_range_start"].feeds
    # lean stays lean
    lean = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), lean=True, latency="sampled")
    assert lean.lean and not lean.sampled and by_name(lean)["notifier_register"].off is Off.LEAN


def test_a_probe_off_by_configuration_is_reported_as_such():
    from monitor.attach.probe import attach_spec
    by = by_name(plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), lean=True))
    st = attach_spec(object(), by["invalidate_range_end"])
    assert (st.attached, st.disabled, st.method) == (False, True, "")
    assert st.reason == "off in the lean configuration: ends (and sections in progress) not counted"
