"""Kernel addresses to (symbol, module), from /proc/kallsyms.

The table lives as long as the daemon and a kernel lists 60,000-150,000 functions: kept
as a Symbol object each (with a dict by name) it held 30-40 MB of the daemon's RSS, so
it is kept in packed columns instead (about 30 bytes a function) and Symbols are made
when asked for.
"""
import bisect
from array import array
from dataclasses import dataclass

UNKNOWN = ("unknown", "unknown")


@dataclass(frozen=True)
class Symbol:
    addr: int
    name: str
    module: str          # "vmlinux" for built-in code


def _text_symbols(lines):
    """(addr, name, module) of the text symbols among kallsyms lines, in listing order.
    Zero addresses (no CAP_SYSLOG) are dropped: they would resolve everything to one name."""
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[1] not in "tTwW":
            continue
        addr = int(parts[0], 16)
        if not addr:
            continue
        yield addr, parts[2], parts[3].strip("[]") if len(parts) > 3 else "vmlinux"


def parse_kallsyms(text):
    """Text symbols of a kallsyms listing, sorted by address."""
    return sorted((Symbol(*row) for row in _text_symbols(text.splitlines())), key=lambda s: s.addr)


class Symbols:
    """Resolves an address inside a function (a kprobe's ip is the entry + 1) to it.

    Columns, by address: _addrs, _names (one string, each name followed by a newline,
    _starts[i] where name i begins) and _mods (index into _modules); _by_name: the
    indices sorted by name, for lookup() by bisection."""

    def __init__(self, symbols):
        """symbols: (addr, name, module) rows or Symbols, in any order; sorted here by
        address (stable: of aliases, the last listed resolves)."""
        rows = sorted(((s.addr, s.name, s.module) if isinstance(s, Symbol) else tuple(s) for s in symbols),
                      key=lambda r: r[0])
        modules = {}
        self._addrs = array("Q", (r[0] for r in rows))
        self._mods = array("H", (modules.setdefault(r[2], len(modules)) for r in rows))
        self._modules = list(modules)
        starts, pos = array("I"), 0
        for r in rows:
            starts.append(pos)
            pos += len(r[1]) + 1
        starts.append(pos)
        self._starts = starts
        self._names = "".join(f"{r[1]}\n" for r in rows)
        # Stable: of one name listed twice, the lowest address comes first.
        self._by_name = array("I", sorted(range(len(rows)), key=lambda i: rows[i][1]))

    @classmethod
    def load(cls, path="/proc/kallsyms"):
        with open(path) as f:       # line by line: the listing is several MB
            return cls(_text_symbols(f))

    def __len__(self):
        return len(self._addrs)

    def _name(self, i):
        return self._names[self._starts[i]:self._starts[i + 1] - 1]

    def _symbol(self, i):
        return Symbol(self._addrs[i], self._name(i), self._modules[self._mods[i]])

    def find(self, addr):
        """The Symbol of the function holding addr; None for 0 or out of range."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        return None if addr == 0 or i < 0 else self._symbol(i)

    def resolve(self, addr):
        """(name, module) of the function holding addr; UNKNOWN for 0 or out of range."""
        s = self.find(addr)
        return UNKNOWN if s is None else (s.name, s.module)

    def lookup(self, name):
        """The Symbol of a function name, or None (inlined, static and dropped, not built)."""
        lo, hi = 0, len(self._by_name)
        while lo < hi:                  # bisect_left over the names (bisect's key= is 3.10+)
            mid = (lo + hi) // 2
            if self._name(self._by_name[mid]) < name:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self._by_name) and self._name(self._by_name[lo]) == name:
            return self._symbol(self._by_name[lo])
        return None

    def extents(self, pattern):
        """[(start, end)] of the built-in functions whose names match pattern (a compiled
        regex), end being the next symbol's address."""
        out = []
        vmlinux = self._modules.index("vmlinux") if "vmlinux" in self._modules else -1
        for i in range(len(self._addrs)):
            if self._mods[i] != vmlinux or not pattern.fullmatch(self._names, self._starts[i], self._starts[i + 1] - 1):
                continue
            j = bisect.bisect_right(self._addrs, self._addrs[i])
            if j < len(self._addrs):
                out.append((self._addrs[i], self._addrs[j]))
        return out

    def __contains__(self, name):
        return self.lookup(name) is not None
