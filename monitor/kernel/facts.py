"""Facts about the running kernel that decide what mnmon can attach, and how."""
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from monitor.kernel import features
from monitor.kernel.layout import Layout

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

# Functions whose presence in kallsyms the plan looks at.
SYMBOLS_OF_INTEREST = (
    "__mmu_notifier_invalidate_range_start", "__mmu_notifier_invalidate_range_end",
    "__mmu_notifier_register", "mmu_interval_notifier_insert", "mmu_interval_notifier_insert_locked",
    "__oom_reap_task_mm", "oom_reap_task_mm", "sched_show_task", "__mmu_notifier_release",
    "out_of_memory", "exit_mmap", "vprintk_emit",
)
TRACEPOINTS_OF_INTEREST = (
    "oom:mark_victim", "oom:start_task_reaping", "oom:finish_task_reaping", "oom:skip_task_reaping",
    "oom:wake_reaper",
)


@dataclass
class KernelFacts:
    release: str
    version: tuple                    # (major, minor, patch)
    btf: bool                         # /sys/kernel/btf/vmlinux
    headers: str                      # matching | other | none
    headers_dir: str = ""
    kprobes: bool = False
    kfunc: bool = False               # bcc sees BTF and BPF trampolines (attach may still be refused)
    bcc_task_storage: bool = False    # bcc declares task storage maps (BPF_TASK_STORAGE, 0.24+)
    symbols: frozenset = frozenset()  # SYMBOLS_OF_INTEREST present in kallsyms
    tracepoints: frozenset = frozenset()
    mark_victim_fields: dict = field(default_factory=dict)   # name -> offset in the record
    privileged: bool = True
    layout: Optional[Layout] = None   # where the fields the BPF reads lie (layout.py); None: unknown
    layout_error: str = ""            # why layout is None
    unreadable: tuple = ()            # "PATH: reason" of what could not be read (no privileges)
    # Probed features (monitor/kernel/features.py); None: not probed, the plan goes by the version.
    ringbuf: Optional[bool] = None    # BPF ring buffer maps (5.8+)
    module_btf: Optional[bool] = None  # modules carry BTF (5.11+)
    # False when symbols / tracepoints are empty because they could not be read, not absent.
    kallsyms_readable: bool = True
    tracefs_readable: bool = True
    machine: str = field(default_factory=platform.machine)   # x86_64, aarch64: how arguments are passed


