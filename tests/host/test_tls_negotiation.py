"""`mnmon serve` on this host, TLS as the web configuration's Go names say: which cipher
suites and key exchange groups a client can actually negotiate, with the defaults and
after a reload to a file naming Go's cipher suites and curve. Loopback only.

Python's ssl is the client for cipher suites (it reports what was negotiated) and
`openssl s_client` for groups (Python cannot offer X25519 alone).
"""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from tests.host.test_hostile import get, start_serve, wait_ready
from tests.host.test_robustness import FIGURES
from tests.support.mnmon_proc import free_port

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="attaching BPF needs root"),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")]

GO_NAMED = """\
  cipher_suites:
    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
  curve_preferences: [CurveP384]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.unit.test_webconfig import make_pki
    tmp = tmp_path_factory.mktemp("tls")
    pki = make_pki(tmp)                    # an ECDSA P-256 server certificate
    port = free_port()
    web = tmp / "web.yml"
    base = f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
    web.write_text(base)
    cfg = tmp / "config.yaml"
    cfg.write_text(f"web:\n  listen_address: 127.0.0.1:{port}\n  config_file: {web}\n")
    log = tmp / "serve.log"
    proc = start_serve(["--config.file", str(cfg)], log)
    wait_ready(proc, port, log, context=ssl.create_default_context(cafile=str(pki / "ca.crt")))
    yield proc, port, pki, web, base, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def scrape(port, pki, cipher, version=ssl.TLSVersion.TLSv1_2):
    """(HTTP status or error name, cipher negotiated) of one GET /metrics offering only `cipher`."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers(cipher)
    status, _ = get(port, context=ctx)
    try:
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                             server_hostname="127.0.0.1") as s:
            return status, s.cipher()[0]
    except (ssl.SSLError, OSError) as e:
        return status, type(e).__name__


def handshake(port, pki, *args):
    """`openssl s_client` output lines about the protocol, suite and key exchange, or its alert."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki / "ca.crt"),
                        "-brief", *args], input=b"", capture_output=True, timeout=20)
    out = (r.stdout + r.stderr).decode(errors="replace")
    keep = ("Protocol version", "Ciphersuite", "Server Temp Key", "Peer Temp Key", "alert")
    return [line.strip() for line in out.splitlines() if any(k in line for k in keep)]


def test_1_defaults_offer_ecdhe_aead_only_on_tls12(served):
    proc, port, pki, web, base, log = served
    seen = {}
    for cipher in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                   "ECDHE-ECDSA-CHACHA20-POLY1305"):
        seen[cipher] = scrape(port, pki, cipher)
        assert seen[cipher] == (200, cipher), seen
    # Go's own default still has these; mnmon's leaves them out. Static RSA and CBC-SHA256
    # are out either way (and need an RSA certificate or a name Go refuses).
    for cipher in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256"):
        seen[cipher] = scrape(port, pki, cipher)
        assert seen[cipher][0] != 200 and seen[cipher][1] == "SSLError", seen
    assert scrape(port, pki, "DEFAULT", ssl.TLSVersion.TLSv1_3)[0] == 200
    FIGURES["tls_defaults"] = {c: s for c, (s, _) in seen.items()}


def test_2_go_named_ciphers_and_curve_after_a_reload(served):
    proc, port, pki, web, base, log = served
    web.write_text(base + GO_NAMED)                  # a subset of suites, one curve: stronger, taken
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while scrape(port, pki, "ECDHE-ECDSA-CHACHA20-POLY1305")[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "reloaded" in log.read_text(), log.read_text()[-2000:]
    seen = {}
    for cipher, ok in (("ECDHE-ECDSA-AES128-GCM-SHA256", True), ("ECDHE-ECDSA-AES256-GCM-SHA384", True),
                       ("ECDHE-ECDSA-CHACHA20-POLY1305", False), ("ECDHE-ECDSA-AES128-SHA", False),
                       ("ECDHE-ECDSA-AES256-SHA", False)):
        seen[cipher] = scrape(port, pki, cipher)
        assert (seen[cipher] == (200, cipher)) if ok else (seen[cipher][0] != 200), seen
    groups = {}
    # On TLS 1.2 a client must also list the curve of an ECDSA certificate's key (P-256
    # here, RFC 4492 5.1; Go asks the same), so each TLS 1.2 offer includes it.
    offers = [("-tls1_2", "P-384:P-256", True), ("-tls1_2", "P-256", False), ("-tls1_2", "X25519:P-256", False),
              ("-tls1_3", "P-384", True), ("-tls1_3", "P-256", False), ("-tls1_3", "X25519", False),
              ("-tls1_3", "X25519:P-384", True)]
    for version, group, ok in offers:
        out = handshake(port, pki, version, "-groups", group)
        groups[f"{version[1:]} {group}"] = out
        assert any("Protocol version" in line for line in out) == ok, (version, group, out)
        if ok:
            assert any("Temp Key" in line and ("P-384" in line or "secp384r1" in line) for line in out), out
    FIGURES["tls_go_named"] = {**{c: s for c, (s, _) in seen.items()},
                               **{g: "ok" if any("Protocol" in x for x in o) else "refused" for g, o in groups.items()}}


def test_3_back_to_the_defaults_is_refused(served):
    proc, port, pki, web, base, log = served
    web.write_text(base)
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while "accept cipher suites not accepted before" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = log.read_text()
    assert "accept key exchange groups not accepted before" in text, text[-2000:]
    assert scrape(port, pki, "ECDHE-ECDSA-CHACHA20-POLY1305")[0] != 200
