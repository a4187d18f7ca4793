"""Settings and output against hostile input (issue 26): what `config check` accepts a start
and a reload accept and the reverse, durations serve cannot use, special files, files that
are not settings at all, and text from outside (a process name, a config key) printed raw."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import commands as cli
from monitor.settings import config
from monitor.read import events
from monitor.kernel import headers
from monitor.daemon import serve
from monitor.settings.config import ConfigError, Settings
from monitor.printable import printable
from tests.unit.test_sdnotify import FakeProbes

KNOWN = cli.known_probes()
REPO = Path(__file__).resolve().parents[2]


def check_cli(path, timeout=20):
    """`mnmon config check PATH`, the real command: (exit status, stdout and stderr); a hang
    fails the test (TimeoutExpired)."""
    p = subprocess.run([sys.executable, "-m", "monitor", "config", "check", str(path)], cwd=REPO,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def one_line_error(code, output):
    assert code == 2, output
    assert output.startswith("mnmon: ") and output.count("\n") == 1, output
    assert "Traceback" not in output


# What check accepts, start and reload accept ----------------------------------------------

@pytest.mark.parametrize("interval", ["300y", "2d", "999999999999999999999s", "25h"])
def test_durations_serve_cannot_use_are_refused_everywhere(tmp_path, interval):
    path = tmp_path / "config.yaml"
    path.write_text(f"discovery:\n  interval: {interval}\n")
    one_line_error(*check_cli(path))
    with pytest.raises(ConfigError, match="discovery.interval: .* is longer than 24h"):
        config.load(path)
    with pytest.raises(ConfigError, match="--discovery.interval: .* is longer than 24h"):
        Settings().with_overrides(discovery_interval=interval)
    assert config.parse("discovery:\n  interval: 24h\n").discovery_interval == 86400


class Maker:
    def __call__(self, settings):
        return serve.Attached(FakeProbes(settings).registry)


def test_a_probe_name_typo_is_refused_by_reload_as_by_check_and_start(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text("web:\n  listen_address: 127.0.0.1:0\n")
    validate = lambda s: config.validate(s, KNOWN)                   # noqa: E731 -- what the CLI passes
    daemon = serve.Daemon(Settings(source=str(path)).reload(), Maker(), logging.getLogger("mnmon.test"), {},
                          validate)
    daemon.start()
    try:
        path.write_text("web:\n  listen_address: 127.0.0.1:0\nprobes:\n  disable: [oom_reaperr]\n")
        one_line_error(*check_cli(path))
        with caplog.at_level(logging.ERROR, "mnmon.test"):
            assert daemon.reload() is False
        assert "unknown probe 'oom_reaperr'" in caplog.text
        assert daemon.settings.disable == ()
        with pytest.raises(ConfigError, match="unknown probe"):
            serve.Daemon(Settings(source=str(path)).reload(), Maker(), logging.getLogger("mnmon.test"), {},
                         validate).start()
    finally:
        daemon.stop()


def test_a_reload_onto_a_special_config_file_keeps_the_old_settings(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text("web:\n  listen_address: 127.0.0.1:0\n  telemetry_path: /one\n")
    daemon = serve.Daemon(Settings(source=str(path)).reload(), Maker(), logging.getLogger("mnmon.test"), {},
                          lambda s: config.validate(s, KNOWN))
    daemon.start()
    try:
        fifo = tmp_path / "fifo"
        for special, target in ((fifo, None), (tmp_path / "zero", "/dev/zero"), (tmp_path / "dir", tmp_path)):
            path.unlink()
            if target is None:
                os.mkfifo(special)
            else:
                special.symlink_to(target)
            path.symlink_to(special)
            with caplog.at_level(logging.ERROR, "mnmon.test"):
                assert daemon.reload() is False          # returns: a FIFO does not block the main loop
            assert daemon.settings.telemetry_path == "/one"
        assert caplog.text.count("reload failed") == 3
    finally:
        daemon.stop()


def test_the_cli_passes_the_same_validation_to_serve(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(serve, "setup_logging", lambda *a: logging.getLogger("mnmon.test"))
    monkeypatch.setattr(serve, "run", lambda settings, make, log, validate=None: seen.update(v=validate) or 0)
    path = tmp_path / "config.yaml"
    path.write_text("probes:\n  disable: [oom_reaperr]\n")
    CliRunner().invoke(cli.main, ["serve", "--config.file", str(path), "--web.listen-address", "127.0.0.1:0"])
    with pytest.raises(ConfigError, match="unknown probe"):
        seen["v"](config.load(path))


# Files that are not settings files ----------------------------------------------------------

def test_special_files_as_the_config_or_web_config_are_one_line(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(fifo)
    (tmp_path / "dev").symlink_to("/dev/zero")
    for special in (fifo, tmp_path / "link", tmp_path / "dev", tmp_path):
        one_line_error(*check_cli(special))
        web = tmp_path / "config.yaml"
        web.write_text(f"web:\n  config_file: {special}\n")
        one_line_error(*check_cli(web))


def test_a_file_that_is_not_a_config_is_not_quoted(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$y$j9T$Hx5CN0HEzEMbMLdjVZl9D1$Kq2y7k8o5oM0v9Kf8TnEn4rF2bE9fLx0eA3pY0iN4x7:"
                      "19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    code, output = check_cli(shadow)
    one_line_error(code, output)
    assert "$y$" not in output and "j9T" not in output and "root:" not in output, output


@pytest.mark.parametrize("text", [
    'web:\n  "listen_address\\n2026-01-01 00:00:00 error: forged": 1\n',
    '"\\e[2Jx": 1\n',
    'probes:\n  "a\\rb": 1\n',
])
def test_config_keys_cannot_forge_a_log_line(text):
    with pytest.raises(ConfigError) as e:
        config.parse(text, where="c.yaml")
    msg = str(e.value)
    assert msg == printable(msg) and "forged" not in msg, msg


# Text from outside, printed ------------------------------------------------------------------

FORGED = "x\n99:99:99 FAKE=1\x1b[2J\r\x9b"


def test_watch_escapes_a_victims_comm():
    d = {"event": "oom_victim", "ts_ns": 1, "pid": 42, "comm": FORGED, "cgroup": "/a\nb"}
    out = events.line(d, "12:00:00")
    assert out == printable(out) and "\n" not in out and "\x1b" not in out and "\x9b" not in out, out
    assert "comm=x\\n99:99:99 FAKE=1\\x1b[2J\\r\\x9b" in out and "cgroup=/a\\nb" in out
    assert "pid=42" in out and out.startswith("12:00:00 oom_victim ")
    assert events.line({"event": "e", "comm": "a\\nb"}, "t") != events.line({"event": "e", "comm": "a\nb"}, "t")
    js = events.json_line(d)
    assert "\n" not in js and all(ord(c) >= 0x20 and not 0x7f <= ord(c) < 0xa0 for c in js), js
    assert json.loads(js)["comm"] == FORGED


def test_the_log_formatters_escape_what_a_message_carries():
    record = logging.LogRecord("mnmon", logging.ERROR, __file__, 1, "reload failed: %s", (FORGED,), None)
    for fmt in (serve.JournalFormatter("%(message)s"), serve._PlainFormatter("%(levelname)s: %(message)s")):
        out = fmt.format(record)
        assert "\n" not in out and "\x1b" not in out and "\r" not in out, out
        assert "FAKE=1" in out


@pytest.mark.parametrize("text, want", [
    ("plain comm", "plain comm"),
    ("é ünïcode", "é ünïcode"),
    ("a\nb", "a\\nb"),
    ("\x1b[31m", "\\x1b[31m"),
    ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),
    ("line\u2028sep", "line\\u2028sep"),
])
def test_printable(text, want):
    assert printable(text) == want


# Read-only /run --------------------------------------------------------------------------------

def test_headers_merge_elsewhere_when_the_run_directory_cannot_be_written(tmp_path, monkeypatch, caplog):
    from tests.unit.test_headers import REL, debian_headers
    arch, _, _ = debian_headers(tmp_path)
    run = tmp_path / "run"
    real = headers.merge_tree

    def read_only(dirs, dest):
        if str(dest).startswith(str(run)):
            raise OSError(30, "Read-only file system")
        return real(dirs, dest)
    monkeypatch.setattr(headers, "merge_tree", read_only)
    with caplog.at_level(logging.WARNING, "mnmon"):
        merged = headers.usable_headers(arch, run_dir=run)
    assert merged.name == f"linux-headers-{REL}-amd64" and (merged / "include/linux/kconfig.h").exists()
    assert not str(merged).startswith(str(run))
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "read-only file system" in warned[0], warned
