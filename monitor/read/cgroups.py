"""Naming cgroups: a cgroup v2 id (what BPF reads) to its path, and the Kubernetes pod and
container a path says it belongs to. Pure but for the directory walk, which is cached."""
import os
import re
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")

# kubelet's layouts: systemd driver (kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope)
# and cgroupfs driver (kubepods/burstable/pod<uid>/<id>); docker and podman scopes likewise.
_POD = re.compile(r"kubepods[^/]*?-?pod([0-9a-f_\-]{36})(?:\.slice)?(?:/|$)|/pod([0-9a-f\-]{36})(?:/|$)")
_CONTAINER = re.compile(r"(?:^|/)(?:(?:cri-containerd|crio|docker|libpod)-)?([0-9a-f]{64})(?:\.scope)?$")


class CgroupNames:
    """id -> path ('/' for the root, 'unknown' when it is gone or not on cgroup v2)."""

    def __init__(self, root=ROOT):
        self.root = Path(root)
        self._paths = {}

    def path(self, cgroup_id):
        if not cgroup_id:
            return "unknown"
        if cgroup_id not in self._paths:
            self._paths.update(self._scan())
        return self._paths.get(cgroup_id, "unknown")

    def _scan(self):
        """{inode: '/relative/path'} of every cgroup directory (v2: the inode is the cgroup id)."""
        out = {}
        for top, _dirs, _files in os.walk(self.root):
            rel = os.path.relpath(top, self.root)
            try:
                out[os.stat(top).st_ino] = "/" if rel == "." else "/" + rel
            except OSError:
                continue        # removed while we walked
        return out


def workload(path):
    """{'pod_uid': ..., 'container_id': ...} where a cgroup path says so, else {}."""
    out = {}
    m = _POD.search(path)
    if m:
        out["pod_uid"] = (m.group(1) or m.group(2)).replace("_", "-")
    m = _CONTAINER.search(path)
    if m:
        out["container_id"] = m.group(1)
    return out
