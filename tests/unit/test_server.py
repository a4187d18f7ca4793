"""The exporter's HTTP(S) server on 127.0.0.1/::1, ephemeral ports only."""
import base64
import contextlib
import errno
import gzip
import http.client
import logging
import re
import shutil
import socket
import ssl
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Counter

from monitor.settings.config import Settings
from monitor.web import server
from monitor.web.server import Exporter, ServeError, san_allowed
from monitor.web.webconfig import WebConfigError
from tests.unit.test_webconfig import HASH, make_pki


@pytest.fixture(autouse=True)
def fast_stop(monkeypatch):
    # stop() waits up to one accept-loop poll; tests stop many servers.
    monkeypatch.setattr(server, "POLL_INTERVAL", 0.02)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def registry():
    reg = CollectorRegistry()
    Counter("mnmon_test_scrapes", "A test counter.", registry=reg).inc(3)
    Counter("mnmon_other", "Another.", registry=reg)
    return reg


@contextlib.contextmanager
def serving(registry, **settings):
    exporter = Exporter(registry, Settings(**{"listen_address": "127.0.0.1:0", **settings}))
    exporter.start()
    try:
        yield exporter
    finally:
        exporter.stop()


def get(exporter, path="/metrics", headers=None, method="GET", context=None):
    """(status, headers, body) of one request on a fresh connection."""
    host, port = exporter.address
    if context is None:
        conn = http.client.HTTPConnection(host, port, timeout=5)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=5, context=context)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def test_serves_the_registry(registry):
    with serving(registry) as ex:
        status, headers, body = get(ex)
        assert ex.url == f"http://127.0.0.1:{ex.address[1]}/metrics"
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"mnmon_test_scrapes_total 3.0\n" in body


