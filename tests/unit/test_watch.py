"""Pure parts of keeping callbacks probed: /proc/modules as watch.py reads it, and the
`discovered` map's values."""
from monitor import discovery, watch

PROC_MODULES = """kvm_amd 155648 0 - Live 0xffffffffc0b40000
kvm 1134592 1 kvm_amd, Live 0xffffffffc09a0000
mnmon_fixture 24576 0 - Loading 0xffffffffc0c00000 (OE)
"""


def test_modules_with_state_and_load(tmp_path):
    f = tmp_path / "modules"
    f.write_text(PROC_MODULES)
    got = watch.read_modules(f)
    assert {m: state for m, (state, _) in got.items()} == {"kvm_amd": "Live", "kvm": "Live",
                                                            "mnmon_fixture": "Loading"}
    # /sys/module/NAME's inode tells a reload under the same name; none here, so 0
    assert all(isinstance(load, int) for _, load in got.values())


def test_only_watched_modules_are_stated(tmp_path):
    f = tmp_path / "modules"
    f.write_text(PROC_MODULES)
    got = watch.read_modules(f, watched=set())
    assert {m: load for m, (_, load) in got.items()} == {"kvm_amd": 0, "kvm": 0, "mnmon_fixture": 0}


def test_no_proc_modules(tmp_path):
    assert watch.read_modules(tmp_path / "absent") == {}


def test_discovered_values_carry_kind_and_how_found():
    assert discovery.decode_discovered(0) == (discovery.LIST, "btf")
    assert discovery.decode_discovered(1 | 1 << 8) == (discovery.INTERVAL, "registration")
    assert discovery.decode_discovered(2 | 2 << 8) == (discovery.LIST_END, "invalidation")
    assert discovery.decode_discovered(0 | 9 << 8) == (discovery.LIST, "unknown")


def _probed(symbol, module, kind, found, attached, since, reason=""):
    from monitor import attach
    return watch.Probed(discovery.Callback(symbol, module, kind, found), 0x1000 if attached else 0,
                        attach.ProbeStatus(f"notifier:{symbol}", "kprobe", attached, reason), since)


def test_doctor_says_how_each_callback_was_found_and_since_when_it_counts():
    started, attached_at = 1_000_000.0, 1_000_030.0
    cbs = {("kvm_mmu_notifier_invalidate_range_start", "kvm"):
           _probed("kvm_mmu_notifier_invalidate_range_start", "kvm", discovery.LIST, "btf", True, attached_at),
           ("uvm_invalidate", "nvidia_uvm"):
           _probed("uvm_invalidate", "nvidia_uvm", discovery.INTERVAL, "invalidation", False, 0, "not in kallsyms")}
    fmt = lambda t: __import__("time").strftime("%H:%M:%S", __import__("time").localtime(t))
    lines = watch.counting_lines(cbs, "", started)
    kvm = next(line for line in lines if line.startswith("kvm_mmu"))
    uvm = next(line for line in lines if line.startswith("uvm_"))
    assert kvm.split()[3:6] == ["btf", fmt(started), fmt(attached_at)]
    assert uvm.split()[3:5] == ["invalidation", fmt(started)] and uvm.endswith("never: not in kallsyms")
    # without the walk, a notifier counts only from its probes' attach
    lines = watch.counting_lines(cbs, "kernel 5.4.0 predates mm->notifier_subscriptions (5.6)", started)
    assert next(line for line in lines if line.startswith("kvm_mmu")).split()[4] == fmt(attached_at)
