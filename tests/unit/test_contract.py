"""monitor/read/contract.py against bpf/mnmon.h as gcc reads it: every constant, and every
shared struct's size and field offsets. A change on one side only fails here."""
import ctypes
import re
import shutil
import subprocess

import pytest

from monitor.read import contract

STRUCTS = {"mnmon_event": contract.Event, "core_stats": contract.CoreStats, "notifier_key": contract.NotifierKey,
           "notifier_calls": contract.NotifierCalls, "notifier_lat_key": contract.NotifierLatKey,
           "text_range": contract.TextRange}


@pytest.fixture(scope="module")
def gcc_view(tmp_path_factory):
    """What gcc says of the header: {define: value}, {struct: (size, {field: (offset, size)})}."""
    gcc = shutil.which("gcc")
    # A failure, not a skip: this is the one check of the contract, and a skip would let it
    # pass without running (tests/run installs gcc).
    if not gcc:
        pytest.fail("no gcc on this machine to compile bpf/mnmon.h (apt-get install gcc)")
    tmp = tmp_path_factory.mktemp("contract")
    lines = [f'\tprintf("define {name} %lld\\n", (long long)({name}));' for name in contract.DEFINES]
    for struct, mirror in STRUCTS.items():
        lines.append(f'\tprintf("struct {struct} %zu\\n", sizeof(struct {struct}));')
        for field, _ in mirror._fields_:
            lines.append(f'\tprintf("field {struct} {field} %zu %zu\\n", offsetof(struct {struct}, {field}), '
                         f'sizeof(((struct {struct} *)0)->{field}));')
    src = tmp / "layout.c"
    src.write_text('#include <stddef.h>\n#include <stdio.h>\n#include "mnmon.h"\nint main(void)\n{\n'
                   + "\n".join(lines) + "\n\treturn 0;\n}\n")
    subprocess.run([gcc, "-Wall", "-Werror", f"-I{contract.HEADER.parent}", "-o", tmp / "layout", src],
                   check=True, capture_output=True)
    out = subprocess.run([tmp / "layout"], check=True, capture_output=True, text=True).stdout.splitlines()
    defines, structs = {}, {}
    for line in out:
        kind, *rest = line.split()
        if kind == "define":
            defines[rest[0]] = int(rest[1])
        elif kind == "struct":
            structs[rest[0]] = (int(rest[1]), {})
        else:
            structs[rest[0]][1][rest[1]] = (int(rest[2]), int(rest[3]))
    return defines, structs


def test_every_constant_is_what_gcc_reads(gcc_view):
    defines, _ = gcc_view
    assert defines == contract.DEFINES


@pytest.mark.parametrize("struct", sorted(STRUCTS))
def test_every_struct_has_gccs_layout(gcc_view, struct):
    _, structs = gcc_view
    size, fields = structs[struct]
    mirror = STRUCTS[struct]
    assert ctypes.sizeof(mirror) == size
    assert {f: (getattr(mirror, f).offset, getattr(mirror, f).size) for f, _ in mirror._fields_} == fields


def test_every_struct_field_of_the_header_is_mirrored():
    # gcc checks the offsets of the mirror's fields; this checks it has all of the header's.
    text = contract.HEADER.read_text()
    for struct, mirror in STRUCTS.items():
        body = text[text.index(f"struct {struct} {{"):]
        body = body[:body.index("};")]
        c_fields = [re.search(r"(\w+)(\[[^\]]*\])?$", line.split(";")[0]).group(1)
                    for line in body.splitlines()[1:] if ";" in line and not line.strip().startswith("/*")]
        assert c_fields == [f for f, _ in mirror._fields_], struct


def test_label_families():
    assert contract.MODES == ("blockable", "nonblockable")
    assert contract.RESULTS == ("ok", "eagain", "error", "unobserved")
    assert contract.KINDS == ("list", "interval", "list_end")
    assert contract.FOUND == ("btf", "registration", "invalidation")
    assert contract.REAP_RESULTS == ("reaped", "notifier_blocked", "skipped")
    assert contract.REAP_CALLERS == ("oom_reaper", "process_mrelease", "exit_mmap")
    assert contract.EVENT_TYPES == {1: "notifier_failed", 2: "oom_victim", 3: "reap_attempt", 4: "reaper_gave_up",
                                    5: "unpaired_start", 6: "premature_victim"}
    for name, fam in (("MODES", contract.MODES), ("RESULTS", contract.RESULTS), ("KINDS", contract.KINDS),
                      ("REAP_RESULTS", contract.REAP_RESULTS), ("CALLERS", contract.REAP_CALLERS)):
        assert contract.SIZES[f"NR_{name}"] == len(fam), name


def test_accessors_index_by_label():
    flat = list(range(len(contract.MODES) * len(contract.RESULTS)))
    assert contract.at(flat, "blockable", "ok") == 0
    assert contract.at(flat, "nonblockable", "eagain") == len(contract.RESULTS) + 1
    lat = [0] * (2 * contract.NR_LAT_SLOTS)
    lat[3], lat[contract.NR_LAT_SLOTS + 5] = 7, 2
    assert contract.slots(lat, "blockable") == {3: 7}
    assert contract.slots(lat, "nonblockable") == {5: 2}


@pytest.mark.parametrize("text, error", [
    ("#define MODE_A 0\n#define MODE_B 2\n", "MODE_\\* values are not 0..n-1"),
])
def test_a_family_with_a_gap_is_refused(text, error):
    with pytest.raises(contract.ContractError, match=error):
        contract.family(contract.parse_defines(text), "MODE_")


def test_a_field_the_parser_cannot_read_is_refused():
    with pytest.raises(contract.ContractError, match="cannot read field"):
        contract.parse_structs("struct x {\n\tstruct y *p;\n};\n", {})
