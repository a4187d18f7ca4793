"""Layouts of kernel structs the BPF side reads but no header declares.

struct mmu_notifier_subscriptions is private to mm/mmu_notifier.c, so bcc's headers
do not have it; vmlinux BTF does (its offsets move with config, e.g. a debug spinlock).
"""
from pathlib import Path

from monitor.kernel.btf import BTF, BTFError


def subscriptions(btf_path="/sys/kernel/btf/vmlinux"):
    """{"has_itree": offset, "leftmost": offset of itree.rb_leftmost}, or {} when unknown."""
    try:
        btf = BTF(Path(btf_path).read_bytes())
        return from_btf(btf)
    except (OSError, BTFError):
        return {}


def from_btf(btf):
    subs = btf.struct_members("mmu_notifier_subscriptions")
    if "has_itree" not in subs or "itree" not in subs:
        raise BTFError("struct mmu_notifier_subscriptions without has_itree/itree")
    return {"has_itree": subs["has_itree"],
            "leftmost": subs["itree"] + btf.struct_members("rb_root_cached")["rb_leftmost"]}
