"""Which mappings release_compiler_memory() may unmap: compiler code only, never data."""
from monitor.attach.memory import compiler_text

MAPS = """\
55d0c0a00000-55d0c0a6b000 r--p 00000000 08:01 1311 /usr/bin/python3.11
7f1e40000000-7f1e42000000 rw-p 00000000 00:00 0
7f1e50000000-7f1e5081c000 r--p 00000000 08:01 2001 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f1e5081c000-7f1e54a9e000 r-xp 0081c000 08:01 2001 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f1e54a9e000-7f1e54f00000 r--p 04a9e000 08:01 2001 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f1e54f00000-7f1e54f40000 rw-p 04f00000 08:01 2001 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f1e56000000-7f1e58a00000 r-xp 00400000 08:01 2002 /usr/lib/llvm-14/lib/libclang-cpp.so.14
7f1e59000000-7f1e59100000 r-xp 00020000 08:01 2003 /usr/lib/x86_64-linux-gnu/libbcc.so.0.26.0
7f1e5a000000-7f1e5a100000 r-xp 00020000 08:01 2004 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e5b000000-7f1e5b001000 r-xp 00000000 08:01 2005 /tmp/libLLVM-14.so.1 (deleted)
7ffc8a000000-7ffc8a021000 rw-p 00000000 00:00 0                          [stack]
"""


def test_only_the_compiler_libraries_code():
    assert compiler_text(MAPS) == [(0x7f1e5081c000, 0x7f1e54a9e000), (0x7f1e56000000, 0x7f1e58a00000)]


def test_released_code_faults_back_in(tmp_path):
    # In a child: load LLVM, run it, release its code, run it again.
    import ctypes.util
    import subprocess
    import sys
    import textwrap
    import pytest
    lib = ctypes.util.find_library("LLVM-14") or ctypes.util.find_library("LLVM")
    if lib is None:
        pytest.skip("no libLLVM on this machine (bcc's dependency)")
    child = textwrap.dedent(f"""
        import ctypes
        from monitor.attach.memory import compiler_text, release_compiler_memory
        from pathlib import Path
        llvm = ctypes.CDLL({lib!r})
        llvm.LLVMContextCreate.restype = ctypes.c_void_p
        llvm.LLVMContextDispose.argtypes = (ctypes.c_void_p,)
        llvm.LLVMContextDispose(llvm.LLVMContextCreate())
        assert compiler_text(Path("/proc/self/maps").read_text())
        released = release_compiler_memory()
        llvm.LLVMContextDispose(llvm.LLVMContextCreate())      # faults its code back in
        print(released)
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) >= 0


def test_refresh_trims_the_heap_every_minute_even_where_callbacks_cannot_attach(monkeypatch):
    # The daemon's refresh timer is what gives scrapes' freed buffers back (RSS after an
    # hour of scrapes: 133 MB without, 96 MB trimmed, in the benchmark).
    from monitor.plan import attach_plan
    from monitor.attach import memory
    from monitor.attach import session as probes
    from monitor.plan.decisions import Block, Off
    trims = []
    monkeypatch.setattr(memory, "malloc_trim", lambda: trims.append(1) or True)
    plan = attach_plan.Plan(505, [], [], callbacks_off=Block(Off.KERNEL, "no kprobes on this kernel"))
    mon = probes.Monitor(bpf=None, facts=None, plan=plan, symbols=None, statuses={})
    for _ in range(probes.TRIM_EVERY - 1):
        assert mon.refresh() == []
    assert trims == []
    mon.refresh()
    assert len(trims) == 1
    for _ in range(probes.TRIM_EVERY):
        mon.refresh()
    assert len(trims) == 2


def test_trimmer_trims_when_due_or_when_rss_grew():
    from monitor.attach.memory import Trimmer
    rss, trims = [100_000], []

    def trim():
        trims.append(rss[0])
        rss[0] = 100_000            # what a trim gives back
    t = Trimmer(every=12, slack_kb=2048, rss_kb=lambda: rss[0], trim=trim)
    assert not any(t.tick() for _ in range(11))
    assert t.tick() and trims == [100_000]          # the twelfth: a minute
    rss[0] = 102_000
    assert not t.tick()                             # grown, less than the slack
    rss[0] = 102_048
    assert t.tick() and trims == [100_000, 102_048]
    assert not t.tick()


def test_trimmer_takes_lasting_growth_as_its_new_base():
    from monitor.attach.memory import Trimmer
    rss, trims = [100_000], []
    t = Trimmer(every=1000, slack_kb=2048, rss_kb=lambda: rss[0], trim=lambda: trims.append(1))
    t.tick()
    rss[0] = 110_000                # in use: a trim gives nothing back
    assert t.tick()
    assert not t.tick() and len(trims) == 1         # not trimmed at every tick after


def test_resident_kb_reads_statm(tmp_path):
    import os
    from monitor.attach.memory import resident_kb
    statm = tmp_path / "statm"
    statm.write_text("5000 300 200 10 0 400 0\n")
    assert resident_kb(statm) == 300 * os.sysconf("SC_PAGE_SIZE") // 1024
