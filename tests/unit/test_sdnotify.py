"""The daemon's conversation with systemd: sd_notify datagrams, the watchdog, and
monitor.daemon.serve (start, SIGHUP reload, SIGTERM stop) heard through a real socket."""
import http.client
import io
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import uuid

import pytest
from prometheus_client import CollectorRegistry, Counter

from monitor.daemon import sdnotify
from monitor.daemon import serve
from monitor.settings.config import Settings
from monitor.web import server
from monitor.web.server import ServeError


@pytest.fixture(autouse=True)
def fast_stop(monkeypatch):
    # stop() waits up to one accept-loop poll; tests stop many servers.
    monkeypatch.setattr(server, "POLL_INTERVAL", 0.02)


@pytest.fixture
def listener():
    """(env, recv): a datagram socket under an abstract name, as systemd's own is."""
    name = f"mnmon-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)

        def recv():
            return s.recv(4096).decode()
        yield {"NOTIFY_SOCKET": "@" + name}, recv


def test_notify_to_a_socket_path():
    with tempfile.TemporaryDirectory() as d, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        path = os.path.join(d, "notify")
        s.bind(path)
        s.settimeout(5)
        assert sdnotify.ready("serving :7668", env={"NOTIFY_SOCKET": path}) is True
        assert s.recv(4096) == b"READY=1\nSTATUS=serving :7668"


def test_notify_to_an_abstract_socket(listener):
    env, recv = listener
    assert sdnotify.stopping(env=env)
    assert recv() == "STOPPING=1"
    assert sdnotify.watchdog(env=env)
    assert recv() == "WATCHDOG=1"
    assert sdnotify.status("attaching", env=env)
    assert recv() == "STATUS=attaching"
    assert sdnotify.reloading(env=env)
    lines = recv().split("\n")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=") and lines[1][15:].isdigit()


@pytest.mark.parametrize("value, want", [
    (None, None), ("", None), ("relative/path", None), ("vsock:2:999", None),
    ("/run/systemd/notify", "/run/systemd/notify"), ("@name", "\0name"),
])
def test_socket_address(value, want):
    env = {} if value is None else {"NOTIFY_SOCKET": value}
    assert sdnotify.socket_address(env) == want


def test_without_notify_socket_nothing_is_sent():
    assert sdnotify.ready(env={}) is False
    assert sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": "not-absolute"}) is False


def test_a_dead_socket_is_a_notify_error():
    with pytest.raises(sdnotify.NotifyError, match="NOTIFY_SOCKET mnmon-test-nobody-"):
        sdnotify.ready(env={"NOTIFY_SOCKET": f"@mnmon-test-nobody-{uuid.uuid4().hex}"})


@pytest.mark.parametrize("env, want", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "42"}, 0.5),
    ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "43"}, None),       # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "x"}, None),
])
def test_watchdog_interval(env, want):
    assert sdnotify.watchdog_interval(env, pid=42) == want


# monitor.daemon.serve ---------------------------------------------------------------------

class FakeProbes:
    """What the CLI's make_registry returns, without BPF."""

    def __init__(self, settings):
        self.settings = settings
        self.registry = CollectorRegistry()
        Counter("mnmon_fake", "A counter.", registry=self.registry).inc()
        self.closed = 0
        self.refreshed = 0

    def close(self):
        self.closed += 1

    def refresh(self):
        self.refreshed += 1
        if self.refreshed == 1:
            raise OSError("kallsyms: gone")
        return [f"attached callback {self.refreshed}"]


class Maker:
    def __init__(self):
        self.made = []

    def __call__(self, settings):
        self.made.append(FakeProbes(settings))
        return self.made[-1]


def scrape(daemon, path):
    host, port = daemon.exporter.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("web:\n  listen_address: 127.0.0.1:0\n  telemetry_path: /one\n")
    return path


def test_attached_is_what_make_registry_may_return():
    detached = []
    daemon = serve.Daemon(Settings(listen_address="127.0.0.1:0"),
                          lambda s: serve.Attached(FakeProbes(s).registry, lambda: detached.append(1)),
                          logging.getLogger("mnmon.test"), {})
    daemon.start()
    assert scrape(daemon, "/metrics") == 200
    daemon.stop()
    assert detached == [1]


