"""Pure parts of keeping callbacks probed: /proc/modules as watch.py reads it, and the
`discovered` map's values."""
import pytest

from monitor.attach import discovery
from monitor.attach import callback_watch as watch

PROC_MODULES = """kvm_amd 155648 0 - Live 0xffffffffc0b40000
kvm 1134592 1 kvm_amd, Live 0xffffffffc09a0000
mnmon_fixture 24576 0 - Loading 0xffffffffc0c00000 (OE)
"""


def test_modules_with_state_and_load(tmp_path):
    f = tmp_path / "modules"
    f.write_text(PROC_MODULES)
    got = watch.read_modules(f)
    assert {m: state for m, (state, _, _) in got.items()} == {"kvm_amd": "Live", "kvm": "Live",
                                                               "mnmon_fixture": "Loading"}
    # /sys/module/NAME's inode tells a reload under the same name; none here, so 0
    assert all(isinstance(load, int) for _, load, _ in got.values())
    # and the address a reload elsewhere changes, for modules nothing probes too
    assert got["mnmon_fixture"][2] == "0xffffffffc0c00000"


def test_only_watched_modules_are_stated(tmp_path):
    f = tmp_path / "modules"
    f.write_text(PROC_MODULES)
    got = watch.read_modules(f, watched=set())
    assert {m: load for m, (_, load, _) in got.items()} == {"kvm_amd": 0, "kvm": 0, "mnmon_fixture": 0}


def test_no_proc_modules(tmp_path):
    assert watch.read_modules(tmp_path / "absent") == {}


def test_discovered_values_carry_kind_and_how_found():
    assert discovery.decode_discovered(0) == (discovery.LIST, "btf")
    assert discovery.decode_discovered(1 | 1 << 8) == (discovery.INTERVAL, "registration")
    assert discovery.decode_discovered(2 | 2 << 8) == (discovery.LIST_END, "invalidation")
    assert discovery.decode_discovered(0 | 9 << 8) == (discovery.LIST, "unknown")


def _probed(symbol, module, kind, found, attached, since, reason=""):
    from monitor.attach import probe as attach
    return watch.Probed(discovery.Callback(symbol, module, kind, found), 0x1000 if attached else 0,
                        attach.ProbeStatus(f"notifier:{symbol}", "kprobe", attached, reason), since)


def test_doctor_says_how_each_callback_was_found_and_since_when_it_counts():
    started, attached_at = 1_000_000.0, 1_000_030.0
    cbs = {("kvm_mmu_notifier_invalidate_range_start", "kvm"):
           _probed("kvm_mmu_notifier_invalidate_range_start", "kvm", discovery.LIST, "btf", True, attached_at),
           ("uvm_invalidate", "nvidia_uvm"):
           _probed("uvm_invalidate", "nvidia_uvm", discovery.INTERVAL, "invalidation", False, 0, "not in kallsyms")}
    fmt = lambda t: __import__("time").strftime("%H:%M:%S", __import__("time").localtime(t))
    lines = watch.counting_lines(cbs, True, started)
    kvm = next(line for line in lines if line.startswith("kvm_mmu"))
    uvm = next(line for line in lines if line.startswith("uvm_"))
    assert kvm.split()[3:6] == ["btf", fmt(started), fmt(attached_at)]
    assert uvm.split()[3:5] == ["invalidation", fmt(started)] and uvm.endswith("never: not in kallsyms")
    # without the walk, a notifier counts only from its probes' attach
    lines = watch.counting_lines(cbs, False, started)
    assert next(line for line in lines if line.startswith("kvm_mmu")).split()[4] == fmt(attached_at)


# ---------------------------------------------------------------- fentry first, kprobe per callback
class FakeBPF:
    """bcc's attach calls, recorded; kprobes on names in refuse fail as bcc does."""

    def __init__(self, refuse=()):
        self.calls, self.refuse = [], set(refuse)

    def attach_kprobe(self, event, fn_name):
        if event.decode() in self.refuse:
            raise Exception(f"Failed to attach BPF program {fn_name.decode()} to kprobe {event.decode()}")
        self.calls.append(("kprobe", event.decode(), fn_name.decode()))

    def attach_kretprobe(self, event, fn_name, maxactive=0):
        self.calls.append(("kretprobe", event.decode(), fn_name.decode()))

    def detach_kprobe(self, event):
        self.calls.append(("detach_kprobe", event.decode()))

    def detach_kretprobe(self, event):
        self.calls.append(("detach_kretprobe", event.decode()))


