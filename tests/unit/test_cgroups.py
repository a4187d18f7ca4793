"""Naming the cgroup of an OOM victim: id -> path, path -> pod and container."""
import os

import pytest

from monitor.read.cgroups import CgroupNames, workload

CID = "0123456789abcdef" * 4
UID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


def test_ids_are_directory_inodes(tmp_path):
    (tmp_path / "kubepods.slice" / "pod.slice").mkdir(parents=True)
    names = CgroupNames(tmp_path)
    assert names.path(os.stat(tmp_path / "kubepods.slice" / "pod.slice").st_ino) == "/kubepods.slice/pod.slice"
    assert names.path(os.stat(tmp_path).st_ino) == "/"
    assert names.path(0) == "unknown"
    assert names.path(1) == "unknown"
    (tmp_path / "later").mkdir()              # a cgroup made after the first walk is found too
    assert names.path(os.stat(tmp_path / "later").st_ino) == "/later"


@pytest.mark.parametrize("path, expected", [
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
     f"cri-containerd-{CID}.scope", {"pod_uid": UID, "container_id": CID}),
    (f"/kubepods/besteffort/pod{UID}/{CID}", {"pod_uid": UID, "container_id": CID}),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice", {"pod_uid": UID}),
    (f"/system.slice/docker-{CID}.scope", {"container_id": CID}),
    ("/system.slice/mnmon.service", {}),
    ("/mnmon-oom-1234", {}),
    ("unknown", {}),
])
def test_workload_from_path(path, expected):
    assert workload(path) == expected
