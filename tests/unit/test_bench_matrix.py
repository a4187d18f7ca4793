"""The bench matrix's pure parts: a leg's command line, RESULTS.json's figures, the
README's per-kernel table from a run's files."""
import json

import pytest

from bed import bench_matrix, bench_table, kernels, matrix_table, slots
from bench import churn, results_json
from bench.__main__ import VARIANTS, variants
from bench.overhead import ModeResult


def test_a_leg_boots_its_kernel_on_one_vcpu_with_the_counter_and_keeps_its_files(tmp_path):
    cmd = bench_matrix.bench_command("5.10.0-46-amd64", tmp_path, plugin="/p/libinsncount.so",
                                     extra=["--reps", "3"], timeout=99)
    host, guest = cmd[:cmd.index("--")], cmd[cmd.index("--") + 1:]
    leg = tmp_path / "5.10.0-46-amd64"
    assert host[1:3] == ["-m", "bed.vm"]
    assert host[host.index("--kernel") + 1] == "5.10.0-46-amd64"
    assert host[host.index("--cpus") + 1] == "1"
    assert host[host.index("--timeout") + 1] == "99"
    # The plugin writes the counts where the guest's bench reads them, in the leg's directory.
    assert host[host.index("--plugin") + 1] == f"/p/libinsncount.so,out={leg / 'insns.log'}"
    assert guest[1:3] == ["-m", "bench"]
    assert guest[guest.index("--insns") + 1] == str(leg / "insns.log")
    assert guest[guest.index("--results") + 1] == str(leg / "RESULTS.md")
    # Only the configurations the table shows: the default build, lean, latency always and every probe.
    assert guest[guest.index("--variants") + 1] == "lean,always,full"
    assert guest[guest.index("--reps") + 1] == "3"
    assert guest[-2:] == ["--reps", "3"]


def test_a_plugin_guest_takes_the_whole_machine():
    # bed.vm gives a guest with a plugin every slot: the leg's command must pass one.
    cmd = bench_matrix.bench_command("6.1.0-57-amd64")
    assert any(a.startswith(str(bench_matrix.PLUGIN) + ",out=") for a in cmd)


def test_the_legs_booted_time_is_bed_vms_last_report():
    log = "vm: 7.2.13+deb14-amd64 booted and ran 12 s\nbench: ...\nvm: 7.2.13+deb14-amd64 booted and ran 431 s\n"
    assert bench_matrix.booted_seconds(log) == 431
    assert bench_matrix.booted_seconds("make: *** [fixture] Error 2\n") is None


def test_variants_are_checked():
    assert variants("lean") == ["lean"]
    assert variants("kprobe,lean") == ["kprobe", "lean"]
    assert variants("") == []
    with pytest.raises(Exception, match="unknown variant kfunc"):
        variants("lean,kfunc")
    assert set(VARIANTS) == {"kprobe", "hash", "lean", "counts", "full", "always"}


def test_the_tables_modes_are_the_benchs():
    assert {bench_table.ONE_PAGE, bench_table.MULTI_PAGE} <= set(churn.MODES)
    assert churn.pages(bench_table.MULTI_PAGE) == 64


def result(mode, off, full):
    return ModeResult(mode, "fentry", {}, {"off": off, "core": off, "full": full})


def test_a_configurations_figures_are_the_least_runs_and_their_ratio():
    conf = results_json.configuration({"kvm": result("kvm", [1000.0, 990.0], [1250.0, 1300.0]),
                                       "kvm:64": result("kvm:64", [50000.0], [50300.0])})
    assert conf["method"] == "fentry"
    assert conf["instructions"]["kvm"] == {"off": 990.0, "core": 990.0, "full": 1250.0, "ratio": 1.262626,
                                           "repeat": 0.04, "runs": {"off": [1000, 990], "core": [1000, 990],
                                                                    "full": [1250, 1300]}}
    assert conf["instructions"]["kvm:64"]["repeat"] is None        # one run repeats nothing
    assert conf["instructions"]["kvm:64"]["ratio"] == 1.006
    # Without the plugin there are no counts: no figures, not zeros.
    assert results_json.configuration({"kvm": ModeResult("kvm", "fentry")})["instructions"] == {}


