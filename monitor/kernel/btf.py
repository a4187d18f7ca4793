"""Just enough of the BTF format to read function prototypes.

mnmon finds notifier callbacks by their prototype (see discovery.py), so it needs
FUNC -> FUNC_PROTO -> parameter types, from vmlinux BTF and from modules' split
BTF (whose type ids and string offsets continue the base's). Format:
Documentation/bpf/btf.rst.
"""
import functools
import struct
from array import array
from pathlib import Path

MAGIC = 0xEB9F
_HDR = struct.Struct("<HBBIIIII")        # magic version flags hdr_len type_off type_len str_off str_len
_TYPE = struct.Struct("<III")            # name_off info size_or_type

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, \
    FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(1, 20)

# Bytes that follow struct btf_type, per kind: (fixed, per vlen item).
_TRAILER = {INT: (4, 0), ARRAY: (12, 0), STRUCT: (0, 12), UNION: (0, 12), ENUM: (0, 8),
            FUNC_PROTO: (0, 8), VAR: (4, 0), DATASEC: (0, 12), DECL_TAG: (4, 0), ENUM64: (0, 12)}
_MODIFIERS = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}


class _Types:
    """(kind, name_off, vlen, size_or_type, trailer offset) per type, in packed arrays: vmlinux
    has over 100,000 types, and as a list of tuples they cost ~25 MB of the daemon's RSS."""

    def __init__(self):
        self._cols = (array("B"), array("I"), array("H"), array("I"), array("I"))

    def append(self, row):
        for col, value in zip(self._cols, row):
            col.append(value)

    def __len__(self):
        return len(self._cols[0])

    def __getitem__(self, i):
        return tuple(col[i] for col in self._cols)

    def __iter__(self):
        return zip(*self._cols)


class BTFError(ValueError):
    """Not BTF, or BTF this reader does not understand."""


@functools.lru_cache(maxsize=2)
def load(path):
    """The BTF of a file, parsed once per process: vmlinux's costs ~30 MB parsed, and both the
    layout (monitor/kernel/layout.py) and the callback scan (discovery.py) read it."""
    return BTF(Path(path).read_bytes())


