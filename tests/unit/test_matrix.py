"""The kernel matrix's pure parts: package selection, apt's private state, kernel facts,
the support table from a run's files."""
import json
from pathlib import Path

import pytest

from bed import kernels, matrix_table
from tests.kernel import kernel_facts

HEADERS_7 = """Package: linux-headers-7.2.13+deb14-amd64
Version: 7.2.13-1
Depends: gcc-16-for-host, linux-base (>= 4.12~), linux-base-7.2.13+deb14-amd64 (= 7.2.13-1), \
linux-headers-7.2.13+deb14-common (= 7.2.13-1), linux-kbuild-7.2.13+deb14
"""
IMAGE_7 = """Package: linux-image-7.2.13+deb14-amd64
Pre-Depends: linux-base (>= 4.17~)
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1)
"""


def test_kernel_packages_are_the_kernels_own_not_generic_tools():
    deps = kernels.depends(HEADERS_7) + kernels.depends(IMAGE_7)
    picked = [d for d in deps if kernels.wanted(d, "7.2.13+deb14")]
    assert picked == ["linux-base-7.2.13+deb14-amd64", "linux-headers-7.2.13+deb14-common",
                      "linux-kbuild-7.2.13+deb14", "linux-binary-7.2.13+deb14-amd64"]
    assert "dracut" in deps and "linux-base" in deps      # first alternatives, versions dropped
    assert kernels.wanted("linux-kbuild-5.10", "5.10.0-46")
    assert not kernels.wanted("linux-compiler-gcc-10-x86", "5.10.0-46")


def test_private_apt_state_stays_under_its_directory():
    conf = kernels.apt_config(Path("/x/apt"))
    for key in ("Dir::State", "Dir::Cache", "Dir::Etc::SourceList", "Dir::Etc::SourceParts"):
        assert f'{key} "/x/apt' in conf
    assert 'Dir::State::status "/x/apt/state/status"' in conf
    src = kernels.sources_list(["bullseye", "bullseye-security"])
    assert src == ("deb http://deb.debian.org/debian bullseye main\n"
                   "deb http://deb.debian.org/debian-security bullseye-security main\n")


def test_every_pinned_kernel_has_a_version_and_suites():
    for release, (version, suites) in kernels.KERNELS.items():
        assert release.endswith("-amd64") and version and suites
    assert set(kernels.BUILD_ROOTS) <= set(kernels.KERNELS)


def test_unknown_kernel_is_one_clear_error(tmp_path):
    with pytest.raises(kernels.KernelError, match="unknown kernel '4.19.0-1-amd64'; pinned: 5.10"):
        kernels.fetch("4.19.0-1-amd64", cache=tmp_path)


def test_release_order():
    rel = ["7.2.13+deb14-amd64", "6.12.117+deb12-amd64", "5.10.0-46-amd64", "6.1.0-57-amd64"]
    assert sorted(rel, key=kernels.version_key) == ["5.10.0-46-amd64", "6.1.0-57-amd64",
                                                    "6.12.117+deb12-amd64", "7.2.13+deb14-amd64"]


def test_kernel_facts_by_version():
    assert kernel_facts.version("5.10.0-46-amd64") == (5, 10)
    assert not kernel_facts.at_least(5, 12, "5.10.0-46-amd64") and kernel_facts.at_least(5, 12, "6.1.0-57-amd64")
    # exit_mmap reaped an OOM victim itself up to 6.0: one more call per victim.
    assert kernel_facts.oom_reap_calls_per_victim("5.10.0-46-amd64") == 11
    assert kernel_facts.oom_reap_calls_per_victim("6.1.0-57-amd64") == 10
    assert kernel_facts.oom_reap_calls_per_victim("7.2.13+deb14-amd64") == 10
    assert kernel_facts.ends_paired_on_failure("5.10.0-46-amd64")      # the 5.10.y backport
    assert not kernel_facts.ends_paired_on_failure("5.11.0-1-amd64")
    assert kernel_facts.ends_paired_on_failure("6.12.117+deb12-amd64")


def test_every_tier_runs_the_store_mnmon_picks_and_both_when_asked(monkeypatch):
    from bed import matrix
    from monitor.plan.attach_plan import HASH, TASK_STORAGE
    monkeypatch.delenv("MNMON_STORES", raising=False)
    assert kernel_facts.stores("5.10.0-46-amd64") == [HASH]
    assert kernel_facts.stores("6.1.0-57-amd64") == [TASK_STORAGE]
    for setting in matrix.LEG_ENV:
        monkeypatch.setenv(*setting.split("=", 1))
    assert kernel_facts.stores("5.10.0-46-amd64") == [HASH]
    assert kernel_facts.stores("6.12.117+deb12-amd64") == [TASK_STORAGE]
    monkeypatch.setenv("MNMON_STORES", "both")
    assert kernel_facts.stores("6.1.0-57-amd64") == [TASK_STORAGE, HASH]


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="5" time="125.4">
<testcase classname="a" name="ok"/>
<testcase classname="a" name="bad"><failure message="x"/></testcase>
<testcase classname="a" name="err"><error message="y"/></testcase>
<testcase classname="a" name="skip"><skipped type="pytest.skip" message="needs 5.12+"/></testcase>
<testcase classname="a" name="gap"><skipped type="pytest.xfail" message="mnmon gap"/></testcase>
</testsuite></testsuites>"""


def test_junit_outcomes():
    assert matrix_table.junit_outcomes(JUNIT) == {"passed": 1, "failed": 2, "skipped": 1, "xfailed": 1,
                                                  "seconds": 125}


def test_figures_are_what_passed_tests_printed():
    text = """<testsuites><testsuite name="pytest" time="1">
