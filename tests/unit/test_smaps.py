from bench import smaps

SMAPS = """\
55d0c0000000-55d0c2000000 rw-p 00000000 00:00 0                          [heap]
Size:              32768 kB
Rss:                2048 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Rss:                 512 kB
7f0000200000-7f0000300000 r-xp 00001000 08:01 1234                       /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Rss:                1024 kB
7f0000300000-7f0000400000 r--p 00001000 08:01 1235                       /usr/lib/x86_64-linux-gnu/libclang-cpp.so.14
Rss:                 256 kB
7f0000400000-7f0000500000 r--s 00000000 00:0e 99                         anon_inode:bpf-ringbuf
Rss:                  64 kB
7f0000500000-7f0000600000 r--p 00000000 08:01 77                         /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 100 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                  16 kB
"""


def test_by_mapping_sums_rss_per_kind():
    assert smaps.by_mapping(SMAPS) == {"heap": 2048, "anon": 512, "LLVM": 1024, "clang": 256,
                                      "bpf": 64, "other files": 100, "stack": 16}


def test_kind_names():
    assert smaps.kind("") == "anon"
    assert smaps.kind("[anon:glibc]") == "anon"
    assert smaps.kind("[vdso]") == "[vdso]"
    assert smaps.kind("/usr/lib/x86_64-linux-gnu/libbcc.so.0.26.0") == "bcc"
    assert smaps.kind("/usr/bin/python3.11") == "python"


def test_mallinfo_reports_bytes_or_nothing():
    mi = smaps.mallinfo()
    assert mi == {} or set(mi) == {"arena", "mmapped", "used", "free"}