class BTF:
    """Types of one BTF blob, optionally split on top of a base (a module over vmlinux)."""

    def __init__(self, data, base=None):
        if len(data) < _HDR.size:
            raise BTFError("too short for a BTF header")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(data)
        if magic != MAGIC:
            raise BTFError(f"bad magic {magic:#x}")
        self.base = base
        # The strings stay where they are in data (kept whole for the types' trailers): a
        # copy of them was ~3 MB of vmlinux's BTF held twice for the daemon's life.
        self._data = data if isinstance(data, bytes) else bytes(data)
        self._str_start, self.strings_len = hdr_len + str_off, str_len
        self._str_base = base._str_base + base.strings_len if base else 0
        self._first_id = base.next_id if base else 1
        # kind, name_off, vlen, size_or_type, offset of trailer -- indexed by id - first_id
        self.types = _Types()
        self._structs = None            # struct name -> id, built at the first struct_id()
        view = memoryview(self._data)[hdr_len + type_off: hdr_len + type_off + type_len]
        pos, end = 0, len(view)
        while pos < end:
            name_off, info, size_or_type = _TYPE.unpack_from(view, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            pos += _TYPE.size
            if kind == 0 or kind > ENUM64:
                raise BTFError(f"unknown kind {kind} at type {self._first_id + len(self.types)}")
            fixed, per = _TRAILER.get(kind, (0, 0))
            self.types.append((kind, name_off, vlen, size_or_type, pos))
            pos += fixed + per * vlen
        self._view = view
        self.next_id = self._first_id + len(self.types)

    def name(self, name_off):
        if name_off < self._str_base:
            return self.base.name(name_off)
        i = self._str_start + name_off - self._str_base
        return self._data[i: self._data.index(b"\0", i)].decode()

    def type(self, type_id):
        """(kind, name, vlen, size_or_type, btf owning it, trailer offset) of a type id."""
        if type_id < self._first_id:
            return self.base.type(type_id)
        kind, name_off, vlen, size_or_type, off = self.types[type_id - self._first_id]
        return kind, self.name(name_off), vlen, size_or_type, self, off

    def functions(self):
        """(name, proto type id) of every FUNC in this blob (not its base)."""
        for kind, name_off, _vlen, proto, _off in self.types:
            if kind == FUNC:
                yield self.name(name_off), proto

    def struct_members(self, name):
        """{member name: byte offset} of the first struct of that name (this blob or its base).
        Raises BTFError if there is none."""
        for i, (kind, name_off, vlen, _size, off) in enumerate(self.types):
            if kind == STRUCT and self.name(name_off) == name:
                kflag = self._kflag(i)
                out = {}
                for m in range(vlen):
                    m_name, _type, m_off = struct.unpack_from("<III", self._view, off + 12 * m)
                    bits = m_off & 0xFFFFFF if kflag else m_off
                    out[self.name(m_name)] = bits // 8
                return out
        if self.base:
            return self.base.struct_members(name)
        raise BTFError(f"no struct {name} in BTF")

    def struct_id(self, name):
        """The id of the first struct of that name (this blob, then its base); BTFError if none."""
        if self._structs is None:
            self._structs = {}
            for i, (kind, name_off, _vlen, _size, _off) in enumerate(self.types):
                if kind == STRUCT:
                    self._structs.setdefault(self.name(name_off), self._first_id + i)
        if name in self._structs:
            return self._structs[name]
        if self.base:
            return self.base.struct_id(name)
        raise BTFError(f"no struct {name} in BTF")

    def resolve(self, type_id):
        """type_id without its typedefs and qualifiers."""
        while type_id and self.type(type_id)[0] in _MODIFIERS:
            type_id = self.type(type_id)[3]
        return type_id

    def size(self, type_id):
        """Bytes a value of the type takes (pointers: 8, the 64-bit kernels mnmon runs on)."""
        kind, _name, _vlen, size_or_type, btf, off = self.type(self.resolve(type_id))
        if kind == PTR:
            return 8
        if kind == ARRAY:
            elem, _index, n = struct.unpack_from("<III", btf._view, off)
            return self.size(elem) * n
        if kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT):
            return size_or_type
        raise BTFError(f"type {type_id} ({self.describe(type_id)}) has no size")

    def members(self, type_id):
        """(name, type id, byte offset) of a struct's or union's members, the members of its
        anonymous structs and unions in place (their offsets added). Bitfields are refused:
        nothing mnmon reads is one, and a field that became one must not be read whole."""
        kind, _name, vlen, _size, btf, off = self.type(self.resolve(type_id))
        if kind not in (STRUCT, UNION):
            raise BTFError(f"type {type_id} ({self.describe(type_id)}) is not a struct or union")
        kflag = btf._kflag(self.resolve(type_id) - btf._first_id)
        for m in range(vlen):
            name_off, m_type, m_off = struct.unpack_from("<III", btf._view, off + 12 * m)
            bits = m_off & 0xFFFFFF if kflag else m_off
            name = btf.name(name_off)
            if not name and self.type(self.resolve(m_type))[0] in (STRUCT, UNION):
                for inner, t, o in self.members(m_type):
                    yield inner, t, bits // 8 + o
                continue
            bitfield = (m_off >> 24) if kflag else 0
            if bitfield or bits % 8 or (not kflag and self.type(self.resolve(m_type))[0] == INT
                                        and self._int_bits(m_type) != 8 * self.size(m_type)):
                yield name, None, bits // 8      # a bitfield: a type mnmon refuses to read
                continue
            yield name, m_type, bits // 8

    def _int_bits(self, type_id):
        _kind, _name, _vlen, _size, btf, off = self.type(self.resolve(type_id))
        return struct.unpack_from("<I", btf._view, off)[0] & 0xFF

    def member(self, struct_name, path):
        """(byte offset, size, type id) of a member of a struct by a dotted path ('itree.rb_leftmost'),
        through anonymous structs and unions; BTFError naming what is missing."""
        type_id, offset = self.struct_id(struct_name), 0
        where = f"struct {struct_name}"
        for part in path.split("."):
            found = next(((t, o) for n, t, o in self.members(type_id) if n == part), None)
            if found is None:
                raise BTFError(f"{where} has no member {part}")
            if found[0] is None:
                raise BTFError(f"{where}.{part} is a bitfield")
            type_id, offset = found[0], offset + found[1]
            where = f"{where}.{part}"
        return offset, self.size(type_id), type_id

    def _kflag(self, index):
        """A type's kind_flag (bitfield offsets packed with their size), from its info word."""
        pos = self.types[index][4] - _TYPE.size
        return bool(struct.unpack_from("<I", self._view, pos + 4)[0] >> 31)

    def describe(self, type_id):
        """A type as a short string: 'int', 'void', 'struct mmu_notifier *', '_Bool'..."""
        if type_id == 0:
            return "void"
        kind, name, _vlen, ref, _btf, _off = self.type(type_id)
        if kind in _MODIFIERS:
            return self.describe(ref)
        if kind == PTR:
            return self.describe(ref) + " *"
        if kind in (STRUCT, FWD):
            return f"struct {name}"
        if kind == UNION:
            return f"union {name}"
        if kind in (ENUM, ENUM64):
            return f"enum {name}"
        return name

    def prototype(self, proto_id):
        """(return type, [param types]) of a FUNC_PROTO, each as describe() spells it."""
        kind, _name, vlen, ret, btf, off = self.type(proto_id)
        if kind != FUNC_PROTO:
            raise BTFError(f"type {proto_id} is not a FUNC_PROTO")
        params = [self.describe(struct.unpack_from("<II", btf._view, off + 8 * i)[1]) for i in range(vlen)]
        return self.describe(ret), params
