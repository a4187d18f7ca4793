"""Coverage-guided fuzzing (atheris, libFuzzer) of what reads hostile input: the request
head parser of the exporter, the settings file reader and the web configuration reader.

    python tests/host/fuzz_targets.py head|config|web NEW_CORPUS_DIR SEED_DIR -max_total_time=8

libFuzzer runs until its time is up and exits 0, or stops at the first input that breaks
an invariant, writes it next to -artifact_prefix and exits non-zero. Invariants:
  head    no exception leaves the request handler; every reply starts with a status line
  config  settings text is Settings or one ConfigError line, nothing else
  web     web configuration text is a WebConfig or one WebConfigError line, nothing else
tests/host/test_fuzz.py runs each for a few seconds from the seeds in tests/host/fuzz_corpus/.
"""
import socket
import sys
import time

import atheris

with atheris.instrument_imports(include=["monitor", "http", "yaml"]):
    import http.server  # noqa: F401 -- instrumented for the head parser's coverage
    from monitor.settings import config
    from monitor.settings.config import ConfigError, Settings
    from monitor.web import server, webconfig
    from prometheus_client import CollectorRegistry, Counter


def _one_line(message):
    assert "\n" not in message and "\r" not in message and "\x1b" not in message, repr(message)
    assert len(message) < 400, message


def config_target(data):
    text = data.decode("utf-8", errors="replace")
    try:
        assert isinstance(config.parse(text, where="fuzz.yaml"), Settings)
    except ConfigError as e:
        _one_line(str(e))


def web_target(data):
    text = data.decode("utf-8", errors="replace")
    try:
        wc = webconfig.loads(text, source="web.yaml", base_dir="/nonexistent")
        assert isinstance(wc, webconfig.WebConfig)
    except ConfigError as e:
        _one_line(str(e))


class _HeadHarness:
    """One exporter on 127.0.0.1:0; each input goes through its request handler in this
    thread (coverage is counted here), over a loopback TCP connection of its own."""

    def __init__(self):
        registry = CollectorRegistry()
        Counter("mnmon_fuzz", "A counter.", registry=registry).inc()
        self.exporter = server.Exporter(registry, Settings(listen_address="127.0.0.1:0"))
        self.exporter.start()
        self.srv = self.exporter._server
        self.listener = socket.create_server(("127.0.0.1", 0))

    def __call__(self, data):
        theirs = socket.create_connection(self.listener.getsockname(), timeout=2)
        ours, _ = self.listener.accept()
        with ours, theirs:
            theirs.settimeout(2)
            ours.settimeout(2)
            try:
                theirs.sendall(data[:60000])
            except OSError:
                pass
            theirs.shutdown(socket.SHUT_WR)
            self.srv._local.conn = server._Conn(ours, time.monotonic())
            server._Handler(ours, ("127.0.0.1", 0), self.srv)   # raises what the handler lets out
            ours.close()                                          # what the server does next
            reply = b""
            try:
                while chunk := theirs.recv(65536):
                    reply += chunk
            except OSError:
                pass
        assert reply == b"" or reply.startswith(b"HTTP/1."), reply[:80]


TARGETS = {"config": config_target, "web": web_target, "head": None}

if __name__ == "__main__":
    name = sys.argv.pop(1)
    target = TARGETS[name] or _HeadHarness()
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
