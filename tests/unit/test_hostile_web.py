"""The exporter against hostile clients and hostile web configuration files (issue 26):
a wrong-password flood, reloads that would weaken TLS or auth or that name special files,
bodies on GET, evicted connections, escape sequences in request lines, expired certificates.
Loopback only; every wait is bounded."""
import contextlib
import logging
import os
import socket
import ssl
import threading
import time

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily

from monitor.settings.config import Settings
from monitor.web import server, webconfig
from monitor.web.webconfig import BasicAuth, WebConfigError
from tests.unit.test_server import client_context, get, pki, raw, serving, tls_web  # noqa: F401 -- fixture
from tests.unit.test_webconfig import HASH, basic


@pytest.fixture(autouse=True)
def fast_stop(monkeypatch):
    monkeypatch.setattr(server, "POLL_INTERVAL", 0.02)


@pytest.fixture
def registry():
    reg = CollectorRegistry()
    Counter("mnmon_test_scrapes", "A test counter.", registry=reg).inc(3)
    return reg


class Counting:
    """A collector that counts its collections: a request that is served collects once."""

    def __init__(self):
        self.calls = 0

    def collect(self):
        self.calls += 1
        yield GaugeMetricFamily("mnmon_test_gauge", "A test gauge.", value=1)


def auth(user, password):
    return {"Authorization": basic(user, password)}


def request(addr, headers, source="127.0.0.1", timeout=5):
    """Status of one GET /metrics from `source` (a loopback address), or the error's name."""
    try:
        with socket.create_connection(addr, timeout=timeout, source_address=(source, 0)) as s:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            s.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\n{head}Connection: close\r\n\r\n".encode())
            line = s.makefile("rb").readline()
            return int(line.split()[1]) if line else "closed"
    except OSError as e:
        return type(e).__name__


# Basic auth under a flood ---------------------------------------------------------------

@pytest.fixture
def slow_bcrypt(monkeypatch):
    """bcrypt.checkpw taking 50 ms without using a CPU: the flood's cost, deterministic."""
    real = bcrypt.checkpw

    def checkpw(password, hashed):
        time.sleep(0.05)
        return real(password, hashed)
    monkeypatch.setattr(webconfig.bcrypt, "checkpw", checkpw)


def flood(addr, stop, tally, source="127.0.0.1"):
    i = 0
    while not stop.is_set():
        i += 1
        outcome = request(addr, auth("alice", f"wrong{threading.get_ident()}-{i}"), source)
        with tally[0]:
            tally[1][outcome] = tally[1].get(outcome, 0) + 1


@contextlib.contextmanager
def flooding(addr, clients, source="127.0.0.1"):
    stop, tally = threading.Event(), (threading.Lock(), {})
    threads = [threading.Thread(target=flood, args=(addr, stop, tally, source)) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.5)                   # the flood fills the queue and the connection slots
    try:
        yield tally[1]
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)


def test_valid_scrapes_are_served_during_a_wrong_password_flood(registry, tmp_path, monkeypatch, slow_bcrypt):
    # Fewer slots than flooding clients: waiting for bcrypt used to hold every slot.
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 16)
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n")
    with serving(registry, web_config_file=str(web)) as ex:
        assert request(ex.address, auth("alice", "s3cret")) == 200           # now cached
        with flooding(ex.address, 40) as tally:
            outcomes, worst = [], 0.0
            for _ in range(20):
                t0 = time.monotonic()
                outcomes.append(request(ex.address, auth("alice", "s3cret")))
                worst = max(worst, time.monotonic() - t0)
                time.sleep(0.05)
        assert outcomes == [200] * 20, outcomes
        assert worst < 1.0
        assert tally.get(401, 0) + tally.get(429, 0) > 40          # the flood was answered, not queued


def test_a_first_login_from_another_address_is_not_starved_by_a_flood(registry, tmp_path, slow_bcrypt):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n")
    with serving(registry, web_config_file=str(web)) as ex, flooding(ex.address, 40):
        t0 = time.monotonic()
        status = request(ex.address, auth("alice", "s3cret"), source="127.0.0.2")
        took = time.monotonic() - t0
        # From the flood's own address a login is answered at once: served, or 429 to retry.
        t1 = time.monotonic()
        same = request(ex.address, auth("alice", "s3cret"))
        same_took = time.monotonic() - t1
    assert status == 200 and took < 1.0, (status, took)
    assert same in (200, 429) and same_took < 1.0, (same, same_took)


