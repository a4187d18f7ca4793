"""Giving back what bcc's compile left resident, once the program is loaded.

Compiling pulls in clang and LLVM: about 70 MB of their code becomes resident, and
the compile's heap stays in malloc's free lists. Neither is needed again unless a
module load makes mnmon compile again, and then the kernel faults the code back in.

    release_compiler_memory(bpf)   # after the load; returns MB of RSS given back

Code pages are clean, file-backed copies: MADV_DONTNEED only unmaps them (the page
cache keeps them for other processes). That is what bcc's own bcc_free_memory()
does for libbcc's text, which it calls for tools that link LLVM statically; Debian's
libbcc links LLVM and clang as shared libraries, so their text is released here.
Only executable mappings are touched: read-only data may hold relocated pointers
(RELRO), which a re-read from the file would undo.
"""
import ctypes
import os
import re
from pathlib import Path

MADV_DONTNEED = 4
# The compiler libraries libbcc loads (libLLVM-14.so.1, libclang-cpp.so.14, ...).
COMPILER = re.compile(r"lib(LLVM|clang)[\w.+-]*\.so[\w.]*$")


def compiler_text(maps_text):
    """[(start, end)] of the executable private mappings of the compiler libraries, from
    a /proc/<pid>/maps listing."""
    out = []
    for line in maps_text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[1] == "r-xp" and COMPILER.search(os.path.basename(parts[5])):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append((lo, hi))
    return out


def status_kb(pid="self"):
    """{field: kB} of the memory lines of /proc/<pid>/status (VmRSS, RssAnon, RssFile...)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB$", text, re.M)}


def malloc_trim():
    """Hand free heap pages back to the kernel; True if any were. False without glibc."""
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except AttributeError:
        return False


def resident_kb(statm="/proc/self/statm"):
    """This process's resident memory in kB (one short read: cheap enough for every refresh)."""
    return int(Path(statm).read_text().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


class Trimmer:
    """malloc_trim(0) every `every` ticks, and at a tick that finds RSS grown by slack_kb
    since the last trim.

    Why sooner: the compile leaves tens of MB of free chunks between live ones in the
    main heap. Trimmed, they cost no RSS; but a transient buffer (a verifier log, a
    module's BTF, a /proc listing) carved from them makes their pages resident again,
    and freed they stay so until the next trim: the daemon's RSS read 25 MB above the
    trimmed figure after attaching callbacks on 6.1, between two trims a minute apart.
    """

    def __init__(self, every, slack_kb, rss_kb=resident_kb, trim=None):
        self.every, self.slack_kb = every, slack_kb
        self._rss_kb, self._trim = rss_kb, trim
        self._ticks = 0
        self._base = None            # RSS after the last trim (kB)

    def tick(self):
        """Trim if due; True if this tick trimmed."""
        self._ticks += 1
        rss = self._rss_kb()
        if self._base is None:
            self._base = rss
        if self._ticks % self.every and rss - self._base < self.slack_kb:
            return False
        (self._trim or malloc_trim)()
        self._base = self._rss_kb()
        return True


def _rss_mb():
    return status_kb()["VmRSS"] / 1024


def release_compiler_memory(bpf=None):
    """Unmap the compiler's resident code, trim malloc's heap; MB of RSS given back.
    Best effort: a libc or kernel that refuses leaves things as they were."""
    before = _rss_mb()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for lo, hi in compiler_text(Path("/proc/self/maps").read_text()):
        libc.madvise(lo, hi - lo, MADV_DONTNEED)
    if bpf is not None:
        try:
            bpf.free_bcc_memory()          # libbcc's own text
        except (AttributeError, OSError):
            pass
    malloc_trim()
    return before - _rss_mb()