def test_results_json_keeps_what_bench_compare_reads():
    text = results_json.document("6.1.0-57-amd64", "2026-12-05", {"kvm/fentry/off": 1.0},
                                 {"footprint": {"start_s": 50.0}})
    doc = json.loads(text)
    assert doc["instructions_per_invalidation"] == {"kvm/fentry/off": 1.0}
    assert doc["kernel"] == "6.1.0-57-amd64" and doc["footprint"] == {"start_s": 50.0}


def _figures(off, full):
    return {"off": off, "core": off, "full": full, "ratio": round(full / off, 6)}


def _leg(out, release, rc=0, booted=400, configurations=None, footprint=True):
    d = out / release
    d.mkdir()
    (d / "leg.json").write_text(json.dumps({"release": release, "rc": rc, "booted_seconds": booted,
                                            "date": "2026-12-05"}))
    if configurations is None:
        return
    fp = results_json.footprint(52.14, (24, 20, 4), (102.2, 92, 10), (111.6, 101, 10), (110, 100, 10),
                                240, 0.354, 18.7) if footprint else None
    summary = {"configurations": configurations}
    if fp:
        summary["footprint"] = fp
    (d / "RESULTS.json").write_text(results_json.document(release, "2026-12-05", {}, summary))


def test_a_ratio_whose_runs_did_not_repeat_says_so():
    fig = dict(_figures(9980, 13579), repeat=1.2299)
    cell = bench_table.ratio_cell({"instructions": {"kvm": fig}}, "kvm")
    assert cell == "1.361 (9,980 -> 13,579); runs did not repeat (least two 123% apart)"
    fig["repeat"] = 0.0103                  # just over the bench's 1 %: not rounded down to it
    assert bench_table.ratio_cell({"instructions": {"kvm": fig}}, "kvm").endswith("(least two 1.03% apart)")
    fig["repeat"] = 0.004
    assert bench_table.ratio_cell({"instructions": {"kvm": fig}}, "kvm") == "1.361 (9,980 -> 13,579)"


def default_and_lean(lean):
    default = {"method": "fentry", "instructions": {"kvm": _figures(11230, 14021),
                                                    "kvm:64": _figures(506075, 509143)}}
    return {results_json.DEFAULT: default,
            results_json.ALWAYS: results_json.same_as(default, results_json.DEFAULT),
            results_json.EVERY_PROBE: results_json.same_as(default, results_json.DEFAULT),
            results_json.LEAN: lean}


def test_table_rows_from_the_runs_files(tmp_path):
    lean = {"method": "fentry", "instructions": {"kvm": _figures(11300, 11534)}}
    _leg(tmp_path, "7.2.13+deb14-amd64", configurations=default_and_lean(lean), booted=431)
    _leg(tmp_path, "5.10.0-46-amd64", configurations=default_and_lean(results_json.not_run(
        "the lean configuration cannot run here: no fentry on __mmu_notifier_invalidate_range_start")))
    _leg(tmp_path, "6.12.117+deb12-amd64", rc=124, booted=1500)         # timed out: no RESULTS.json
    (tmp_path / "6.1.0-57-amd64").mkdir()                               # never ran: no row
    (tmp_path / "plugin").mkdir()                                       # not a kernel's
    lines = bench_table.table(tmp_path).splitlines()
    rows = [line for line in lines[2:] if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows] == ["| 5.10.0-46-amd64", "| 6.12.117+deb12-amd64",
                                                 "| 7.2.13+deb14-amd64"]
    cells = rows[2].strip("| ").split(" | ")
    assert len(cells) == lines[0].count("|") - 1
    assert cells[1] == cells[2] == cells[3] == "1.249 (11,230 -> 14,021)"
    assert cells[4] == "1.021 (11,300 -> 11,534)"
    assert cells[5] == "1.006 (506,075 -> 509,143)"
    assert cells[6:] == ["52.1 s", "102 / 112 MB", "0.35 %", "7:11 (2026-12-05)"]
    # Where lean cannot run the cell says why, without the error's preamble.
    assert rows[0].split(" | ")[4] == "not run: no fentry on __mmu_notifier_invalidate_range_start"
    failed = rows[1].strip("| ").split(" | ")
    assert failed[1] == "no figures: the leg failed (timed out; its log.txt says why)"
    assert len(failed) == len(cells) and failed[-1] == "25:00 (2026-12-05)"
    assert "The default configuration was every probe then" in lines[-1]


