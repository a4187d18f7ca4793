"""Naming cgroups: the cgroup id BPF reads of a victim to its path (monitor/read/kubepods.py reads
the pod and container off that path). Pure but for finding the cgroup2 mount and walking it (cached).

The id is that of the task's cgroup on the default hierarchy (task->cgroups->dfl_cgrp, as
bpf_get_current_cgroup_id reads it): the unified (cgroup2) one, also on cgroup v1 and hybrid
hosts. It is the inode of that cgroup's directory on cgroup2 only; each v1 hierarchy numbers
its own directories from 1 too, so only the cgroup2 mount is walked.
"""
import logging
import os
import re
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
ROOT = Path("/sys/fs/cgroup")
UNKNOWN = "unknown"     # the label value when a cgroup cannot be named; the log says why once

_ESCAPE = re.compile(r"\\([0-7]{3})")       # mountinfo writes space, tab, newline, backslash as \ooo


def unified_mount(mountinfo):
    """(mount point, its root in the hierarchy) of the cgroup2 mount in mountinfo text, or None.
    One showing the whole hierarchy (root '/') first: a container may also see a subtree."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        sep = fields.index("-", 6) if "-" in fields[6:] else None     # optional fields end at "-"
        if sep and fields[sep + 1:sep + 2] == ["cgroup2"]:
            found.append(tuple(_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), f) for f in (fields[4], fields[3])))
    return next((m for m in found if m[1] == "/"), found[0] if found else None)


def locate(mountinfo=MOUNTINFO, root=ROOT):
    """(cgroup2 mount point, its root in the hierarchy, None) or (None, None, why there is none)."""
    try:
        found = unified_mount(Path(mountinfo).read_text())
    except OSError as e:
        # Without mountinfo: a directory with cgroup.controllers is a cgroup2 root (v1 has none).
        for d in (Path(root), Path(root) / "unified"):
            if (d / "cgroup.controllers").exists():
                return d, "/", None
        return None, None, f"{mountinfo} unreadable ({e.strerror}) and no cgroup2 under {root}"
    if found is None:
        return None, None, ("no cgroup2 filesystem is mounted (cgroup v1 only; "
                            "systemd.unified_cgroup_hierarchy=1 would mount one)")
    return Path(found[0]), found[1], None


def _stat(path):
    return os.stat(path)


class CgroupNames:
    """id -> path ('/' for the root; UNKNOWN when the cgroup is gone or there is no cgroup2 mount)."""

    def __init__(self, mountinfo=MOUNTINFO, root=ROOT, log=None):
        self.mountinfo, self.root = Path(mountinfo), Path(root)
        self.log = log or logging.getLogger("mnmon.cgroups")
        self.mount = self.prefix = self.reason = None     # found at the first lookup
        self._paths = {}

    def path(self, cgroup_id):
        if not cgroup_id or not self._unified():
            return UNKNOWN
        found = self._find(cgroup_id)
        if found is None:
            self._paths.update(self._scan())        # made since the last walk
            found = self._find(cgroup_id)
        return found or UNKNOWN

    def _find(self, cgroup_id):
        # Before 5.5 the id held the inode in its low 32 bits and a generation above them.
        return self._paths.get(cgroup_id) or self._paths.get(cgroup_id & 0xFFFFFFFF)

    def _unified(self):
        if self.mount is None and self.reason is None:
            self.mount, self.prefix, self.reason = locate(self.mountinfo, self.root)
            if self.reason:
                self.log.warning("OOM victims' cgroups are labelled %s: %s", UNKNOWN, self.reason)
        return self.mount is not None

    def _scan(self):
        """{inode: path in the hierarchy} of every directory on the cgroup2 mount."""
        out, dev = {}, None
        for top, dirs, _files in os.walk(self.mount):
            try:
                st = _stat(top)
            except OSError:
                dirs[:] = []        # removed while we walked
                continue
            dev = st.st_dev if dev is None else dev
            if st.st_dev != dev:    # another filesystem mounted inside: its inodes are no cgroup ids
                dirs[:] = []
                continue
            rel = os.path.relpath(top, self.mount)
            out[st.st_ino] = os.path.normpath(os.path.join(self.prefix, "" if rel == "." else rel))
        return out
