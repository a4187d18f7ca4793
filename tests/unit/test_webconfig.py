"""The exporter-toolkit web configuration file: validation, TLS contexts, basic auth.

make_pki() is shared with test_server.py: a throw-away CA, a server certificate for
127.0.0.1/::1/localhost, a client certificate from that CA and one from another CA.
"""
import base64
import shutil
import ssl
import subprocess
from pathlib import Path

import bcrypt
import pytest

from monitor.settings.config import ConfigError
from monitor.web import webconfig
from monitor.web.webconfig import BasicAuth, WebConfigError, parse, parse_basic

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(d, *args):
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)


def _ca(d, name):
    _openssl(d, "req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _leaf(d, name, ca, exts):
    (Path(d) / f"{name}.ext").write_text(
        exts + "\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl(d, "req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")


def make_pki(d):
    """Write ca, server, server2, client (signed by ca), rogue-ca and rogue (signed by rogue-ca)
    as NAME.crt / NAME.key in directory d; return d as a Path."""
    d = Path(d)
    _ca(d, "ca")
    _ca(d, "rogue-ca")
    for server in ("server", "server2"):
        _leaf(d, server, "ca", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth")
    _leaf(d, "client", "ca", "subjectAltName=DNS:prometheus.test\nextendedKeyUsage=clientAuth")
    _leaf(d, "rogue", "rogue-ca", "subjectAltName=DNS:prometheus.test\nextendedKeyUsage=clientAuth")
    return d


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    return make_pki(tmp_path_factory.mktemp("pki"))


HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


def basic(user, password):
    raw = user.encode() + b":" + (password if isinstance(password, bytes) else password.encode())
    return "Basic " + base64.b64encode(raw).decode()


def test_empty_file_is_plain_http_without_auth():
    wc = parse(None, "web.yml")
    assert wc.tls is None and wc.ssl_context() is None
    assert not wc.basic_auth().required
    assert wc.basic_auth().check(None) is True


def test_full_file_parses():
    wc = parse({
        "tls_server_config": {
            "cert_file": "s.crt", "key_file": "/abs/s.key", "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": "ca.crt", "client_allowed_sans": ["prometheus.test"],
            "min_version": "TLS13", "max_version": "TLS13", "prefer_server_cipher_suites": False,
        },
        "http_server_config": {"http2": False, "headers": {
            "X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff", "X-XSS-Protection": ""}},
        "basic_auth_users": {"alice": HASH},
    }, "web.yml", base_dir="/etc/mnmon")
    t = wc.tls
    assert (t.cert_file, t.key_file, t.client_ca_file) == ("/etc/mnmon/s.crt", "/abs/s.key", "/etc/mnmon/ca.crt")
    assert t.client_auth == ssl.CERT_REQUIRED
    assert t.client_allowed_sans == ("prometheus.test",)
    assert t.min_version == t.max_version == ssl.TLSVersion.TLSv1_3
    assert t.prefer_server_ciphers is False
    # A blank value means "unset", as the toolkit documents.
    assert wc.headers == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}
    assert wc.users == {"alice": HASH}


TLS = {"cert_file": "s.crt", "key_file": "s.key"}


@pytest.mark.parametrize("data, message", [
    ({"tls_server_confg": {}}, "web.yml: tls_server_confg: unknown key"),
    ({"rate_limit": {"interval": "1s"}}, "web.yml: rate_limit: rate limiting is not supported"),
    ({"tls_server_config": {"cert_file": "s.crt"}}, "web.yml: tls_server_config.key_file: missing"),
    ({"tls_server_config": {"key_file": "s.key"}}, "web.yml: tls_server_config.cert_file: missing"),
    ({"tls_server_config": {"cert": "", "key_file": "s.key"}},
     "web.yml: tls_server_config.cert_file: missing one of cert or cert_file"),
    ({"tls_server_config": {**TLS, "cipher_suites": ["TLS_RSA_WITH_AES_128_GCM_SHA256"]}},
     "web.yml: tls_server_config.cipher_suites: unknown cipher 'TLS_RSA_WITH_AES_128_GCM_SHA256'"),
    ({"tls_server_config": {**TLS, "bogus": 1}}, "web.yml: tls_server_config.bogus: unknown key"),
    ({"tls_server_config": {**TLS, "client_auth_type": "Always"}},
     "web.yml: tls_server_config.client_auth_type: invalid ClientAuth 'Always' (one of NoClientCert"),
    ({"tls_server_config": {**TLS, "client_auth_type": "RequireAnyClientCert"}},
     "web.yml: tls_server_config.client_auth_type: RequireAnyClientCert is not supported"),
    ({"tls_server_config": {**TLS, "client_auth_type": "RequestClientCert"}},
     "web.yml: tls_server_config.client_auth_type: RequestClientCert is not supported"),
    ({"tls_server_config": {**TLS, "client_ca_file": "ca.crt"}},
     "web.yml: tls_server_config.client_ca_file: client CAs are configured without a client_auth_type"),
    ({"tls_server_config": {**TLS, "client_auth_type": "RequireClientCert"}},
     "web.yml: tls_server_config.client_auth_type: RequireClientCert is not supported"),
    ({"tls_server_config": {**TLS, "curve_preferences": ["CurveP256", "CurveP384"]}},
     "web.yml: tls_server_config.curve_preferences: CurveP256, CurveP384 is not supported"),
    ({"tls_server_config": {**TLS, "min_version": "TLS14"}},
     "web.yml: tls_server_config.min_version: unknown TLS version 'TLS14'"),
    ({"tls_server_config": {**TLS, "min_version": "TLS13", "max_version": "TLS12"}},
     "web.yml: tls_server_config.min_version: is above max_version"),
    ({"http_server_config": {"headers": {"Server": "x"}}},
     "web.yml: http_server_config.headers.Server: cannot be configured"),
    ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
     "web.yml: http_server_config.headers.X-Frame-Options: invalid value 'allow' (one of deny, sameorigin)"),
    ({"http_server_config": {"headers": {"Content-Security-Policy": "a\r\nSet-Cookie: x"}}},
     "web.yml: http_server_config.headers.Content-Security-Policy: 'a\\r\\nSet-Cookie: x' is not a one-line"),
    ({"http_server_config": {"http2": "yes"}}, "web.yml: http_server_config.http2: is not true or false"),
    ({"basic_auth_users": {"alice": "s3cret"}}, "web.yml: basic_auth_users.alice: not a bcrypt hash"),
    ({"basic_auth_users": {"a:b": HASH}}, "web.yml: basic_auth_users: 'a:b' is not a user name"),
    ({"basic_auth_users": ["alice"]}, "web.yml: basic_auth_users: expected a mapping"),
    (["tls_server_config"], "web.yml: top level: expected a mapping"),
])
def test_parse_errors_name_the_file_and_key(data, message):
    with pytest.raises(WebConfigError) as e:
        parse(data, "web.yml")
    assert str(e.value).startswith(message)
    assert isinstance(e.value, ConfigError)          # one type for the CLI to catch


def test_load_reports_yaml_position(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  alice: x\n bob: y\n")
    with pytest.raises(WebConfigError, match=r"web\.yml: line 3, column 2: "):
        webconfig.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(WebConfigError, match=r"absent\.yml: no such file or directory"):
        webconfig.load(tmp_path / "absent.yml")


def test_load_resolves_names_relative_to_the_file(pki):
    (pki / "web.yml").write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    wc = webconfig.load(pki / "web.yml")
    assert wc.tls.cert_file == str(pki / "server.crt")
    assert isinstance(wc.ssl_context(), ssl.SSLContext)


def test_ssl_context_with_client_verification(pki):
    wc = parse({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                                      "client_auth_type": "RequireAndVerifyClientCert",
                                      "client_ca_file": "ca.crt", "min_version": "TLS13"}},
               "web.yml", base_dir=str(pki))
    ctx = wc.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "ca"),),)]


