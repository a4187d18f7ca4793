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
# The OOM domain's structs: their headers pull in fs.h, which 7.x writes in C that Debian 12's
# bcc (clang 14) does not parse. Compared up to 6.x; on 7.x test_premature.py's domain, the
# memcg's own cgroup read through both offsets, is the proof.
OOM_DOMAIN_INCLUDES = """#include <linux/oom.h>
#include <linux/memcontrol.h>
"""
OOM_DOMAIN_STRUCTS = {"oom_control", "mem_cgroup"}


def test_every_btf_offset_equals_the_kernels_own_headers():
    release = os.uname().release
    if find_headers(release)[0] != "matching":
        pytest.skip("this guest has another kernel's headers: the probe and OOM counts prove the layout here")
    lay, why = layout.read("matching")
    assert lay is not None and lay.source == layout.BTF_SOURCE, why
    assert lay.missing == {}, lay.missing
    btf_only = PRIVATE | (OOM_DOMAIN_STRUCTS if int(release.split(".")[0]) >= 7 else set())
    includes = INCLUDES + ("" if OOM_DOMAIN_STRUCTS <= btf_only else OOM_DOMAIN_INCLUDES)
    checks = [f'_Static_assert(F_{name} == offsetof(struct {struct}, {path}), "{name}: {struct}.{path}");'
              for name, (struct, path) in sorted(lay.paths.items()) if struct not in btf_only]
    _, NoAutoload = loader.import_bcc()
    NoAutoload(text=(includes + "\n".join(checks) + "\nint noop(void *ctx) { return 0; }\n").encode(),
               cflags=lay.cflags())     # a wrong offset fails this compile, naming the field
    compared = len(checks)
    print(f"layout: {compared} fields at the BTF offset == their headers' offsetof; "
          f"{len(lay.paths) - compared} from BTF only ({', '.join(sorted(btf_only))})")
    assert compared >= 25
