"""Web configuration files as exporter-toolkit judges them (tests/unit/web_configs/).

Modelled on the toolkit's own web/testdata, each file says in its first lines what the
toolkit does with it and what mnmon does:

    NAME.good.yml      both accept it
    NAME.bad.yml       both refuse it; "# exporter-toolkit:" is the toolkit's error,
                       "# mnmon:" a part of mnmon's one-line error
    NAME.refused.yml   the toolkit accepts it, mnmon refuses it, and says why: Python's
                       ssl cannot do it, or no client could ever connect

A line "<<NAME>>" becomes the PEM file NAME of the throw-away PKI (inline cert, key, CA).
"""
import re
import shutil
import ssl
from pathlib import Path

import pytest

from monitor.web import webconfig
from monitor.web.webconfig import WebConfigError
from tests.unit.test_webconfig import make_pki

CASES = Path(__file__).parent / "web_configs"
GOOD = sorted(p.name for p in CASES.glob("*.good.yml"))
REFUSED = sorted(p.name for p in CASES.glob("*.bad.yml")) + sorted(p.name for p in CASES.glob("*.refused.yml"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    return make_pki(tmp_path_factory.mktemp("pki"))


def _placed(pki, name):
    """The case written into the PKI's directory, its PEM markers filled in."""
    def pem(m):
        return "\n".join(m.group(1) + line for line in (pki / m.group(2)).read_text().splitlines())
    text = re.sub(r"^( *)<<(.+)>>$", pem, (CASES / name).read_text(), flags=re.M)
    (pki / name).write_text(text)
    return pki / name


def _expected(name):
    return re.search(r"^# mnmon: (.+)$", (CASES / name).read_text(), re.M).group(1)


def test_the_table_has_both_kinds():
    assert len(GOOD) >= 20 and len(REFUSED) >= 40


@pytest.mark.parametrize("name", GOOD)
def test_what_the_toolkit_accepts_is_accepted(pki, name):
    wc = webconfig.load(_placed(pki, name))
    ctx = wc.ssl_context()
    assert (ctx is None) == (wc.tls is None)
    if ctx is not None:
        assert isinstance(ctx, ssl.SSLContext)


@pytest.mark.parametrize("name", REFUSED)
def test_what_is_refused_is_one_line_naming_the_file(pki, name):
    path = _placed(pki, name)
    with pytest.raises(WebConfigError) as e:
        webconfig.load(path).ssl_context()
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 400, message
    assert _expected(name) in message, message


def test_go_names_become_openssl_names(pki):
    t = webconfig.load(_placed(pki, "some_ciphers.good.yml")).tls
    assert t.ciphers == ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert webconfig.load(_placed(pki, "one_curve.good.yml")).tls.curve == "secp521r1"
    # TLS 1.3 names: no effect on TLS 1.2, as in Go; CBC-SHA1 only when named.
    t = webconfig.load(_placed(pki, "all_ciphers.good.yml")).tls
    assert len(t.ciphers) == 10 and "ECDHE-RSA-AES128-SHA" in t.ciphers


def test_without_cipher_suites_tls12_offers_forward_secret_aead_only(pki):
    ctx = webconfig.load(_placed(pki, "verify_if_given.good.yml")).ssl_context()
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                     "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                     "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"}


def test_scalars_are_read_as_go_reads_them(pki):
    wc = webconfig.load(_placed(pki, "headers_scalars.good.yml"))
    assert wc.headers == {"X-XSS-Protection": "0x10", "Content-Security-Policy": "true"}
    assert "1234" in webconfig.load(_placed(pki, "users.good.yml")).users
    t = webconfig.load(_placed(pki, "yaml_booleans.good.yml")).tls
    assert t.prefer_server_ciphers is False


def test_inline_pem_and_system_cas(pki):
    ctx = webconfig.load(_placed(pki, "client_ca_inline.good.yml")).ssl_context()
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "ca"),),)]
    assert webconfig.load(_placed(pki, "require_and_verify_system_cas.good.yml")).tls.system_cas
    assert webconfig.load(_placed(pki, "tls_section_without_cert.good.yml")).tls is None
