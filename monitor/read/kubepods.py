"""The Kubernetes pod and container a cgroup path says a victim was in: pure, from kubelet's
naming (a path BPF read of a removed cgroup, '.../parent/leaf', says as much)."""
import re

# kubelet's layouts: systemd driver (kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope)
# and cgroupfs driver (kubepods/burstable/pod<uid>/<id>); docker and podman scopes likewise.
_POD = re.compile(r"kubepods[^/]*?-?pod([0-9a-f_\-]{36})(?:\.slice)?(?:/|$)|/pod([0-9a-f\-]{36})(?:/|$)")
_CONTAINER = re.compile(r"(?:^|/)(?:(?:cri-containerd|crio|docker|libpod)-)?([0-9a-f]{64})(?:\.scope)?$")


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


def labels(path):
    """pod_uid and container_id as a cgroup path names them; empty (absent to PromQL) elsewhere."""
    return {"pod_uid": "", "container_id": "", **workload(path)}
