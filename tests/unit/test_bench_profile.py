"""The benchmark's per-symbol profile: the plugin's file, kallsyms names, categories."""
import pytest

from bench import insns, profile

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81100000 T jhash
ffffffff81100400 t migrate_enable
ffffffffc0001000 t bpf_prog_6deef7357e7b4530_kfunc____mmu_notifier_invalidate_range_start	[bpf]
ffffffffc0002000 t bpf_trampoline_6442506879	[bpf]
0000000000000000 T hidden_without_privilege
"""


def test_kallsyms_names_an_address_by_the_symbol_at_or_below_it():
    syms = profile.Kallsyms(KALLSYMS)
    assert syms.name(0xffffffff81100000) == "jhash"
    assert syms.name(0xffffffff811003ff) == "jhash"
    assert syms.name(0xffffffff81100400) == "migrate_enable"
    assert syms.name(0xffffffffc0001040).startswith("bpf_prog_")
    assert syms.name(0x401000) == profile.USER


def test_a_bpf_program_is_named_without_its_tag():
    assert profile.short("bpf_prog_6deef7357e7b4530_kfunc____mmu_notifier_invalidate_range_start") == \
        "bpf:kfunc____mmu_notifier_invalidate_range_start"
    assert profile.short("jhash") == "jhash"


def test_profile_takes_whole_loops_only(tmp_path):
    f = tmp_path / "profile.log"
    f.write_text("ffffffff81100000 7\nend\n")          # a loop before the reader existed
    p = profile.Profile(f)
    assert p.take() == []
    with open(f, "a") as out:
        out.write("ffffffff81100000 30\nffffffff81100400 12\nend\nffffffff81100000 5\n")
    assert p.one() == {0xffffffff81100000: 30, 0xffffffff81100400: 12}
    with open(f, "a") as out:
        out.write("end\n")
    assert p.take() == [{0xffffffff81100000: 5}]


def test_profile_needs_the_plugins_file(tmp_path):
    with pytest.raises(insns.InsnsError, match="no such file"):
        profile.Profile(tmp_path / "profile.log")


def test_by_symbol_is_per_invalidation():
    syms = profile.Kallsyms(KALLSYMS)
    got = profile.by_symbol({0xffffffff81100000: 300, 0xffffffff81100010: 100, 0xffffffffc0001000: 50}, syms, 100)
    assert got == {"jhash": 4.0, "bpf:kfunc____mmu_notifier_invalidate_range_start": 0.5}


def test_categories_sum_what_was_added_by_what_it_is_for():
    per_state = {"off": {"__rcu_read_lock": 60, "clear_page_erms": 4100},
                 "core": {},
                 "full": {"__rcu_read_lock": 110, "migrate_enable": 255, "jhash": 240, "memcmp": 60,
                          "bpf:cbf_list_return": 200, "clear_page_erms": 4100, "copy_from_kernel_nofault": 100}}
    totals = {"off": 11000, "core": 0, "full": 12005}
    cats, added = profile.categories(per_state, totals)
    got = dict(cats)
    assert added == 1005
    assert got["trampolines and program entry/exit (per program run)"] == 305
    assert got["hash maps (per-notifier counts)"] == 300
    assert got["BPF programs' own code"] == 200
    assert got["helper reads of kernel memory"] == 100
    assert cats[0][0] == "trampolines and program entry/exit (per program run)"
    assert "+1005" in profile.describe(per_state, totals)
