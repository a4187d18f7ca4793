"""`mnmon sample --json`: a versioned document, the window, the host, the series."""
import json

from monitor.cli import table
from monitor.export.model import Snapshot

HOST = {"hostname": "node1", "kernel": "6.1.0-18-amd64", "mnmon": "0.1.0", "build": "unknown", "bcc": "0.26.0",
        "python": "3.11.2"}


def test_the_document_and_its_stable_keys():
    snap = Snapshot()
    snap.set("mnmon_oom_victims_total", 2)
    snap.set("mnmon_probe_attached", 1, probe="oom:mark_victim", method="tracepoint")
    doc = json.loads(table.to_json(snap, 1714564800.0, 1714564810.25, 10.2504, HOST))
    assert list(doc) == ["schema_version", "window", "host", "series"]
    assert doc["schema_version"] == 1
    assert doc["window"] == {"start": "2024-05-01T12:00:00.000Z", "end": "2024-05-01T12:00:10.250Z",
                             "duration_seconds": 10.25}
    assert doc["host"] == {"hostname": "node1", "kernel": "6.1.0-18-amd64", "mnmon_version": "0.1.0",
                           "build": "unknown", "bcc_version": "0.26.0"}
    assert doc["series"] == [
        {"name": "mnmon_oom_victims_total", "labels": {}, "value": 2.0},
        {"name": "mnmon_probe_attached", "labels": {"method": "tracepoint", "probe": "oom:mark_victim"}, "value": 1.0},
    ]