def test_start_reload_stop(listener, config_file, caplog):
    env, recv = listener
    maker = Maker()
    daemon = serve.Daemon(Settings(source=str(config_file)).reload(), maker,
                          logging.getLogger("mnmon.test"), env)
    daemon.start()
    try:
        assert maker.made[0].settings.telemetry_path == "/one"
        ready = recv()
        assert ready.startswith("READY=1\nSTATUS=serving http://127.0.0.1:")
        assert scrape(daemon, "/one") == 200

        config_file.write_text("web:\n  listen_address: 127.0.0.1:0\n  telemetry_path: /two\n"
                               "probes:\n  strict: true\n")
        with caplog.at_level(logging.WARNING, "mnmon.test"):
            assert daemon.reload() is True
        assert recv().startswith("RELOADING=1\n")
        assert recv().startswith("READY=1\nSTATUS=serving http://127.0.0.1:")
        assert scrape(daemon, "/two") == 200 and scrape(daemon, "/one") == 404
        assert daemon.settings.strict is False          # probe settings wait for a restart
        assert "strict changed; that takes effect at the next restart" in caplog.text
        assert len(maker.made) == 1                      # a reload does not re-attach

        config_file.write_text("web:\n  telemetry_path: [\n")
        with caplog.at_level(logging.ERROR, "mnmon.test"):
            assert daemon.reload() is False
        assert "reload failed, still serving with the previous settings" in caplog.text
        assert "config.yaml: line" in caplog.text
        assert recv().startswith("RELOADING=1")
        assert recv().startswith("READY=1")                # systemd must not wait forever
        assert scrape(daemon, "/two") == 200
    finally:
        daemon.stop()
    assert recv() == "STOPPING=1"
    assert maker.made[0].closed == 1
    daemon.stop()                                          # twice is harmless
    assert maker.made[0].closed == 1


def test_refresh_logs_what_it_found_and_survives_failures(caplog):
    maker = Maker()
    daemon = serve.Daemon(Settings(listen_address="127.0.0.1:0"), maker, logging.getLogger("mnmon.test"), {})
    daemon.start()
    try:
        with caplog.at_level(logging.INFO, "mnmon.test"):
            daemon.refresh()
            daemon.refresh()
    finally:
        daemon.stop()
    assert maker.made[0].refreshed == 2
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "discovery failed: kallsyms: gone"), ("INFO", "discovery: attached callback 2")]


def test_a_busy_port_is_refused_before_attaching(listener):
    env, _ = listener
    maker = Maker()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = Settings(listen_address=f"127.0.0.1:{blocker.getsockname()[1]}")
        daemon = serve.Daemon(busy, maker, logging.getLogger("mnmon.test"), env)
        with pytest.raises(ServeError, match="address already in use"):
            daemon.start()
    assert maker.made == []                               # no BPF compile for nothing
    daemon.stop()


def test_healthy_while_attaching_ready_once_attached(listener):
    """/-/healthy answers during the slow attach, /-/ready and /metrics say 503 until it ends."""
    env, _ = listener
    seen = {}
    maker = Maker()
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{port.getsockname()[1]}"
    port.close()

    def attach(settings):
        def status(path):
            conn = http.client.HTTPConnection(*address.split(":"), timeout=5)
            try:
                conn.request("GET", path)
                return conn.getresponse().status
            finally:
                conn.close()
        seen.update({p: status(p) for p in ("/-/healthy", "/-/ready", "/metrics")})
        return maker(settings)

    daemon = serve.Daemon(Settings(listen_address=address), attach, logging.getLogger("mnmon.test"), env)
    daemon.start()
    try:
        assert seen == {"/-/healthy": 200, "/-/ready": 503, "/metrics": 503}
        assert {p: scrape(daemon, p) for p in seen} == {"/-/healthy": 200, "/-/ready": 200, "/metrics": 200}
    finally:
        daemon.stop()


def test_a_failed_attach_stops_the_server(listener):
    env, _ = listener

    def attach(settings):
        raise OSError("bpf: operation not permitted")
    daemon = serve.Daemon(Settings(listen_address="127.0.0.1:0"), attach, logging.getLogger("mnmon.test"), env)
    with pytest.raises(OSError):
        daemon.start()
    assert daemon.exporter is None and daemon.attachment is None
    assert not [t for t in threading.enumerate() if t.name.startswith("mnmon-http")]


