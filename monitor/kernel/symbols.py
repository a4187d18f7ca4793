"""Kernel addresses to (symbol, module), from /proc/kallsyms."""
import bisect
from dataclasses import dataclass

UNKNOWN = ("unknown", "unknown")


@dataclass(frozen=True)
class Symbol:
    addr: int
    name: str
    module: str          # "vmlinux" for built-in code


def parse_kallsyms(text):
    """Text symbols of a kallsyms listing, sorted by address. Zero addresses (no
    CAP_SYSLOG) are dropped: they would resolve everything to one name."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[1] not in "tTwW":
            continue
        addr = int(parts[0], 16)
        if not addr:
            continue
        module = parts[3].strip("[]") if len(parts) > 3 else "vmlinux"
        out.append(Symbol(addr, parts[2], module))
    out.sort(key=lambda s: s.addr)
    return out


class Symbols:
    """Resolves an address inside a function (a kprobe's ip is the entry + 1) to it."""

    def __init__(self, symbols):
        self.symbols = symbols
        self._addrs = [s.addr for s in symbols]
        self._by_name = {}
        for s in symbols:
            self._by_name.setdefault(s.name, s)

    @classmethod
    def load(cls, path="/proc/kallsyms"):
        with open(path) as f:
            return cls(parse_kallsyms(f.read()))

    def find(self, addr):
        """The Symbol of the function holding addr; None for 0 or out of range."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        return None if addr == 0 or i < 0 else self.symbols[i]

    def resolve(self, addr):
        """(name, module) of the function holding addr; UNKNOWN for 0 or out of range."""
        s = self.find(addr)
        return UNKNOWN if s is None else (s.name, s.module)

    def lookup(self, name):
        """The Symbol of a function name, or None (inlined, static and dropped, not built)."""
        return self._by_name.get(name)

    def extents(self, pattern):
        """[(start, end)] of the built-in functions whose names match pattern (a compiled
        regex), end being the next symbol's address."""
        out = []
        for s in self.symbols:
            if s.module == "vmlinux" and pattern.fullmatch(s.name):
                i = bisect.bisect_right(self._addrs, s.addr)
                if i < len(self._addrs):
                    out.append((s.addr, self._addrs[i]))
        return out

    def __contains__(self, name):
        return name in self._by_name
