"""Kernel addresses to (function, module), from a literal /proc/kallsyms."""
import pytest

from monitor.kernel.symbols import UNKNOWN, Symbol, Symbols, parse_kallsyms

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff8127e8d0 t __pfx_kvm_mmu_notifier_invalidate_range_start
ffffffff8127e8e0 t kvm_mmu_notifier_invalidate_range_start
ffffffff8127ea40 t kvm_mmu_notifier_invalidate_range_end
ffffffff81595630 t __oom_reap_task_mm
ffffffff81660d80 T __mmu_notifier_register
ffffffff82a00000 D init_task
ffffffff82b00000 d mmu_notifier_srcu
ffffffff82c00000 B oom_reaper_th
ffffffff82d00000 b oom_reaper_list
ffffffff82e00000 R kallsyms_names
ffffffff82e10000 r __ksymtab_kvm_vcpu_kick
ffffffff82f00000 W some_weak_function
ffffffff82f00100 w some_local_weak
ffffffff82f10000 A absolute_symbol
ffffffffc0a11000 t nouveau_svm_range_invalidate\t[nouveau]
ffffffffc0a11400 t nouveau_svmm_invalidate_range_start\t[nouveau]
ffffffffc0a20000 d nouveau_svm_ops\t[nouveau]
ffffffffc0025b88 t bpf_prog_5921938c97b47d87_on_mark_victim\t[bpf]
ffffffffc0201000 t ftrace_trampoline\t[__builtin__ftrace]
0000000000000000 T hidden_without_cap_syslog
0000000000000000 t hidden_module_fn\t[kvm]
not a line
""".replace("\\t", "\t")


def test_parse_keeps_text_symbols_sorted_by_address():
    syms = parse_kallsyms(KALLSYMS)
    assert [(hex(s.addr), s.name, s.module) for s in syms] == [
        ("0xffffffff81000000", "_stext", "vmlinux"),
        ("0xffffffff81000000", "_text", "vmlinux"),
        ("0xffffffff8127e8d0", "__pfx_kvm_mmu_notifier_invalidate_range_start", "vmlinux"),
        ("0xffffffff8127e8e0", "kvm_mmu_notifier_invalidate_range_start", "vmlinux"),
        ("0xffffffff8127ea40", "kvm_mmu_notifier_invalidate_range_end", "vmlinux"),
        ("0xffffffff81595630", "__oom_reap_task_mm", "vmlinux"),
        ("0xffffffff81660d80", "__mmu_notifier_register", "vmlinux"),
        ("0xffffffff82f00000", "some_weak_function", "vmlinux"),
        ("0xffffffff82f00100", "some_local_weak", "vmlinux"),
        ("0xffffffffc0025b88", "bpf_prog_5921938c97b47d87_on_mark_victim", "bpf"),
        ("0xffffffffc0201000", "ftrace_trampoline", "__builtin__ftrace"),
        ("0xffffffffc0a11000", "nouveau_svm_range_invalidate", "nouveau"),
        ("0xffffffffc0a11400", "nouveau_svmm_invalidate_range_start", "nouveau"),
    ]


def test_parse_of_a_listing_without_cap_syslog_is_empty():
    # Every address reads 0 without CAP_SYSLOG: nothing must resolve to one name.
    text = "0000000000000000 T _stext\n0000000000000000 t kvm_mmu_notifier_invalidate_range_start\t[kvm]\n"
    assert parse_kallsyms(text) == []
    assert Symbols(parse_kallsyms(text)).resolve(0xffffffff8127e8e1) == UNKNOWN


@pytest.fixture
def symbols():
    return Symbols(parse_kallsyms(KALLSYMS))


@pytest.mark.parametrize("addr, expected", [
    (0xffffffff8127e8e0, ("kvm_mmu_notifier_invalidate_range_start", "vmlinux")),    # the entry
    (0xffffffff8127e8e1, ("kvm_mmu_notifier_invalidate_range_start", "vmlinux")),    # a kprobe's ip: entry + 1
    (0xffffffff8127ea3f, ("kvm_mmu_notifier_invalidate_range_start", "vmlinux")),    # its last byte
    (0xffffffff8127ea40, ("kvm_mmu_notifier_invalidate_range_end", "vmlinux")),
    (0xffffffff8127e8d5, ("__pfx_kvm_mmu_notifier_invalidate_range_start", "vmlinux")),
    (0xffffffff81000000, ("_text", "vmlinux")),                       # aliases: the last listed
    (0xffffffffc0a11401, ("nouveau_svmm_invalidate_range_start", "nouveau")),
    (0xffffffffc0a11001, ("nouveau_svm_range_invalidate", "nouveau")),
    # data symbols are not in the table: an address past a function's data resolves to the function before
    (0xffffffff82a00001, ("__mmu_notifier_register", "vmlinux")),
    (0, UNKNOWN),
    (0xffffffff80ffffff, UNKNOWN),                                    # before the first symbol
    (1, UNKNOWN),
])
def test_resolve(symbols, addr, expected):
    assert symbols.resolve(addr) == expected


def test_lookup_and_contains(symbols):
    assert symbols.lookup("nouveau_svm_range_invalidate") == Symbol(0xffffffffc0a11000, "nouveau_svm_range_invalidate",
                                                                     "nouveau")
    assert symbols.lookup("init_task") is None                         # data
    assert symbols.lookup("hidden_module_fn") is None                  # zero address
    assert "__oom_reap_task_mm" in symbols
    assert "oom_reap_task_mm" not in symbols


def test_lookup_of_a_name_listed_twice_is_the_first(tmp_path):
    # Static functions of the same name in two objects: lookup gives the lowest address.
    text = "ffffffff81000200 t dup\nffffffff81000100 t dup\t[mod]\n"
    path = tmp_path / "kallsyms"
    path.write_text(text)
    syms = Symbols.load(path)
    assert syms.lookup("dup") == Symbol(0xffffffff81000100, "dup", "mod")
    assert syms.resolve(0xffffffff81000201) == ("dup", "vmlinux")


def test_extents_of_process_mrelease_from_a_6_1_listing():
    # Debian 12's kallsyms around process_mrelease: __pfx_ padding symbols must not match.
    from monitor.attach.session import MRELEASE_FUNCS
    text = """\
ffffffff815969d0 t __pfx___do_sys_process_mrelease
ffffffff815969e0 t __do_sys_process_mrelease
ffffffff81596c40 t __pfx_oom_killer_enable
ffffffff81598260 T __pfx___x64_sys_process_mrelease
ffffffff81598270 T __x64_sys_process_mrelease
ffffffff81598280 T __pfx___ia32_sys_process_mrelease
ffffffff81598290 T __ia32_sys_process_mrelease
ffffffff815982a0 T other
ffffffffc0000000 t __do_sys_process_mrelease\t[some_module]
""".replace("\\t", "\t")
    syms = Symbols(parse_kallsyms(text))
    assert syms.extents(MRELEASE_FUNCS) == [(0xffffffff815969e0, 0xffffffff81596c40),
                                            (0xffffffff81598270, 0xffffffff81598280),
                                            (0xffffffff81598290, 0xffffffff815982a0)]
    # the last symbol has no known end: left out rather than guessed
    assert Symbols(parse_kallsyms("ffffffff81000000 T __x64_sys_process_mrelease\n")).extents(MRELEASE_FUNCS) == []