def test_a_reload_keeps_the_cached_answers_of_unchanged_users(monkeypatch):
    calls, real = [], bcrypt.checkpw
    monkeypatch.setattr(webconfig.bcrypt, "checkpw", lambda p, h: calls.append(h) or real(p, h))
    first = BasicAuth({"alice": HASH})
    assert first.check(basic("alice", "s3cret"))
    again = BasicAuth({"alice": HASH, "bob": HASH}, previous=first)
    assert again.check(basic("alice", "s3cret")) and len(calls) == 1
    changed = BasicAuth({"alice": bcrypt.hashpw(b"new", bcrypt.gensalt(4)).decode()}, previous=again)
    assert not changed.check(basic("alice", "s3cret")) and len(calls) == 2   # a new hash: hashed again


def test_an_unknown_user_costs_what_a_configured_user_costs(monkeypatch):
    seen = []
    monkeypatch.setattr(webconfig.bcrypt, "checkpw", lambda p, h: seen.append(h) or False)
    cheap = bcrypt.hashpw(b"x", bcrypt.gensalt(5)).decode()
    auth = BasicAuth({"alice": HASH, "bob": cheap})
    for name in ("nobody", "mallory", "eve", "x" * 30):
        assert not auth.check(basic(name, "pw"))
    costs = {int(h.split(b"$")[2]) for h in seen}
    assert costs <= {4, 5}, costs              # never a cost of its own (it was 10)
    seen.clear()
    auth.check(basic("nobody", "other"))
    auth.check(basic("nobody", "third"))
    assert len({h.split(b"$")[2] for h in seen}) == 1          # the same name, the same cost


def test_the_hash_queue_is_short_and_fair_between_addresses():
    gate = webconfig._HashGate(2)
    order = []
    holder = gate.enter("a")                            # hashing

    def wait(addr, tag):
        try:
            with gate.enter(addr):
                order.append(tag)
        except webconfig.Busy:
            order.append(f"busy {tag}")
    threads = []
    for tag in ("a1", "a2"):
        threads.append(threading.Thread(target=wait, args=("a", tag)))
        threads[-1].start()
        time.sleep(0.05)
    with pytest.raises(webconfig.Busy):
        gate.enter("a")                                 # full, and "a" holds it all
    threads.append(threading.Thread(target=wait, args=("b", "b1")))
    threads[-1].start()                                 # displaces a2, the newest of "a"
    time.sleep(0.05)
    with holder:
        pass
    for t in threads:
        t.join(5)
    assert order == ["busy a2", "a1", "b1"], order


# Reloads never weaken ------------------------------------------------------------------