class FakeModuleFentry:
    """ModuleFentry's surface: modules in btf {module: {function: nargs}} have BTF."""

    def __init__(self, btf):
        self.btf, self.attached, self.detached, self.forgotten, self._next = btf, [], [], [], 100
        self.resumed, self.unloaded = [], []

    def function(self, module, function):
        from monitor.attach.module_fentry import ModuleFentryError
        if module not in self.btf:
            raise ModuleFentryError(f"{module}:{function}: no BTF (/sys/kernel/btf/{module}): module not loaded, "
                                    "built without BTF, or a kernel before 5.11")
        return 7, self.btf[module][function]

    def attach(self, bpf, fn_name, module, function, ret=False, patch=None):
        self.function(module, function)
        self._next += 1
        self.attached.append((fn_name, module, function, ret, patch, self._next))
        return self._next

    def detach(self, link):
        self.detached.append(link)

    # sampled latency: a link closed between windows, its program kept loaded
    refuse_resume = False

    def suspend(self, link):
        self.detached.append(link)
        return ("prog", link)

    def resume(self, prog):
        from monitor.attach.module_fentry import ModuleFentryError
        if self.refuse_resume:
            self.unloaded.append(prog)
            raise ModuleFentryError(f"{prog}: attaching again: No such file or directory")
        self._next += 1
        self.resumed.append((prog, self._next))
        return self._next

    def unload(self, prog):
        self.unloaded.append(prog)

    resumed, unloaded = None, None

    def forget(self, module):
        self.forgotten.append(module)


def _watcher(bpf, mf, fentry=True):
    from monitor.kernel.symbols import Symbol, Symbols
    syms = Symbols([Symbol(0xa000, "kvm_mmu_notifier_invalidate_range_start", "kvm"),
                    Symbol(0xb000, "fixture_interval_invalidate", "mnmon_fixture"),
                    Symbol(0xc000, "odd_interval_invalidate", "odd")])
    return watch.CallbackWatcher(bpf, syms, scanner=object(), proc_modules="/nonexistent", fentry=fentry,
                                 module_fentry=mf)


def test_callbacks_get_fentry_where_their_module_has_btf_and_kprobes_elsewhere():
    from monitor.read.contract import DEFINES
    bpf = FakeBPF()
    mf = FakeModuleFentry({"kvm": {"kvm_mmu_notifier_invalidate_range_start": 2}, "odd": {"odd_interval_invalidate": 5}})
    w = _watcher(bpf, mf)
    kvm = w.attach_callback(discovery.Callback("kvm_mmu_notifier_invalidate_range_start", "kvm", discovery.LIST))
    fix = w.attach_callback(discovery.Callback("fixture_interval_invalidate", "mnmon_fixture", discovery.INTERVAL))
    odd = w.attach_callback(discovery.Callback("odd_interval_invalidate", "odd", discovery.INTERVAL))
    assert (kvm.method, kvm.attached, kvm.reason) == ("fentry", True, "")
    # the return program first, then the entry with the callback's own address in it
    assert [a[:5] for a in mf.attached] == [
        ("cbf_list_return2", "kvm", "kvm_mmu_notifier_invalidate_range_start", True, None),
        ("cbf_list_entry", "kvm", "kvm_mmu_notifier_invalidate_range_start", False,
         {DEFINES["CB_IP_PLACEHOLDER"]: 0xa000})]
    assert w.callbacks[("kvm_mmu_notifier_invalidate_range_start", "kvm")].links == (101, 102)
    # no BTF: a kprobe, and why not fentry
    assert (fix.method, fix.attached) == ("kprobe", True)
    assert fix.reason.startswith("fentry: mnmon_fixture:fixture_interval_invalidate: no BTF")
    # a prototype no fexit program reads: a kprobe too
    assert (odd.method, odd.attached) == ("kprobe", True)
    assert odd.reason == "fentry: odd:odd_interval_invalidate: 5 arguments, an fexit program reads 3 or 4"
    assert ("kprobe", "fixture_interval_invalidate", "cb_interval_entry") in bpf.calls
    assert not any(c[1] == "kvm_mmu_notifier_invalidate_range_start" for c in bpf.calls)
    # unloading a module detaches its fentry links and forgets its BTF
    w._drop_module("kvm")
    assert mf.detached == [101, 102] and mf.forgotten == ["kvm"]


def test_a_callback_neither_can_attach_says_both_reasons():
    bpf = FakeBPF(refuse={"fixture_interval_invalidate"})
    w = _watcher(bpf, FakeModuleFentry({}))
    st = w.attach_callback(discovery.Callback("fixture_interval_invalidate", "mnmon_fixture", discovery.INTERVAL))
    assert not st.attached and st.method == "kprobe"
    assert st.reason.startswith("fentry: mnmon_fixture:fixture_interval_invalidate: no BTF")
    assert st.reason.endswith("Failed to attach BPF program cb_interval_entry to kprobe fixture_interval_invalidate")