@pytest.mark.parametrize("setting, env, period", [
    (None, {}, None),
    (None, {"WATCHDOG_USEC": "2000000"}, 1.0),
    (False, {"WATCHDOG_USEC": "2000000"}, None),
    (True, {"WATCHDOG_USEC": "2000000"}, 1.0),
])
def test_watchdog_period(setting, env, period):
    daemon = serve.Daemon(Settings(listen_address="127.0.0.1:0", watchdog=setting), Maker(),
                          logging.getLogger("mnmon.test"), env)
    daemon.start()
    daemon.stop()
    assert daemon.watchdog_period == period


def test_watchdog_true_needs_systemd():
    maker = Maker()
    daemon = serve.Daemon(Settings(listen_address="127.0.0.1:0", watchdog=True), maker,
                          logging.getLogger("mnmon.test"), {})
    with pytest.raises(ServeError, match="watchdog: true, but systemd set no WATCHDOG_USEC"):
        daemon.start()
    assert maker.made == []                               # refused before attaching


def test_run_until_sigterm(listener, config_file):
    """The whole loop: READY, watchdog pings, discovery, SIGHUP reloads, SIGTERM stops and detaches."""
    env, recv = listener
    config_file.write_text(config_file.read_text() + "discovery:\n  interval: 50ms\n")
    env = {**env, "WATCHDOG_USEC": "100000"}
    maker = Maker()
    heard = []

    def systemd():
        def until(prefix):
            while not (msg := recv()).startswith(prefix):
                heard.append(msg)
            heard.append(msg)
        try:
            until("READY=1")
            until("WATCHDOG=1")
            until("WATCHDOG=1")
            until("WATCHDOG=1")                              # 150 ms: discovery has run twice
            os.kill(os.getpid(), signal.SIGHUP)
            until("RELOADING=1")
            until("READY=1")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    helper = threading.Thread(target=systemd)
    helper.start()
    status = serve.run(Settings(source=str(config_file)).reload(), maker, logging.getLogger("mnmon.test"), env)
    helper.join(5)
    assert status == 0
    assert [m.split("\n")[0] for m in heard].count("READY=1") == 2
    assert heard.count("WATCHDOG=1") >= 2
    assert recv() == "STOPPING=1"
    assert maker.made[0].closed == 1
    assert maker.made[0].refreshed >= 2
    assert signal.getsignal(signal.SIGTERM) is before     # handlers are put back


# Logging -----------------------------------------------------------------------------

def test_journal_formatter_prefixes_priorities():
    fmt = serve.JournalFormatter("%(message)s")

    def line(level, msg):
        return fmt.format(logging.LogRecord("mnmon", level, __file__, 1, msg, None, None))
    assert line(logging.INFO, "listening") == "<6>listening"
    assert line(logging.WARNING, "w") == "<4>w"
    assert line(logging.DEBUG, "d") == "<7>d"
    # A newline in a message (a config key, a request line) must not start a journal entry
    # of its own; a traceback's lines are each prefixed.
    assert line(logging.ERROR, "a\nb") == "<3>a\\nb"
    try:
        raise ValueError("x")
    except ValueError:
        rec = logging.LogRecord("mnmon", logging.DEBUG, __file__, 1, "failed\x1b[2J", None, sys.exc_info())
    out = fmt.format(rec).splitlines()
    assert out[0] == "<7>failed\\x1b[2J" and out[1] == "<7>Traceback (most recent call last):"
    assert all(x.startswith("<7>") for x in out)


def test_stderr_is_journal_compares_device_and_inode(tmp_path):
    with open(tmp_path / "stream", "w") as f:
        st = os.fstat(f.fileno())
        assert serve.stderr_is_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not serve.stderr_is_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not serve.stderr_is_journal(f, {})
    assert not serve.stderr_is_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def test_setup_logging_formats(tmp_path):
    with open(tmp_path / "stream", "w+") as f:
        st = os.fstat(f.fileno())
        log = serve.setup_logging(logging.INFO, f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        log.info("to the journal")
        log.debug("not shown")
        f.seek(0)
        assert f.read() == "<6>to the journal\n"
    out = io.StringIO()
    log = serve.setup_logging(logging.DEBUG, out, {})
    log.warning("on a terminal")
    assert out.getvalue().endswith(" warning: on a terminal\n")
    assert out.getvalue()[:4].isdigit()                   # a timestamp first
