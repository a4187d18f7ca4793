"""Finding notifier callbacks: by prototype in BTF, and by address at registration.

A callback is named by its symbol and module. Kinds (bpf/mnmon.h):
  list      int  (*invalidate_range_start)(struct mmu_notifier *, const struct mmu_notifier_range *)
  list_end  void (*invalidate_range_end)  (same)
  interval  bool (*invalidate)(struct mmu_interval_notifier *, const struct mmu_notifier_range *,
                               unsigned long cur_seq)
4.19's list ops took (mn, mm, start, end[, bool blockable]); 7.1's two-pass interval
ops add a 'finish' out-parameter to invalidate_start.
"""
from dataclasses import dataclass, field
from pathlib import Path

from monitor.kernel.btf import BTF, BTFError, load as btf_load

from monitor.read.contract import FOUND, KINDS

LIST, INTERVAL, LIST_END = (KINDS.index(k) for k in ("list", "interval", "list_end"))


def decode_discovered(value):
    """(kind, how found) of a `discovered` map value: KIND_* | FOUND_* << 8."""
    how = value >> 8
    return value & 0xFF, FOUND[how] if how < len(FOUND) else "unknown"

_MN = "struct mmu_notifier *"
_MNI = "struct mmu_interval_notifier *"
_RANGE = "struct mmu_notifier_range *"
_MM = "struct mm_struct *"
_ULONG = "long unsigned int"


@dataclass(frozen=True)
class Callback:
    symbol: str
    module: str
    kind: int
    found: str = field(default="btf", compare=False)    # btf | registration | invalidation

    @property
    def kind_name(self):
        return KINDS[self.kind]


def classify(name, ret, params):
    """The callback kind a prototype fits, or None. Pure: tested on literal prototypes."""
    if params == [_MN, _RANGE]:                                   # 5.0+
        return LIST if ret == "int" else LIST_END if ret == "void" else None
    if params == [_MN, _MM, _ULONG, _ULONG, "_Bool"] and ret == "int":   # 4.19
        return LIST
    # 4.19's end shares (mn, mm, start, end) with ->invalidate_range: only the name tells.
    if params == [_MN, _MM, _ULONG, _ULONG] and ret == "void" and name.endswith("_end"):
        return LIST_END
    if params[:3] == [_MNI, _RANGE, _ULONG] and len(params) in (3, 4) and ret == "_Bool":
        return INTERVAL                                           # 5.5+; 7.1 invalidate_start
    return None


def callbacks_in(btf, module):
    """Every function of one BTF blob whose prototype is a notifier callback's."""
    out = []
    for name, proto in btf.functions():
        try:
            ret, params = btf.prototype(proto)
        except BTFError:
            continue
        kind = classify(name, ret, params)
        if kind is not None:
            out.append(Callback(name, module, kind))
    return out


class BTFScanner:
    """Scans /sys/kernel/btf: vmlinux once, each module when it first appears."""

    def __init__(self, root="/sys/kernel/btf"):
        self.root = Path(root)
        self.seen = set()
        self._base = None

    def available(self):
        return (self.root / "vmlinux").exists()

    def base(self):
        """vmlinux BTF, parsed once (fentry on callbacks needs it too); None without it."""
        if self._base is None and self.available():
            self._base = btf_load(str(self.root / "vmlinux"))
        return self._base

    def scan(self):
        """Callbacks in BTF not reported by an earlier scan (modules loaded since)."""
        if not self.available():
            return []
        self.base()
        found = []
        for path in sorted(self.root.iterdir()):
            if path.name in self.seen:
                continue
            self.seen.add(path.name)
            try:
                if path.name == "vmlinux":
                    found += callbacks_in(self._base, "vmlinux")
                else:
                    found += callbacks_in(BTF(path.read_bytes(), base=self._base), path.name)
            except (OSError, BTFError):
                continue        # a module unloading under us, or BTF we cannot read
        return found

    def forget(self, module):
        """Rescan a module next time (it was unloaded; a new load has new addresses)."""
        self.seen.discard(module)