@pytest.mark.parametrize("cert, key, message", [
    ("missing.crt", "server.key", "tls_server_config.cert_file: {d}/missing.crt: no such file or directory"),
    ("server.crt", ".", "tls_server_config.key_file: {d}/.: is a directory"),
    ("server.ext", "server.key", "tls_server_config.cert_file: {d}/server.ext: no PEM certificate in it"),
    ("server.crt", "server.crt", "tls_server_config.key_file: {d}/server.crt: no PEM private key in it"),
    ("server.crt", "client.key", "tls_server_config.key_file: {d}/client.key: not the key of cert_file"),
    ("server.crt", "encrypted.key", "tls_server_config.key_file: {d}/encrypted.key: the key is encrypted"),
])
def test_unusable_certificates_name_the_file_and_the_reason(pki, cert, key, message):
    if not (pki / "encrypted.key").exists():
        _openssl(pki, "pkey", "-in", "server.key", "-out", "encrypted.key", "-aes256", "-passout", "pass:x")
    wc = parse({"tls_server_config": {"cert_file": cert, "key_file": key}}, "web.yml", base_dir=str(pki))
    with pytest.raises(WebConfigError) as e:
        wc.ssl_context()
    assert str(e.value).startswith("web.yml: " + message.format(d=pki))


def test_unusable_client_ca(pki):
    wc = parse({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                                      "client_auth_type": "VerifyClientCertIfGiven",
                                      "client_ca_file": "server.ext"}}, "web.yml", base_dir=str(pki))
    with pytest.raises(WebConfigError, match=r"tls_server_config\.client_ca_file: .*server\.ext: no certificate"):
        wc.ssl_context()


