"""Bad input gets one clear line and an exit status, never a traceback."""
import os
import socket

import pytest

from tests.support.mnmon_proc import free_port, run

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def one_line(r, code, *words):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    err = [l for l in r.stderr.splitlines() if l.strip()]
    assert err and err[-1].startswith(("mnmon:", "Error:")), r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def test_broken_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("web:\n  listen_address: [unclosed\n")
    one_line(run("config", "check", str(f)), 2, "line")


def test_unknown_key_names_its_path(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("probes:\n  strtc: true\n")
    one_line(run("config", "check", str(f)), 2, "probes.strtc")


def test_good_config_checks_ok(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("web:\n  listen_address: 127.0.0.1:7668\nprobes:\n  strict: true\n")
    r = run("config", "check", str(f))
    assert r.returncode == 0 and r.stdout.strip() == f"{f}: ok"


def test_bad_duration():
    one_line(run("sample", "--duration", "10x"), 2, "10x")


def test_unreadable_certificate(tmp_path):
    web = tmp_path / "web.yaml"
    web.write_text(f"tls_server_config:\n  cert_file: {tmp_path}/missing.crt\n  key_file: {tmp_path}/missing.key\n")
    one_line(run("serve", "--web.config.file", str(web), "--web.listen-address", f"127.0.0.1:{free_port()}"),
             2, "missing.crt")


@root
def test_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        one_line(run("serve", "--web.listen-address", f"127.0.0.1:{port}"), 1, "address already in use")


@root
def test_not_privileged():
    one_line(run("sample", "--duration", "1s", user="nobody"), 3, "needs root")


@root
def test_strict_fails_when_a_probe_cannot_attach():
    from monitor.probes import inspect_host
    facts, _ = inspect_host()
    if facts.headers == "matching" and facts.kprobes:
        pytest.skip("every probe may attach on this host")
    one_line(run("serve", "--strict", "--web.listen-address", f"127.0.0.1:{free_port()}"), 3,
             "--strict: not attached", "invalidate_range_start")
