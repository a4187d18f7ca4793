"""The pod and container a cgroup path names, for kubelet's layouts: table-driven."""
import pytest

from monitor.read.kubepods import labels, workload

CID = "0123456789abcdef" * 4
UID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


@pytest.mark.parametrize("path, expected", [
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
     f"cri-containerd-{CID}.scope", {"pod_uid": UID, "container_id": CID}),
    (f"/kubepods/besteffort/pod{UID}/{CID}", {"pod_uid": UID, "container_id": CID}),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice", {"pod_uid": UID}),
    (f"/system.slice/docker-{CID}.scope", {"container_id": CID}),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice/"
     f"crio-{CID}.scope", {"pod_uid": UID, "container_id": CID}),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/docker-{CID}.scope",
     {"pod_uid": UID, "container_id": CID}),
    (f"/kubepods/pod{UID}/{CID}", {"pod_uid": UID, "container_id": CID}),       # guaranteed, cgroupfs
    (f"/kubepods/burstable/pod{UID}", {"pod_uid": UID}),
    # the directory gone (or outside mnmon's cgroup namespace): the names BPF read of it
    (f".../kubepods-burstable-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
     {"pod_uid": UID, "container_id": CID}),
    (f".../pod{UID}/{CID}", {"pod_uid": UID, "container_id": CID}),
    # conmon, CRI-O's monitor of the container, is no container
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-conmon-{CID}.scope", {"pod_uid": UID}),
    ("/system.slice/mnmon.service", {}),
    ("/mnmon-oom-1234", {}),
    ("unknown", {}),
])
def test_workload_from_path(path, expected):
    assert workload(path) == expected


def test_labels_are_empty_outside_pods():
    assert labels("/system.slice/mnmon.service") == {"pod_uid": "", "container_id": ""}
    assert labels(f"/kubepods/burstable/pod{UID}") == {"pod_uid": UID, "container_id": ""}