@pytest.mark.parametrize("header, want", [
    (basic("alice", "pw"), ("alice", b"pw")),
    (basic("alice", "p:w"), ("alice", b"p:w")),        # only the first colon splits
    (basic("alice", ""), ("alice", b"")),
    ("basic " + base64.b64encode(b"bob:x").decode(), ("bob", b"x")),   # the scheme is case-insensitive
    (None, None),
    ("", None),
    ("Bearer abc", None),
    ("Basic", None),
    ("Basic !!!notbase64", None),
    ("Basic " + base64.b64encode(b"nocolon").decode(), None),
    ("Basic " + base64.b64encode(b"\xff\xfe:pw").decode(), None),       # user name not UTF-8
    ("Basic \xe9\xe8", None),                                           # latin-1 bytes in the header
    ("Basic \u20ac", None),                                             # not even latin-1
])
def test_parse_basic(header, want):
    assert parse_basic(header) == want


def test_basic_auth_accepts_bcrypt_hashes_of_every_prefix():
    for prefix in ("$2b$", "$2y$", "$2a$"):
        auth = BasicAuth({"alice": HASH.replace("$2b$", prefix, 1)})
        assert auth.required
        assert auth.check(basic("alice", "s3cret")), prefix


@pytest.mark.parametrize("header", [
    basic("alice", "wrong"),
    basic("mallory", "s3cret"),
    basic("alice", "s3cret" * 20),      # over bcrypt's 72 bytes
    None,
    "Basic ####",
    "Digest username=alice",
])
def test_basic_auth_refuses(header):
    assert BasicAuth({"alice": HASH}).check(header) is False


def test_basic_auth_caches_answers(monkeypatch):
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(webconfig.bcrypt, "checkpw", lambda p, h: calls.append(p) or real(p, h))
    auth = BasicAuth({"alice": HASH})
    assert auth.check(basic("alice", "s3cret"))
    assert auth.check(basic("alice", "s3cret"))
    assert len(calls) == 1
    assert not auth.check(basic("alice", "nope"))
    assert not auth.check(basic("alice", "nope"))
    assert len(calls) == 2                  # the same wrong password again costs no hash
    assert not auth.check(basic("nobody", "s3cret"))
    assert len(calls) == 3                  # an unknown user costs a hash too (no timing oracle)
    assert not auth.check(basic("nobody", "s3cret"))
    assert len(calls) == 3


def test_a_flood_of_wrong_passwords_hashes_one_at_a_time(monkeypatch):
    import threading
    import time
    running, most = [0], [0]
    lock = threading.Lock()

    def slow_checkpw(p, h):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return False
    monkeypatch.setattr(webconfig.bcrypt, "checkpw", slow_checkpw)
    auth = BasicAuth({"alice": HASH})
    auth._ok.add(__import__("hashlib").sha256(b"\0".join([b"alice", b"good", HASH.encode()])).digest())
    def check(header):
        try:
            auth.check(header)
        except webconfig.Busy:            # the queue is short: most of the flood is refused
            pass
    threads = [threading.Thread(target=check, args=(basic("alice", f"wrong{i}"),)) for i in range(20)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    assert auth.check(basic("alice", "good"))            # a cached pair does not queue behind the flood
    assert time.monotonic() - t0 < 0.05
    for t in threads:
        t.join()
    assert most[0] == 1


def test_hostile_web_config_files_are_one_short_line(tmp_path):
    from tests.unit.test_config import LAUGHS
    laughs = tmp_path / "laughs.yml"
    laughs.write_text(LAUGHS.replace("web:\n  listen_address: *i\n", "basic_auth_users: *i\n"))
    long_value = tmp_path / "long.yml"
    long_value.write_text("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: " + "T" * 3000 + "\n")
    for path, message in [(laughs, "aliases (*name) are not allowed"), ("/dev/zero", "not a regular file"),
                          (long_value, "min_version: unknown TLS version 'TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT...")]:
        with pytest.raises(WebConfigError) as e:
            webconfig.load(path)
        assert message in str(e.value) and len(str(e.value)) < 300


@pytest.mark.parametrize("data", [
    {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": [1]}},
    {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": {"x": 1}}},
    {"http_server_config": {"headers": {("a",): "b"}}},
    {1: 2},
])
def test_odd_values_are_web_config_errors(data):
    with pytest.raises(WebConfigError):
        parse(data, "w.yml")