<testcase classname="a" name="ok[hash]"><system-out>--- Captured Out ---
KVM: 300 invalidations, mnmon == calls

</system-out></testcase>
<testcase classname="a" name="bad"><failure message="x"/><system-out>KVM: 1 == 2</system-out></testcase>
<testcase classname="a" name="quiet"><system-out>--- Captured Out ---
</system-out></testcase>
</testsuite></testsuites>"""
    assert matrix_table.junit_figures(text) == [("ok[hash]", "KVM: 300 invalidations, mnmon == calls")]


def _leg(d, release, rc, seconds, facts, headers=None):
    d.mkdir()
    leg = {"release": release, "rc": rc, "seconds": seconds, "date": "2026-11-29"}
    if headers:
        leg["headers"] = headers
    (d / "leg.json").write_text(json.dumps(leg))
    (d / "junit.xml").write_text(JUNIT)
    for store, probes in facts.items():
        (d / f"facts-{store}.json").write_text(json.dumps({"bcc": "0.26.0", "inflight": store, "probes": probes}))


def test_table_is_written_from_the_runs_files(tmp_path):
    on = lambda m: {"method": m, "attached": True, "reason": ""}
    off = {"method": "fentry", "attached": False, "reason": "x"}
    probes = {"invalidate_range_start": on("fentry"), "invalidate_range_end": on("fentry"),
              "oom_reap_task_mm": on("fentry"), "oom_reaper_gave_up": on("kprobe"),
              "notifier:mnmon_fx_list_never_fail_start": on("fentry"),
              "notifier:mnmon_fx_interval_sleep": on("fentry"),
              "notifier:kvm_mmu_notifier_invalidate_range_start": off}
    _leg(tmp_path / "6.12.117+deb12-amd64", "6.12.117+deb12-amd64", 0, 125, {"hash": probes})
    _leg(tmp_path / "5.10.0-46-amd64+headers-6.1.0-57-amd64", "5.10.0-46-amd64", 1, 60, {"hash": probes},
         headers="6.1.0-57-amd64")
    (tmp_path / "7.2.13+deb14-amd64").mkdir()          # never ran: no row
    t = matrix_table.table(tmp_path).splitlines()
    assert len(t) == 4 and t[2].startswith("| 5.10.0-46-amd64 | 6.1.0-57-amd64 |")
    assert t[3] == ("| 6.12.117+deb12-amd64 | its own | 0.26.0 | fentry | fentry | fentry/kprobe | hash | KVM: not "
                    "found, fixture list/interval | pass: 1 passed, 2 failed, 1 xfailed, 1 skipped | 2:05 (2026-11-29) |")
    assert "| FAIL: 1 passed" in t[2]


def test_readme_section_is_replaced_between_its_markers():
    text = f"a\n{matrix_table.BEGIN}\nold\n{matrix_table.END}\nb\n"
    assert matrix_table.replace_section(text, "new\n") == f"a\n{matrix_table.BEGIN}\nnew\n{matrix_table.END}\nb\n"
    with pytest.raises(ValueError):
        matrix_table.replace_section("no markers", "x")


def test_a_leg_with_another_kernels_headers_is_named_for_both_and_runs_behind_the_hiding_script():
    from bed import matrix
    assert matrix.parse_leg("6.12.117+deb12-amd64:6.1.0-57-amd64") == ("6.12.117+deb12-amd64", "6.1.0-57-amd64")
    assert matrix.parse_leg("5.10.0-46-amd64") == ("5.10.0-46-amd64", None)
    assert matrix.leg_name("5.10.0-46-amd64", "6.1.0-57-amd64") == "5.10.0-46-amd64+headers-6.1.0-57-amd64"
    with pytest.raises(SystemExit, match="unknown kernel '6.2'"):
        matrix.parse_leg("5.10.0-46-amd64:6.2")
    assert matrix.guest_command(["pytest"]) == ["pytest"]
    cmd = matrix.guest_command(["pytest", "-q"], "6.1.0-57-amd64")
    assert cmd[1].endswith("bed/other_headers.sh") and cmd[2].endswith("linux-headers-6.1.0-57-amd64")
    assert cmd[3:] == ["pytest", "-q"]


def test_every_leg_runs_the_default_configurations_counts_and_mrelease_last():
    from bed import matrix
    assert matrix.LEG_TESTS[-1] == "tests/kernel/test_zz_mrelease.py"
    assert {"tests/kernel/test_counts.py", "tests/kernel/test_crowd.py"} <= set(matrix.LEG_TESTS)


def test_the_modules_that_share_the_held_monitor_run_one_after_another():
    # one compile for all of them: a module between that releases it would cost one more
    import importlib
    from bed import matrix
    holds = [getattr(importlib.import_module(t[:-3].replace("/", ".")), "HOLDS_MONITOR", False)
             for t in matrix.LEG_TESTS]
    first = holds.index(True)
    assert all(holds[first:]), list(zip(matrix.LEG_TESTS, holds))