def test_a_leg_without_kvm_or_lean_says_so(tmp_path):
    default = {"method": "kprobe", "instructions": {"list": _figures(10000, 13000)}}
    _leg(tmp_path, "6.1.0-57-amd64", rc=1, footprint=False, configurations={
        results_json.DEFAULT: default, results_json.EVERY_PROBE: dict(default, method="fentry"),
        results_json.LEAN: results_json.not_run("not asked (--variants)")})
    lines = bench_table.table(tmp_path).splitlines()
    cells = lines[2].strip("| ").split(" | ")
    assert cells[0] == "6.1.0-57-amd64 (leg rc 1)"
    assert cells[1:6] == ["KVM not in the guest", "not measured", "KVM not in the guest",
                          "not run: not asked (--variants)", "KVM not in the guest"]
    assert cells[6:9] == ["-", "-", "-"]
    # every probe was a run of its own here: the table does not claim they are one.
    assert "The default configuration was every probe then" not in bench_table.table(tmp_path)


def test_the_readme_has_the_tables_place():
    text = (kernels.REPO / "README.md").read_text()
    new = matrix_table.replace_section(text, "TABLE\n", bench_table.BEGIN, bench_table.END)
    assert f"{bench_table.BEGIN}\nTABLE\n{bench_table.END}" in new
    assert matrix_table.BEGIN in new        # the support table stays where it was


def test_a_guest_of_a_run_that_holds_the_machine_takes_no_slot(monkeypatch, tmp_path):
    monkeypatch.setattr(slots, "LOCK", str(tmp_path / "lock"))
    monkeypatch.setenv(slots.HELD, "whole")
    with slots.slot(whole_machine=True):
        assert not list(tmp_path.iterdir())
    monkeypatch.delenv(slots.HELD)
    with slots.slot(whole_machine=True):
        assert len(list(tmp_path.iterdir())) == slots.count()


def test_the_sampled_default_is_the_time_weighted_mean_of_between_and_in_windows():
    r = ModeResult("kvm", "counts-fexit", {}, {"off": [10000.0], "core": [10800.0], "full": [12400.0]})
    share = 5 / 60
    conf = results_json.configuration({"kvm": r}, share)
    fig = conf["instructions"]["kvm"]
    # 11/12 of the time 10,800, 1/12 of it 12,400: 10,933.3 over 10,000
    assert fig["ratio"] == round((11 / 12 * 10800 + 1 / 12 * 12400) / 10000, 6) == 1.093333
    assert fig["window_ratio"] == 1.24 and fig["share"] == round(share, 6)
    cell = bench_table.ratio_cell(conf, "kvm")
    assert cell == "1.093 (10,000 -> 10,800; in a window, 8.3% of the time, 12,400)"
    from bench.__main__ import default_row
    row = default_row(r, share)
    assert "latency sampled, callbacks timed 8.3% of the time" in row.target and row.result == "PASS"
    assert row.measured.startswith("1.093 (between windows 1.080, in a window 1.240;")
