"""`mnmon serve --log.format logfmt|json` for real: every line it writes is one record."""
import json
import os
import re

import pytest

from tests.support.mnmon_proc import Serve

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="attaching BPF needs root")

LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ "]*)(?: |$)')


def logfmt(line):
    pairs = LOGFMT.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line, f"not logfmt: {line!r}"
    return {k: v.strip('"') for k, v in pairs}


@pytest.mark.parametrize("fmt, parse", [("json", json.loads), ("logfmt", logfmt)])
def test_every_line_is_one_record(fmt, parse):
    srv = Serve("--log.format", fmt, "--log.level", "debug")
    srv.text("/-/ready")                     # a request: the web component logs it at debug level
    rc, out = srv.stop()
    assert rc == 0, out
    records = [parse(line) for line in out.splitlines()]
    assert all(set(r) >= {"time", "level", "source", "msg"} for r in records)
    msgs = [r["msg"] for r in records]
    assert any(m.startswith("listening on 127.0.0.1:") for m in msgs)
    assert any(m.startswith("probe ") for m in msgs)                       # attach results
    assert any("GET /-/ready" in m for m in msgs)                          # the web component's debug line
    assert "SIGTERM: stopping" in msgs