def test_a_reload_that_weakens_tls_is_refused_and_the_old_config_kept(registry, pki, tmp_path):
    web = tmp_path / "w.yml"
    tls_web(pki, web, client_auth="RequireAndVerifyClientCert", sans=["prometheus.test"])
    strong = web.read_text()
    tls_web(pki, web)
    no_client_cert = web.read_text()
    settings = Settings(listen_address="127.0.0.1:0", web_config_file=str(web))
    weaker = {
        "client_auth_type": (no_client_cert, "lower client_auth_type from "
                             "RequireAndVerifyClientCert to NoClientCert"),
        "optional": (strong.replace("RequireAndVerifyClientCert", "VerifyClientCertIfGiven")
                     .replace("  client_allowed_sans: [prometheus.test]\n", ""), "lower client_auth_type"),
        # A CBC-SHA1 suite Go knows and mnmon's default list leaves out.
        "cipher": (strong + "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "
                   "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA]\n", "accept cipher suites not accepted before"),
        "sans dropped": (strong.replace("  client_allowed_sans: [prometheus.test]\n", ""), "admit client certificate SANs"),
        "sans added": (strong.replace("[prometheus.test]", "[prometheus.test, other.test]"), "admit client certificate SANs"),
        "another CA": (strong.replace("/ca.crt", "/rogue-ca.crt"), "trust a client CA not trusted before"),
        "server order": (strong + "  prefer_server_cipher_suites: false\n", "stop preferring"),
    }
    web.write_text(strong)
    with serving(registry, web_config_file=str(web)) as ex:
        for name, (text, reason) in weaker.items():
            web.write_text(text)
            with pytest.raises(WebConfigError, match=reason):
                ex.reload(settings)
        with pytest.raises(REFUSED):
            get(ex, context=client_context(pki))                  # still: no certificate, no scrape
        assert get(ex, context=client_context(pki, "client"))[0] == 200
        # Stronger or equal is taken: a new server certificate, TLS 1.3 only.
        web.write_text(strong.replace("/server.", "/server2.") + "  min_version: TLS13\n")
        ex.reload(settings)
        assert get(ex, context=client_context(pki, "client"))[0] == 200
        # One curve where OpenSSL's default groups were is stronger; back again is not.
        tls13 = strong + "  min_version: TLS13\n"
        web.write_text(tls13 + "  curve_preferences: [CurveP384]\n")
        ex.reload(settings)
        for text, reason in ((tls13, "accept key exchange groups not accepted before"),
                             (strong, "lower min_version from TLS13 to TLS12")):
            web.write_text(text)
            with pytest.raises(WebConfigError, match=reason):
                ex.reload(settings)


REFUSED = (ssl.SSLError, ConnectionError)


# Special files ---------------------------------------------------------------------------

def special_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    links = {}
    for name, target in (("fifo", fifo), ("device", "/dev/zero"), ("directory", tmp_path)):
        links[name] = tmp_path / f"link-to-{name}"
        links[name].symlink_to(target)
    return {"fifo": str(fifo), **{f"link to {k}": str(v) for k, v in links.items()}}


def in_thread(fn, timeout=5):
    """fn()'s exception (or None), failing the test if fn has not returned in `timeout`."""
    out = []

    def run():
        try:
            fn()
            out.append(None)
        except Exception as e:  # noqa: BLE001 -- handed to the caller
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert out, f"still blocked after {timeout} s"
    return out[0]


@pytest.mark.parametrize("key", ["cert_file", "key_file", "client_ca_file"])
def test_certificates_that_are_special_files_are_one_line_errors_not_hangs(pki, tmp_path, key):
    for name, special in special_files(tmp_path).items():
        files = {"cert_file": f"{pki}/server.crt", "key_file": f"{pki}/server.key",
                 "client_ca_file": f"{pki}/ca.crt", key: special}
        web = tmp_path / "w.yml"
        web.write_text("tls_server_config:\n" + "".join(f"  {k}: {v}\n" for k, v in files.items())
                       + "  client_auth_type: RequireAndVerifyClientCert\n")
        e = in_thread(lambda: webconfig.load(web).ssl_context())
        assert isinstance(e, WebConfigError), (name, e)
        assert f"tls_server_config.{key}" in str(e) and "\n" not in str(e), str(e)


def test_a_reload_onto_special_files_keeps_the_old_config(registry, pki, tmp_path):
    web = tmp_path / "w.yml"
    tls_web(pki, web)
    good = web.read_text()
    with serving(registry, web_config_file=str(web)) as ex:
        for name, special in special_files(tmp_path).items():
            web.write_text(good.replace(f"{pki}/server.crt", special))
            assert isinstance(in_thread(lambda: ex.reload(ex.settings)), WebConfigError), name
            e = in_thread(lambda: ex.reload(Settings(listen_address="127.0.0.1:0", web_config_file=special)))
            assert isinstance(e, WebConfigError), (name, e)
        assert get(ex, context=client_context(pki))[0] == 200


def test_an_expired_server_certificate_is_logged(registry, pki, tmp_path, monkeypatch, caplog):
    web = tls_web(pki, tmp_path / "w.yml")
    assert webconfig.expired(f"{pki}/server.crt") is None
    later = time.time() + 3 * 86400               # the test certificates last 2 days
    monkeypatch.setattr(webconfig.time, "time", lambda: later)
    with caplog.at_level(logging.WARNING, "mnmon.web"), serving(registry, web_config_file=web) as ex:
        ex.log = logging.getLogger("mnmon.web")
        assert get(ex, context=client_context(pki))[0] == 200       # still served: a warning, no refusal
    warned = [r.getMessage() for r in caplog.records if "expired on" in r.getMessage()]
    assert warned and "server.crt" in warned[0], [r.getMessage() for r in caplog.records]


