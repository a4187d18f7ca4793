"""`mnmon sample --json` for real on this host: the document README describes."""
import json
import os
import socket

import pytest

from monitor import __version__
from tests.support.mnmon_proc import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="attaching BPF needs root")


def test_sample_json_is_the_versioned_document():
    r = run("sample", "--duration", "1s", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1
    assert 1.0 <= doc["window"]["duration_seconds"] < 3.0
    assert doc["window"]["start"] < doc["window"]["end"]
    assert doc["host"]["hostname"] == socket.gethostname()
    assert doc["host"]["kernel"] == os.uname().release
    assert doc["host"]["mnmon_version"] == __version__ and doc["host"]["bcc_version"]
    names = {s["name"] for s in doc["series"]}
    assert {"mnmon_build_info", "mnmon_probe_attached"} <= names
