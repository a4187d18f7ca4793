"""The running kernel's BTF locates every field mnmon's BPF reads where the kernel's own
headers put it: compiled on a kernel that has both, each F_ offset (monitor/kernel/layout.py)
is asserted equal to the headers' offsetof, at compile time. Elsewhere (a leg booted with
another kernel's headers) the counts of the probe and OOM tests are the proof."""
import os

import pytest

from monitor.attach import loader
from monitor.kernel import layout
from monitor.kernel.facts import find_headers

# Structs no header declares (private to mm/mmu_notifier.c): BTF is their only source.
PRIVATE = {"mmu_notifier_subscriptions"}
INCLUDES = """#include <linux/sched.h>
#include <linux/mm_types.h>
#include <linux/mmu_notifier.h>
#include <linux/interval_tree.h>
#include <linux/cgroup-defs.h>
#include <linux/kernfs.h>
"""


def test_every_btf_offset_equals_the_kernels_own_headers():
    release = os.uname().release
    if find_headers(release)[0] != "matching":
        pytest.skip("this guest has another kernel's headers: the probe and OOM counts prove the layout here")
    lay, why = layout.read("matching")
    assert lay is not None and lay.source == layout.BTF_SOURCE, why
    assert lay.missing == {}, lay.missing
    checks = [f'_Static_assert(F_{name} == offsetof(struct {struct}, {path}), "{name}: {struct}.{path}");'
              for name, (struct, path) in sorted(lay.paths.items()) if struct not in PRIVATE]
    _, NoAutoload = loader.import_bcc()
    NoAutoload(text=(INCLUDES + "\n".join(checks) + "\nint noop(void *ctx) { return 0; }\n").encode(),
               cflags=lay.cflags())     # a wrong offset fails this compile, naming the field
    compared = len(checks)
    print(f"layout: {compared} fields at the BTF offset == their headers' offsetof; "
          f"{len(lay.paths) - compared} from BTF only ({', '.join(sorted(PRIVATE))})")
    assert compared >= 25