def test_callbacks_pinned_to_kprobes_never_try_fentry():
    bpf, mf = FakeBPF(), FakeModuleFentry({"kvm": {"kvm_mmu_notifier_invalidate_range_start": 2}})
    w = _watcher(bpf, mf, fentry=False)
    st = w.attach_callback(discovery.Callback("kvm_mmu_notifier_invalidate_range_start", "kvm", discovery.LIST))
    assert (st.method, st.attached, st.reason) == ("kprobe", True, "") and mf.attached == []


# ---------------------------------------------------------------- a module reloaded at the same address
class FakeTable(dict):
    """A bcc hash as the watcher uses it: keys and values with .value."""

    class Key:
        def __init__(self, value):
            self.value = value

        def __hash__(self):
            return hash(self.value)

        def __eq__(self, other):
            return self.value == other.value

    Leaf = Key

    def items(self):
        return list(super().items())       # bcc's items() is a list: deleting while walking it is fine


class FakeBPFMaps(FakeBPF):
    def __init__(self):
        super().__init__()
        self.tables = {b"discovered": FakeTable(), b"probed_end_fns": FakeTable()}

    def __getitem__(self, name):
        return self.tables[name]


class FakeScanner:
    def scan(self):
        return []

    def forget(self, module):
        pass


def test_a_module_reloaded_at_the_same_address_right_after_its_first_probe_is_probed_again(tmp_path, monkeypatch):
    """Module loads often land at the same address: only /sys/module/NAME's inode tells a
    reload. The refresh that first probes a module's callbacks must note it, or a reload
    before the next refresh keeps the unloaded text's probe and never probes the new load."""
    from monitor.kernel.symbols import Symbol, Symbols
    syms = Symbols([Symbol(0xb000, "fixture_interval_invalidate", "mnmon_fixture")])
    modules = tmp_path / "modules"
    modules.write_text("mnmon_fixture 24576 0 - Live 0xffffffffc0c00000 (OE)\n")
    loads = {"mnmon_fixture": 1}
    monkeypatch.setattr(watch, "module_load", lambda name: loads.get(name, 0))
    monkeypatch.setattr(watch.Symbols, "load", classmethod(lambda cls, path=None: syms))
    monkeypatch.setattr(watch.readers, "read_raw", lambda bpf, maps=None: {})
    bpf = FakeBPFMaps()

    def registered():           # the BPF side saw a registration (on_interval_insert)
        bpf[b"discovered"][FakeTable.Key(0xb000)] = FakeTable.Leaf(discovery.INTERVAL | 1 << 8)
    w = watch.CallbackWatcher(bpf, syms, scanner=FakeScanner(), proc_modules=str(modules))
    w.refresh()                                 # nothing registered yet: the module is not watched
    registered()
    assert [st.attached for st in w.refresh()] == [True]
    first = w.callbacks[("fixture_interval_invalidate", "mnmon_fixture")]
    loads["mnmon_fixture"] = 2                  # rmmod, insmod: same address, new load
    registered()
    got = w.refresh()
    assert [st.attached for st in got] == [True], "the new load's callback was not probed"
    assert w.callbacks[("fixture_interval_invalidate", "mnmon_fixture")] is not first
    assert bpf.calls[-4:] == [("detach_kretprobe", "fixture_interval_invalidate"),
                              ("detach_kprobe", "fixture_interval_invalidate"),
                              ("kretprobe", "fixture_interval_invalidate", "cb_interval_return"),
                              ("kprobe", "fixture_interval_invalidate", "cb_interval_entry")]
    second = w.callbacks[("fixture_interval_invalidate", "mnmon_fixture")]
    # nothing changed since: left alone
    assert w.refresh() == [] and w.callbacks[("fixture_interval_invalidate", "mnmon_fixture")] is second


@pytest.mark.parametrize("core_ends, attached", [(True, True), (False, False)])
def test_an_end_left_to_the_core_probes_is_counted_only_if_they_attached(core_ends, attached):
    from monitor.kernel.symbols import Symbol, Symbols
    syms = Symbols([Symbol(0xa100, "kvm_mmu_notifier_invalidate_range_end", "kvm")])
    w = watch.CallbackWatcher(FakeBPF(), syms, scanner=object(), proc_modules="/nonexistent",
                              probe_ends=False, core_ends=core_ends)
    st = w.attach_callback(discovery.Callback("kvm_mmu_notifier_invalidate_range_end", "kvm", discovery.LIST_END))
    assert (st.method, st.attached) == ("core", attached)
    assert st.reason == ("" if attached else "counted by the core probes, which did not attach")
    assert bool(w.callbacks[("kvm_mmu_notifier_invalidate_range_end", "kvm")].since) is attached