def test_content_negotiation_gzip_and_name_filter(registry):
    with serving(registry) as ex:
        _, h, body = get(ex, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert h["Content-Type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")
        _, h, body = get(ex, headers={"Accept-Encoding": "gzip"})
        assert h["Content-Encoding"] == "gzip"
        assert b"mnmon_test_scrapes_total 3.0" in gzip.decompress(body)
        _, _, body = get(ex, "/metrics?name[]=mnmon_other_total")
        assert b"mnmon_other_total" in body and b"mnmon_test_scrapes" not in body


def test_landing_page_404_head_and_methods(registry):
    with serving(registry, telemetry_path="/m") as ex:
        status, h, body = get(ex, "/")
        assert (status, h["Content-Type"]) == (200, "text/html; charset=utf-8")
        assert b'<a href="m">' in body
        assert get(ex, "/metrics")[0] == 404
        assert get(ex, "/m/")[0] == 404
        status, h, body = get(ex, "/m", method="HEAD")
        assert status == 200 and body == b"" and int(h["Content-Length"]) > 0
        assert get(ex, "/m", method="POST")[0] == 501


def test_a_failing_collector_is_a_500_not_a_dead_server(registry):
    class Broken:
        def collect(self):
            raise RuntimeError("map lookup failed")

    registry.register(Broken())
    with serving(registry) as ex:
        status, _, body = get(ex)
        assert (status, body) == (500, b"error collecting metrics: map lookup failed\n")
        for _ in range(5):
            assert get(ex)[0] == 500
        assert get(ex, "/")[0] == 200


def test_a_failing_collector_logs_one_line_not_one_traceback_per_scrape(registry, caplog):
    class Broken:
        def collect(self):
            raise OSError(24, "Too many open files")
    registry.register(Broken())
    with serving(registry) as ex:
        for _ in range(20):
            assert get(ex)[0] == 500
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert errors[0].getMessage() == "collecting metrics: OSError: [Errno 24] Too many open files"


def auth_header(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_and_headers(registry, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n"
                   "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    with serving(registry, web_config_file=str(web)) as ex:
        status, h, _ = get(ex)
        assert status == 401
        assert h["WWW-Authenticate"].startswith("Basic")
        assert get(ex, "/")[0] == 401                     # every path is protected
        assert get(ex, headers=auth_header("alice", "wrong"))[0] == 401
        assert get(ex, headers={"Authorization": "Basic \xff\xfe"})[0] == 401
        status, h, body = get(ex, headers=auth_header("alice", "s3cret"))
        assert status == 200 and b"mnmon_test_scrapes_total" in body
        assert h["X-Content-Type-Options"] == "nosniff"



@pytest.mark.parametrize("path, want", [("/-/healthy", b"mnmon is healthy.\n"), ("/-/ready", b"mnmon is ready.\n")])
def test_health_and_readiness_are_guarded_like_every_path(registry, tmp_path, path, want):
    with serving(registry) as ex:
        status, h, body = get(ex, path)
        assert (status, body) == (200, want)
        assert get(ex, path, method="HEAD")[0] == 200
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n")
    with serving(registry, web_config_file=str(web)) as ex:
        assert get(ex, path)[0] == 401                    # as exporter-toolkit: no open path
        assert get(ex, path, headers=auth_header("alice", "s3cret"))[:3:2] == (200, want)


def test_not_ready_until_a_registry_is_served(registry):
    with serving(None) as ex:
        assert get(ex, "/-/healthy")[0] == 200
        status, h, body = get(ex, "/-/ready")
        assert (status, body) == (503, b"mnmon is not ready: attaching the probes.\n")
        status, h, _ = get(ex)
        assert status == 503 and h["Retry-After"] == "5"
        ex.serve(registry)
        assert get(ex, "/-/ready")[0] == 200
        assert b"mnmon_test_scrapes_total 3.0" in get(ex)[2]


def test_the_server_header_gives_no_version(registry):
    with serving(registry) as ex:
        for path in ("/metrics", "/", "/nothing", "/-/ready"):
            assert get(ex, path)[1].get_all("Server") == ["mnmon"]


GARBAGE = [
    b"\x00\x01\x02\xff garbage\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /metrics HTTP/9.9\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",                       # request line too long
    b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n",          # header line too long
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",                # too many headers
    b"GET /metrics HTTP/1.1\r\nAuthorization: Basic \xc3\x28\xa0\xa1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nAuthorization: \xff\xfe\xfd\r\n\r\n",
    b"GET /\xe9t\xe9 HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,       # a TLS ClientHello on plain HTTP
    b"GET /metrics HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n",                                         # then hang up mid-headers
]


def raw(addr, payload):
    """Send payload, half-close, return what the server answered (b"" if it just closed)."""
    with socket.create_connection(addr, timeout=5) as s:
        with contextlib.suppress(OSError):      # the server may hang up before we finish
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(ConnectionError):
            while chunk := s.recv(65536):
                out += chunk
        return out


@pytest.mark.parametrize("payload", GARBAGE, ids=range(len(GARBAGE)))
def test_malformed_requests_get_an_error_and_the_server_lives(registry, payload, caplog, capfd):
    with serving(registry) as ex:
        answer = raw(ex.address, payload)
        if payload.endswith(b"\r\n\r\n"):       # a whole request: it gets a whole answer
            assert re.match(rb"HTTP/1\.[01] [245]\d\d ", answer), answer[:80]
        assert b"Traceback" not in answer and b"\\x" not in answer   # nothing echoed back
        assert get(ex)[0] == 200
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert capfd.readouterr().err == ""              # socketserver prints tracebacks by default


def test_sizes_are_refused_with_the_right_status(registry):
    with serving(registry) as ex:
        assert raw(ex.address, GARBAGE[0]).startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert raw(ex.address, GARBAGE[2]).startswith(b"HTTP/1.1 505 ")
        assert raw(ex.address, GARBAGE[4]).startswith(b"HTTP/1.1 414 ")
        assert raw(ex.address, GARBAGE[5]).startswith(b"HTTP/1.1 431 ")
        assert raw(ex.address, GARBAGE[6]).startswith(b"HTTP/1.1 431 ")


def test_port_in_use_is_a_serve_error(registry):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(ServeError) as e:
            Exporter(registry, Settings(listen_address=f"127.0.0.1:{port}")).start()
    assert str(e.value) == f"listen 127.0.0.1:{port}: address already in use"


@pytest.mark.parametrize("listen, message", [
    ("127.0.0.1", "listen 127.0.0.1: '127.0.0.1': missing port"),
    ("no-such-host.invalid:1", "listen no-such-host.invalid:1: "),
])
def test_bad_listen_address_is_a_serve_error(registry, listen, message):
    with pytest.raises(ServeError) as e:
        Exporter(registry, Settings(listen_address=listen)).start()
    assert str(e.value).startswith(message)


def test_ipv6_loopback(registry):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with serving(registry, listen_address="[::1]:0") as ex:
        assert ex.address[0] == "::1"
        assert ex.url.startswith("http://[::1]:")
        assert get(ex)[0] == 200


def test_stop_closes_the_port(registry):
    with serving(registry) as ex:
        addr = ex.address
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(addr, timeout=5).close()


# TLS ---------------------------------------------------------------------------------

def tls_web(pki, path, client_auth=None, sans=None, cert="server"):
    lines = ["tls_server_config:", f"  cert_file: {pki}/{cert}.crt", f"  key_file: {pki}/{cert}.key"]
    if client_auth:
        lines += [f"  client_auth_type: {client_auth}", f"  client_ca_file: {pki}/ca.crt"]
    if sans:
        lines += [f"  client_allowed_sans: [{', '.join(sans)}]"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def client_context(pki, cert=None):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return ctx


def test_https_scrape(registry, pki, tmp_path):
    with serving(registry, web_config_file=tls_web(pki, tmp_path / "w.yml")) as ex:
        assert ex.url.startswith("https://127.0.0.1:")
        status, _, body = get(ex, context=client_context(pki))
        assert status == 200 and b"mnmon_test_scrapes_total 3.0" in body
        # Plain HTTP on the TLS port is dropped, not answered, and does not hurt.
        assert raw(ex.address, b"GET /metrics HTTP/1.1\r\n\r\n") == b""
        assert get(ex, context=client_context(pki))[0] == 200


REFUSED = (ssl.SSLError, ConnectionError)


def test_required_client_certificate(registry, pki, tmp_path):
    web = tls_web(pki, tmp_path / "w.yml", client_auth="RequireAndVerifyClientCert")
    with serving(registry, web_config_file=web) as ex:
        assert get(ex, context=client_context(pki, "client"))[0] == 200
        with pytest.raises(REFUSED):
            get(ex, context=client_context(pki))                   # no certificate
        with pytest.raises(REFUSED):
            get(ex, context=client_context(pki, "rogue"))          # another CA's certificate
        assert get(ex, context=client_context(pki, "client"))[0] == 200


def test_optional_client_certificate(registry, pki, tmp_path):
    web = tls_web(pki, tmp_path / "w.yml", client_auth="VerifyClientCertIfGiven")
    with serving(registry, web_config_file=web) as ex:
        assert get(ex, context=client_context(pki))[0] == 200
        assert get(ex, context=client_context(pki, "client"))[0] == 200
        with pytest.raises(REFUSED):
            get(ex, context=client_context(pki, "rogue"))


def test_client_allowed_sans(registry, pki, tmp_path):
    ok = tls_web(pki, tmp_path / "ok.yml", "RequireAndVerifyClientCert", sans=["prometheus.test"])
    other = tls_web(pki, tmp_path / "other.yml", "RequireAndVerifyClientCert", sans=["grafana.test"])
    with serving(registry, web_config_file=ok) as ex:
        assert get(ex, context=client_context(pki, "client"))[0] == 200
    with serving(registry, web_config_file=other) as ex:
        with pytest.raises(REFUSED):
            get(ex, context=client_context(pki, "client"))


@pytest.mark.parametrize("cert, allowed, want", [
    ({"subjectAltName": (("DNS", "a.test"), ("IP Address", "0:0:0:0:0:0:0:1\n"))}, ["::1"], True),
    ({"subjectAltName": (("DNS", "a.test"),)}, ["a.test"], True),
    ({"subjectAltName": (("DNS", "a.test"),)}, ["b.test"], False),
    ({}, ["a.test"], False),
    (None, ["a.test"], False),
])
def test_san_allowed(cert, allowed, want):
    assert san_allowed(cert, allowed) is want


def test_tls_garbage_does_not_stop_the_server(registry, pki, tmp_path):
    with serving(registry, web_config_file=tls_web(pki, tmp_path / "w.yml")) as ex:
        for payload in (b"\x16\x03\x01\x00\x05hello", b"\x16\x03\x03" + b"\xff" * 5000, b"\x00" * 10):
            answer = raw(ex.address, payload)
            assert answer == b"" or answer.startswith(b"\x15")          # nothing, or a TLS alert
        with socket.create_connection(ex.address, timeout=5):
            pass                                                   # connect and hang up at once
        assert get(ex, context=client_context(pki))[0] == 200


# Reload ------------------------------------------------------------------------------

def peer_cert(ex, pki):
    with socket.create_connection(ex.address, timeout=5) as s:
        with client_context(pki).wrap_socket(s, server_hostname="127.0.0.1") as t:
            return dict(x[0] for x in t.getpeercert()["subject"])["commonName"]


def test_reload_takes_new_auth_and_certificates(registry, pki, tmp_path):
    with serving(registry) as ex:
        assert get(ex)[0] == 200
        web = tmp_path / "w.yml"
        web.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n")
        ex.reload(Settings(listen_address="127.0.0.1:0", web_config_file=str(web)))
        assert get(ex)[0] == 401
        assert get(ex, headers=auth_header("alice", "s3cret"))[0] == 200

        users = f"basic_auth_users:\n  alice: '{HASH}'\n"
        tls_web(pki, web)
        web.write_text(web.read_text() + users)          # TLS added, auth kept: a reload may raise security
        ex.reload(Settings(listen_address="127.0.0.1:0", web_config_file=str(web)))
        assert peer_cert(ex, pki) == "server"
        tls_web(pki, web, cert="server2")
        web.write_text(web.read_text() + users)
        ex.reload(Settings(listen_address="127.0.0.1:0", web_config_file=str(web)))
        assert peer_cert(ex, pki) == "server2"


@pytest.mark.parametrize("emptied", ["", "# nothing\n", "basic_auth_users: {}\n"])
def test_reload_never_turns_tls_or_auth_off(registry, pki, tmp_path, emptied, caplog):
    web = tmp_path / "w.yml"
    tls_web(pki, web)
    web.write_text(web.read_text() + f"basic_auth_users:\n  alice: '{HASH}'\n")
    settings = Settings(listen_address="127.0.0.1:0", web_config_file=str(web))
    with serving(registry, web_config_file=str(web)) as ex:
        web.write_text(emptied)
        with pytest.raises(WebConfigError, match="would turn off TLS, turn off basic auth; kept as it is"):
            ex.reload(settings)
        with pytest.raises(WebConfigError, match="no web config file: would turn off TLS, turn off basic auth"):
            ex.reload(Settings(listen_address="127.0.0.1:0"))
        assert ex.url.startswith("https://")
        ctx = client_context(pki)
        assert get(ex, context=ctx)[0] == 401
        assert get(ex, context=ctx, headers=auth_header("alice", "s3cret"))[0] == 200


def test_reload_with_a_broken_web_config_keeps_the_old_one(registry, tmp_path):
    web = tmp_path / "w.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n")
    settings = Settings(listen_address="127.0.0.1:0", web_config_file=str(web))
    with serving(registry, web_config_file=str(web)) as ex:
        web.write_text("basic_auth_users:\n  alice: not-a-hash\n")
        with pytest.raises(WebConfigError, match="basic_auth_users.alice: not a bcrypt hash"):
            ex.reload(settings)
        assert get(ex)[0] == 401
        assert get(ex, headers=auth_header("alice", "s3cret"))[0] == 200


def test_reload_moves_the_listener(registry):
    with serving(registry) as ex:
        old = ex.address
        ex.reload(Settings(listen_address="127.0.0.1:0", telemetry_path="/new"))
        assert ex.address == old                 # same address text: same socket
        assert get(ex, "/new")[0] == 200
        with socket.socket() as probe:           # a free port, released for the exporter
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        ex.reload(Settings(listen_address=f"127.0.0.1:{free}", telemetry_path="/new"))
        assert ex.address == ("127.0.0.1", free)
        assert get(ex, "/new")[0] == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(old, timeout=5).close()


def test_reload_to_a_busy_port_keeps_serving(registry):
    with serving(registry) as ex, socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        with pytest.raises(ServeError, match="address already in use"):
            ex.reload(Settings(listen_address=f"127.0.0.1:{busy}"))
        assert get(ex)[0] == 200
        assert ex.settings.listen_address == "127.0.0.1:0"


# Overload and shutdown ---------------------------------------------------------------

def head_of(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n\r\n")[0].decode()


def closed_within(sock, seconds):
    """True if the server closes `sock` within `seconds` (whatever it sends first)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_http10_keep_alive_is_acknowledged_or_closed(registry):
    with serving(registry) as ex:
        with socket.create_connection(ex.address, timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            assert "\r\nConnection: keep-alive" in head_of(s)
        with socket.create_connection(ex.address, timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            assert "\r\nConnection: close" in head_of(s)
            assert closed_within(s, 2)


def test_a_slow_request_head_is_cut_at_the_deadline(registry, monkeypatch):
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.5)
    with serving(registry) as ex:
        with socket.create_connection(ex.address, timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            t0 = time.monotonic()
            cut = False
            while time.monotonic() - t0 < 3:            # a header byte every 0.1 s: each read is quick
                try:
                    s.sendall(b"X")
                except OSError:
                    cut = True
                    break
                if closed_within(s, 0.1):
                    cut = True
                    break
            assert cut and time.monotonic() - t0 < 2
        assert get(ex)[0] == 200


def test_connection_cap_closes_the_slowest_not_the_scrape(registry, monkeypatch):
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 8)
    with serving(registry) as ex:
        idle = [socket.create_connection(ex.address, timeout=5) for _ in range(30)]
        try:
            t0 = time.monotonic()
            assert get(ex)[0] == 200
            assert time.monotonic() - t0 < 2
            time.sleep(0.2)
            assert len(ex._server._conns) <= 8
            assert sum(closed_within(s, 0.05) for s in idle) >= 22      # the oldest idle ones went first
        finally:
            for s in idle:
                s.close()


def test_emfile_backs_off_and_logs_once(registry, caplog):
    class Exhausted:
        """The listening socket, with accept() failing as it does at the descriptor limit."""
        def __init__(self, real):
            self.real, self.calls = real, 0

        def accept(self):
            self.calls += 1
            raise OSError(errno.EMFILE, "Too many open files")

        def __getattr__(self, name):
            return getattr(self.real, name)
    with serving(registry) as ex:
        srv = ex._server
        srv.socket = fake = Exhausted(srv.socket)
        with socket.create_connection(ex.address, timeout=5):
            time.sleep(1.0)
            srv.socket = fake.real
        assert 1 <= fake.calls <= 15, "the accept loop spun"
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "too many open files" in errors[0].getMessage()
        assert get(ex)[0] == 200


def test_bound_port_is_logged_when_port_0_asked(registry, caplog):
    caplog.set_level(logging.INFO)
    with serving(registry) as ex:
        port = ex.address[1]
    assert f"listening on 127.0.0.1:{port} (127.0.0.1:0)" in caplog.text


def test_stop_finishes_requests_in_flight_then_returns(registry):
    started, release = threading.Event(), threading.Event()
    collected = []

    class Slow:
        def collect(self):
            started.set()
            release.wait(5)
            collected.append(1)
            return []
    registry.register(Slow())
    ex = Exporter(registry, Settings(listen_address="127.0.0.1:0"))
    ex.start()
    idle = socket.create_connection(ex.address, timeout=5)
    result = {}
    scrape = threading.Thread(target=lambda: result.update(zip(("status", "headers", "body"), get(ex))))
    scrape.start()
    assert started.wait(5)
    stopper = threading.Thread(target=ex.stop)
    stopper.start()
    assert closed_within(idle, 2), "an idle kept-alive connection is closed at once"
    time.sleep(0.2)
    assert stopper.is_alive(), "stop() must wait for the request in flight"
    release.set()
    stopper.join(5)
    scrape.join(5)
    assert not stopper.is_alive()
    assert result["status"] == 200 and result["headers"]["Connection"] == "close"
    assert collected == [1]


def test_daemon_detaches_only_after_the_scrape_in_flight(registry):
    """SIGTERM's path (Daemon.stop): no scrape reads maps that close() has closed."""
    from monitor.daemon import serve as daemon_mod
    events, started, release = [], threading.Event(), threading.Event()

    class Maps:
        def collect(self):
            started.set()
            release.wait(5)
            events.append("scrape read the maps" if "closed" not in events else "scrape read closed maps")
            return []
    registry.register(Maps())
    d = daemon_mod.Daemon(Settings(listen_address="127.0.0.1:0"),
                          lambda s: daemon_mod.Attached(registry, lambda: events.append("closed")),
                          logging.getLogger("test"), env={})
    d.start()
    result = {}
    scrape = threading.Thread(target=lambda: result.setdefault("status", get(d.exporter)[0]))
    scrape.start()
    assert started.wait(5)
    stopper = threading.Thread(target=d.stop)
    stopper.start()
    time.sleep(0.2)
    release.set()
    stopper.join(10)
    scrape.join(10)
    assert events == ["scrape read the maps", "closed"] and result["status"] == 200