# Requests ----------------------------------------------------------------------------------

def test_a_get_with_a_body_is_refused_not_served_twice(registry):
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    with serving(registry) as ex:
        for head in (f"Content-Length: {len(smuggled)}\r\n".encode(),
                     b"Content-Length: 0\r\nContent-Length: 5\r\n",
                     b"Transfer-Encoding: chunked\r\n"):
            answer = raw(ex.address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + smuggled)
            assert answer.startswith(b"HTTP/1.1 400 "), answer[:60]
            assert answer.count(b"HTTP/1.1 ") == 1, answer
        assert raw(ex.address, b"GET /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_an_http09_request_gets_a_status_line(registry):
    # Found by the head fuzzer: an explicit HTTP/0.9 got a bare "501 Not Implemented" body.
    with serving(registry) as ex:
        for line, status in ((b"GET;X / HTTP/0.9\r\n\r\n", 505), (b"GET /metrics HTTP/0.9\r\n\r\n", 505),
                             (b"GET /a /b HTTP/0.9\r\n\r\n", 400)):
            assert raw(ex.address, line).startswith(b"HTTP/1.1 %d " % status), line


def test_a_client_gone_mid_head_or_evicted_is_not_collected_for(monkeypatch):
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 4)
    counting = Counting()
    reg = CollectorRegistry()
    reg.register(counting)
    counting.calls = 0
    with serving(reg) as ex:
        # Half a head, then the client hangs up.
        raw(ex.address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        # Half-sent heads past the cap: the oldest are evicted (shut down) to make room.
        held = []
        for _ in range(12):
            s = socket.create_connection(ex.address, timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
            time.sleep(0.02)
        time.sleep(0.3)
        for s in held:
            s.close()
        time.sleep(0.2)
        assert counting.calls == 0, f"{counting.calls} collections for clients that were gone"
        assert get(ex)[0] == 200 and counting.calls == 1


def test_the_connection_cap_log_counts_open_connections(monkeypatch, caplog):
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 4)
    gate = threading.Event()

    class Blocking:
        def collect(self):
            gate.wait(5)
            yield GaugeMetricFamily("mnmon_test_gauge", "A test gauge.", value=1)
    reg = CollectorRegistry()
    reg.register(Blocking())
    gate.set()          # registering collects once
    gate.clear()
    with serving(reg) as ex:
        socks = []
        try:
            for _ in range(4):                            # four scrapes inside their collection
                s = socket.create_connection(ex.address, timeout=5)
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                socks.append(s)
            time.sleep(0.3)
            with caplog.at_level(logging.ERROR):
                extra = socket.create_connection(ex.address, timeout=5)
                assert extra.recv(10) == b""              # closed: no room
                extra.close()
        finally:
            gate.set()
            for s in socks:
                s.close()
    full = [r.getMessage() for r in caplog.records if "all inside a request" in r.getMessage()]
    assert full and full[0].startswith("4 connections open (the cap is 4)"), full


def test_request_lines_are_logged_escaped(registry, caplog):
    with caplog.at_level(logging.DEBUG), serving(registry) as ex:
        ex.log = logging.getLogger("mnmon.web")
        raw(ex.address, b"GET /\x1b[2J\rFAKE HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
    lines = [r.getMessage() for r in caplog.records]
    assert any("\\x1b[2J" in m for m in lines), lines
    assert not any("\x1b" in m or "\r" in m for m in lines), lines


def test_basic_auth_busy_is_a_429(registry, tmp_path, monkeypatch):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n")

    def busy(self, header, address=""):
        raise webconfig.Busy()
    with serving(registry, web_config_file=str(web)) as ex:
        monkeypatch.setattr(BasicAuth, "check", busy)
        status, headers, _ = get(ex, headers=auth("alice", "s3cret"))
    assert status == 429 and headers["Retry-After"] == "1"