def parse_version(release):
    """'6.1.0-56-amd64' -> (6, 1, 0); '4.19.0' -> (4, 19, 0)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        raise ValueError(f"cannot read a kernel version from {release!r}")
    return tuple(int(x or 0) for x in m.groups())


def parse_tracepoint_format(text):
    """{field name: offset} of a tracepoint format file (common_* fields included)."""
    out = {}
    for m in re.finditer(r"field:[^;]*?([A-Za-z_]\w*)(?:\[\w*\])?;\s*offset:(\d+);", text):
        out[m.group(1)] = int(m.group(2))
    return out


def _version_key(release):
    """Sort key of releases that orders 6.1.0-56 after 6.1.0-9."""
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in re.split(r"[.-]", release)]


def tracefs(mount=True, denied=None):
    """The tracefs mount, mounting it at /sys/kernel/tracing when none is (and we may).

    A mount this user may not enter (tracefs is root's, mode 0700) is skipped and,
    when `denied` is a list, added to it as "PATH: permission denied".
    """
    for d in TRACEFS_DIRS:
        try:
            if Path(d, "events").is_dir():
                return Path(d)
        except PermissionError:
            if denied is not None:
                denied.append(f"{d}: permission denied")
    if mount and os.geteuid() == 0 and Path(TRACEFS_DIRS[0]).is_dir():
        # What systemd does at boot; a bare container or initramfs may not have.
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS_DIRS[0]],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if Path(TRACEFS_DIRS[0], "events").is_dir():
            return Path(TRACEFS_DIRS[0])
    return None


def find_headers(release, modules=Path("/lib/modules"), env=os.environ):
    """('matching' | 'other' | 'none', directory). bcc compiles against these.

    'other' headers (another kernel's) compile everything; struct fields are then located
    by the running kernel's BTF (layout.py), and without BTF struct readers stay off.
    """
    if env.get("BCC_KERNEL_SOURCE"):
        d = Path(env["BCC_KERNEL_SOURCE"])
        return ("matching" if release in str(d.resolve()) else "other"), str(d)
    own = modules / release / "build"
    if own.exists():
        return "matching", str(own)
    if Path("/sys/kernel/kheaders.tar.xz").exists():
        return "matching", "/sys/kernel/kheaders.tar.xz"
    others = sorted((p / "build" for p in modules.glob("*") if (p / "build").exists()),
                    key=lambda p: _version_key(p.parent.name))
    return ("other", str(others[-1])) if others else ("none", "")


def privileged():
    """root, or the capabilities bcc needs (CAP_BPF 39 + CAP_PERFMON 38, or CAP_SYS_ADMIN 21)."""
    if os.geteuid() == 0:
        return True
    eff = _cap_eff()
    return bool(eff & (1 << 21)) or (bool(eff & (1 << 39)) and bool(eff & (1 << 38)))


def permission_problem(euid=None, caps=None, tracefs_dirs=TRACEFS_DIRS):
    """Why this process cannot attach, in one line naming what is missing; "" when it can.

    bcc needs CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN before 5.8), and it writes kprobes to
    and reads tracepoint formats from tracefs, which is root's (mode 0700): a non-root user
    holding the capabilities still cannot. So: root with CAP_BPF, CAP_PERFMON (and
    CAP_SYSLOG, to name callbacks from /proc/kallsyms), as deploy/systemd/mnmon.service runs it.
    """
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return ""
    if not (privileged() if caps is None else
            bool(caps & (1 << 21)) or (bool(caps & (1 << 39)) and bool(caps & (1 << 38)))):
        return ("mnmon needs root (with CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN before 5.8): "
                "this process has neither")
    for d in tracefs_dirs:
        try:
            os.listdir(d)
        except PermissionError:
            return (f"mnmon needs root: it holds CAP_BPF and CAP_PERFMON, but {d} (tracefs, where bcc "
                    "creates kprobes and reads tracepoint formats) is root's")
        except OSError:
            continue
        break
    return ""


def _cap_eff():
    try:
        return int(re.search(r"^CapEff:\s*([0-9a-f]+)", Path("/proc/self/status").read_text(), re.M).group(1), 16)
    except (OSError, AttributeError):
        return 0


def bcc_version():
    """The importable bcc's version, "none" without one (no import error here)."""
    try:
        import bcc     # noqa: PLC0415 -- doctor and build_info need only its version
    except ImportError:
        return "none"
    return getattr(bcc, "__version__", "unknown")


def bcc_has_task_storage(version):
    """Whether a bcc of this version ('0.26.0') compiles BPF_TASK_STORAGE (0.24+)."""
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (0, 24)


def gather(symbols, kfunc_support=lambda: False, bcc_version=""):
    """Read the facts from this host. symbols: a monitor.kernel.symbols.Symbols; bcc_version:
    bcc.__version__."""
    release = os.uname().release
    headers, hdir = find_headers(release)
    unreadable = []
    tfs = tracefs(denied=unreadable)
    tracefs_readable = tfs is not None or not unreadable
    tps, mv = set(), {}
    if tfs:
        for tp in TRACEPOINTS_OF_INTEREST:
            if (tfs / "events" / tp.replace(":", "/")).is_dir():
                tps.add(tp)
        fmt = tfs / "events/oom/mark_victim/format"
        if fmt.exists():
            mv = parse_tracepoint_format(fmt.read_text())
    kprobes = Path("/sys/bus/event_source/devices/kprobe").exists() or bool(tfs and (tfs / "kprobe_events").exists())
    kallsyms_readable = bool(len(symbols)) or not Path("/proc/kallsyms").exists()
    if not kallsyms_readable:
        unreadable.append("/proc/kallsyms: addresses hidden (needs root or CAP_SYSLOG)")
    return KernelFacts(
        release=release, version=parse_version(release), btf=Path("/sys/kernel/btf/vmlinux").exists(),
        headers=headers, headers_dir=hdir, kprobes=kprobes, kfunc=kfunc_support(),
        bcc_task_storage=bcc_has_task_storage(bcc_version),
        symbols=frozenset(s for s in SYMBOLS_OF_INTEREST if s in symbols),
        tracepoints=frozenset(tps), mark_victim_fields=mv, privileged=privileged(),
        unreadable=tuple(unreadable), ringbuf=features.ring_buffer(), module_btf=features.module_btf(),
        kallsyms_readable=kallsyms_readable, tracefs_readable=tracefs_readable)
