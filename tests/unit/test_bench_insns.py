"""The benchmark's instruction counts: reading the QEMU plugin's file, ratios, the table rows."""
import pytest

from bench import insns
from bench.__main__ import insn_rows
from bench.overhead import ModeResult


def test_parse_reads_counts_and_rejects_anything_else():
    assert insns.parse("insns=31691285\ninsns=12\n") == [31691285, 12]
    assert insns.parse("") == []
    with pytest.raises(insns.InsnsError, match="unexpected line"):
        insns.parse("insns=12\nsomething else\n")
    with pytest.raises(insns.InsnsError):
        insns.parse("insns=-3\n")


def test_counter_needs_the_plugins_file(tmp_path):
    with pytest.raises(insns.InsnsError, match="no such file"):
        insns.Counter(tmp_path / "insns.log")


def test_counter_takes_only_what_came_since(tmp_path):
    f = tmp_path / "insns.log"
    f.write_text("insns=1\n")                       # a loop before the counter existed
    c = insns.Counter(f)
    assert c.take() == []
    with open(f, "a") as out:
        out.write("insns=200\ninsns=3")             # the second line not yet complete
    assert c.take() == [200]
    with open(f, "a") as out:
        out.write("00\n")
    assert c.one() == 300
    with pytest.raises(insns.InsnsError, match="found 0"):
        c.one()
    with open(f, "a") as out:
        out.write("insns=5\ninsns=6\n")
    with pytest.raises(insns.InsnsError, match="found 2"):
        c.one()


def result(mode, off, core, full):
    return ModeResult(mode, "fentry", {}, {"off": off, "core": core, "full": full})


def test_instructions_are_the_least_run_and_ratios_are_of_those():
    # Other work during a loop only adds instructions: the least run is the loop's own.
    r = result("kvm", [100.0, 130.0, 101.0], [105.0, 105.5, 120.0], [110.0, 111.0, 112.0])
    assert r.insns_of("off") == 100.0
    assert r.insn_ratio("full") == pytest.approx(1.10)
    assert r.insn_ratio("core") == pytest.approx(1.05)
    assert r.insn_agreement("off") == pytest.approx(0.01)         # 101 over 100
    assert r.insn_outliers("off", 0.01) == 1                      # 130
    assert r.insn_outliers("core", 0.01) == 1                     # 120
    assert result("kvm", [1.0], [1.0], [1.0]).insn_agreement("off") == float("inf")   # one run proves nothing


def test_rows_judge_kvm_against_the_targets_and_repeatability():
    kvm = result("kvm", [1000.0, 1001.0], [1040.0, 1041.0], [1090.0, 1091.0])       # 1.09 <= 1.10
    kvm64 = result("kvm:64", [9000.0, 9001.0], [9100.0, 9100.0], [9300.0, 9301.0])  # 1.033 > 1.02
    lst = result("list", [1000.0, 1300.0, 1002.0], [1100.0] * 3, [1500.0] * 3)      # not judged; an outlier
    details = []
    rows = insn_rows([({"kvm": kvm, "kvm:64": kvm64, "list": lst}, "")], details)
    assert [r.result for r in rows] == ["PASS", "MISS", "info", "PASS"]
    assert rows[0].measured.startswith("1.090 / 1.040 (1,000 -> 1,040 -> 1,090")
    assert "least two runs within 1%" in rows[-1].target
    assert rows[-1].measured.startswith("9 of 9 series")
    assert "1 of 21 single runs" in rows[-1].measured            # list/off: 1300 over 1000
    assert len(details) == 3 and "off 1000 1300 1002" in details[2]

    noisy = result("kvm", [1000.0, 1020.0], [1040.0, 1041.0], [1090.0, 1091.0])     # off 2 % apart
    rows = insn_rows([({"kvm": noisy}, "")], [])
    assert rows[-1].result == "MISS" and "widest 2.00% (kvm/fentry/off)" in rows[-1].measured


def test_no_rows_without_counts():
    timed_only = ModeResult("kvm", "fentry", {"off": [1.0], "core": [1.0], "full": [1.0]})
    assert insn_rows([({"kvm": timed_only}, "")], []) == []


def test_compare_finds_the_largest_difference_and_judges_it(tmp_path, capsys):
    from bench import compare
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"instructions_per_invalidation": {"kvm/fentry/off": 1000, "kvm/fentry/full": 2000, "x": 5}}')
    b.write_text('{"instructions_per_invalidation": {"kvm/fentry/off": 1005, "kvm/fentry/full": 2030}}')
    assert compare.differences(compare.load(a), compare.load(b))[0][0] == "kvm/fentry/full"
    assert compare.main([str(a), str(b)]) == 1                     # 1.5 % apart
    assert "largest difference 1.50% (kvm/fentry/full): NOT within 1%" in capsys.readouterr().out
    assert compare.main([str(a), str(b), "--within", "0.02"]) == 0
    assert compare.main([str(a), str(tmp_path / "missing.json")]) == 2


def test_the_bed_boots_with_the_plugin_when_asked(monkeypatch):
    from bed import vm
    monkeypatch.setattr(vm.Path, "exists", lambda self: True)
    monkeypatch.setattr(vm.shutil, "which", lambda *a, **k: "/x/vng")
    argv = vm.vng_argv("6.1.0-57-amd64", ["true"], plugin="/b/libinsncount.so,out=/b/insns.log")
    assert "--qemu-opts=-cpu max -plugin /b/libinsncount.so,out=/b/insns.log" in argv
    assert "--qemu-opts=-cpu max" in vm.vng_argv("6.1.0-57-amd64", ["true"])
