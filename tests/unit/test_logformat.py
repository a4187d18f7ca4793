"""--log.format logfmt and json: one line per record, every value escaped."""
import io
import json
import logging
import os
import re
import sys

import pytest

from monitor.daemon import logformat, serve


def record(msg, *args, name="mnmon", level=logging.INFO, exc_info=None):
    return logging.LogRecord(name, level, "/x/monitor/daemon/serve.py", 98, msg, args, exc_info)


@pytest.mark.parametrize("value, want", [
    ("listening", "listening"),
    ("", '""'),
    ("listening on :7668", '"listening on :7668"'),
    ("a=b", '"a=b"'),
    ('say "hi"', r'"say \"hi\""'),
    ("x\n9:9 FAKE\x1b[2J", r'"x\n9:9 FAKE\x1b[2J"'),
    ("back\\slash", r'"back\\slash"'),               # told apart from an escape
    ("été", "été"),
])
def test_logfmt_values(value, want):
    assert logformat.logfmt_value(value) == want


def test_logfmt_line_as_prometheus_writes_it():
    line = logformat.LogfmtFormatter().format(record("listening on %s", ":7668", name="mnmon.web"))
    assert re.fullmatch(r'time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) level=info '
                        r'source=serve.py:98 component=web msg="listening on :7668"', line), line


def parse(line):
    """[(key, raw value)] of a logfmt line, quoted values read as a logfmt reader does."""
    pairs = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ "]*)(?: |$)', line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line, "not logfmt"
    return pairs


def test_a_forged_message_stays_one_logfmt_line_with_its_own_keys():
    forged = 'x" level=error msg="forged\nlevel=error'
    line = logformat.LogfmtFormatter().format(record("%s", forged))
    assert "\n" not in line
    pairs = parse(line)
    assert [k for k, _ in pairs] == ["time", "level", "source", "msg"]
    assert pairs[3][1] == r'"x\" level=error msg=\"forged\nlevel=error"'


def test_json_is_one_object_per_line_with_the_exact_text():
    try:
        raise ValueError("boom")
    except ValueError:
        exc = sys.exc_info()
    line = logformat.JsonFormatter().format(record("bad\x1b[2J %s", "a\nb", level=logging.WARNING, exc_info=exc))
    assert "\n" not in line and "\x1b" not in line
    doc = json.loads(line)
    assert list(doc) == ["time", "level", "source", "msg", "err"]
    assert (doc["level"], doc["source"], doc["msg"]) == ("warn", "serve.py:98", "bad\x1b[2J a\nb")
    assert doc["err"].startswith("Traceback") and doc["err"].endswith("ValueError: boom")


@pytest.fixture
def mnmon_logger():
    """setup_logging() changes the "mnmon" logger: put it back for the tests that follow."""
    log = logging.getLogger("mnmon")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


def test_setup_logging_structured_and_under_the_journal(tmp_path, mnmon_logger):
    out = io.StringIO()
    serve.setup_logging(logging.INFO, out, {}, "json").getChild("web").info("up")
    assert json.loads(out.getvalue())["component"] == "web"
    with open(tmp_path / "stream", "w+") as f:
        st = os.fstat(f.fileno())
        log = serve.setup_logging(logging.INFO, f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, "logfmt")
        log.warning("a\nb")
        f.seek(0)
        [line] = f.read().splitlines()
    assert line.startswith("<4>time=")
    assert [k for k, _ in parse(line[3:])] == ["time", "level", "source", "msg"]
    assert line.endswith(r' msg="a\nb"') and " level=warn " in line
