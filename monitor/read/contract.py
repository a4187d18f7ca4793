"""The BPF side's constants and records, taken from bpf/mnmon.h: the one place both
sides read (tests/unit/test_contract.py compiles the header and compares).

    MODES, RESULTS, KINDS, FOUND, REAP_RESULTS, REAP_CALLERS, EVENT_TYPES
                      label values, index = the value the BPF side writes
    SIZES             NR_* and MAX_* sizes
    CoreStats, NotifierKey, NotifierCalls, NotifierLatKey, Event, TextRange
                      ctypes mirrors of the header's structs
    at(array, mode, result)       an entry of a [mode][result] array
    slots(array, mode)            the log2 slots of one mode in a [mode][slot] array
"""
import ctypes
import re

from monitor.bpf_sources import BPF_DIR

HEADER = BPF_DIR / "mnmon.h"

_C_TYPES = {"unsigned long long": ctypes.c_uint64, "unsigned int": ctypes.c_uint32, "int": ctypes.c_int32,
            "unsigned char": ctypes.c_uint8, "char": ctypes.c_char}


class ContractError(ValueError):
    """bpf/mnmon.h says something this parser does not read."""


def parse_defines(text):
    """{NAME: int} of every `#define NAME number` line."""
    return {m.group(1): int(m.group(2), 0)
            for m in re.finditer(r"^#define\s+(\w+)\s+(\d+|0x[0-9a-fA-F]+)\b", text, re.M)}


def family(defines, prefix):
    """('a', 'b', ...) of the defines PREFIX_A = 0, PREFIX_B = 1...: label values by index."""
    members = {v: k[len(prefix):].lower() for k, v in defines.items() if k.startswith(prefix)}
    if sorted(members) != list(range(len(members))):
        raise ContractError(f"{prefix}* values are not 0..n-1: {sorted(members)}")
    return tuple(members[i] for i in range(len(members)))


def parse_structs(text, defines):
    """{struct name: [(field, ctypes type)]} of the header's `struct x { ... };` blocks."""
    out = {}
    for m in re.finditer(r"^struct (\w+) \{\n(.*?)^\};", text, re.M | re.S):
        fields = []
        for line in m.group(2).splitlines():
            decl = line.split(";")[0].split("/*")[0].strip()
            if not decl:
                continue
            f = re.fullmatch(r"([a-z ]+?)\s+(\w+)(?:\[([\w\s*]+)\])?", decl)
            if not f or f.group(1) not in _C_TYPES:
                raise ContractError(f"struct {m.group(1)}: cannot read field {decl!r}")
            ctype = _C_TYPES[f.group(1)]
            if f.group(3):
                n = 1
                for factor in f.group(3).split("*"):
                    factor = factor.strip()
                    n *= int(factor) if factor.isdigit() else defines[factor]
                ctype = ctype * n
            fields.append((f.group(2), ctype))
        out[m.group(1)] = fields
    return out


def _struct(name, fields):
    return type(name, (ctypes.Structure,), {"_fields_": fields})


_TEXT = HEADER.read_text()
DEFINES = parse_defines(_TEXT)
STRUCTS = parse_structs(_TEXT, DEFINES)

MODES = family(DEFINES, "MODE_")
RESULTS = family(DEFINES, "RESULT_")
KINDS = family(DEFINES, "KIND_")
FOUND = family(DEFINES, "FOUND_")
REAP_RESULTS = family(DEFINES, "REAP_")
REAP_CALLERS = family(DEFINES, "CALLER_")
# Event types start at 1 (0 is no event).
EVENT_TYPES = {v: k[3:].lower() for k, v in DEFINES.items() if k.startswith("EV_")}
SIZES = {k: v for k, v in DEFINES.items() if k.startswith(("NR_", "MAX_"))}
NR_LAT_SLOTS = SIZES["NR_LAT_SLOTS"]

CoreStats = _struct("CoreStats", STRUCTS["core_stats"])
NotifierKey = _struct("NotifierKey", STRUCTS["notifier_key"])
NotifierCalls = _struct("NotifierCalls", STRUCTS["notifier_calls"])
NotifierLatKey = _struct("NotifierLatKey", STRUCTS["notifier_lat_key"])
Event = _struct("Event", STRUCTS["mnmon_event"])
TextRange = _struct("TextRange", STRUCTS["text_range"])

# enum mmu_notifier_event (include/linux/mmu_notifier.h), by value: the kernel's, not ours.
MMU_NOTIFY_EVENTS = ("unmap", "clear", "protection_vma", "protection_page", "soft_dirty", "release", "migrate",
                     "exclusive")


def at(array, mode, result):
    """array[mode][result] of a flat [NR_MODES * NR_RESULTS] array, by label value."""
    return array[MODES.index(mode) * len(RESULTS) + RESULTS.index(result)]


def slots(array, mode):
    """{slot: count} of the non-empty log2 slots of one mode in a [mode][slot] array."""
    base = MODES.index(mode) * NR_LAT_SLOTS
    return {s: n for s, n in enumerate(array[base:base + NR_LAT_SLOTS]) if n}
