"""Where a process's resident memory is: /proc/<pid>/smaps summed per kind of mapping,
and glibc malloc's own account (mallinfo2). For bench/memory_phases.py.

    by_mapping(Path("/proc/self/smaps").read_text())  -> {"heap": kB, "LLVM": kB, ...}
"""
import ctypes
import os
import re

# A mapping line: "start-end perms offset dev inode [pathname]".
_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S{4} [0-9a-f]+ \S+ \d+\s*(.*)$")
_RSS = re.compile(r"^Rss:\s+(\d+) kB$")
# Libraries worth their own line, by the start of their file name.
_LIBRARIES = (("LLVM", re.compile(r"libLLVM")), ("clang", re.compile(r"libclang")),
              ("bcc", re.compile(r"libbcc")), ("python", re.compile(r"(lib)?python3")))


def kind(path):
    """The group a mapping's pathname falls in: 'heap' (brk), 'anon' (mmap: malloc's
    large chunks and thread arenas, Python's arenas), 'bpf' (mmapped maps: ring buffer),
    a library named in _LIBRARIES, 'other libs', 'stack', or the bracketed name."""
    if not path:
        return "anon"
    if path == "[heap]":
        return "heap"
    if path.startswith("[stack"):
        return "stack"
    if path.startswith("anon_inode:"):
        return "bpf" if "bpf" in path else path
    if path.startswith("["):
        return "anon" if path.startswith("[anon") else path
    name = os.path.basename(path)
    for label, pattern in _LIBRARIES:
        if pattern.match(name):
            return label
    return "other files"


def by_mapping(smaps_text):
    """{kind: resident kB} summed over the mappings of a /proc/<pid>/smaps listing."""
    out, current = {}, None
    for line in smaps_text.splitlines():
        m = _MAPPING.match(line)
        if m:
            current = kind(m.group(1).strip())
            continue
        m = _RSS.match(line)
        if m and current is not None:
            out[current] = out.get(current, 0) + int(m.group(1))
    return out


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


def mallinfo():
    """{'arena': bytes from brk and arenas, 'mmapped': in mmapped chunks, 'used': in use,
    'free': free in the arenas' lists} over every arena; {} without glibc 2.33's mallinfo2."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except AttributeError:
        return {}
    fn.restype = _Mallinfo2
    mi = fn()
    return {"arena": mi.arena, "mmapped": mi.hblkhd, "used": mi.uordblks, "free": mi.fordblks}
