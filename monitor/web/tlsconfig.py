"""tls_server_config of the web configuration file, and the SSLContext it makes.

exporter-toolkit decides what a file means (web/tls_config.go, docs/web-configuration.md);
mnmon accepts what it accepts and refuses what it refuses, with the same defaults. Where
Python's ssl cannot do what Go does, the setting is refused in one line naming it, never
accepted and ignored:

    client_auth_type RequestClientCert, RequireAnyClientCert: Python's ssl verifies every
        client certificate it asks for; Go asks for one and takes it unverified.
    curve_preferences of more than one curve, or X25519: Go takes the list as the set of
        groups allowed; Python 3.11's ssl can limit the groups to one NIST curve
        (set_ecdh_curve), not to a list (set_groups comes in a later Python).
    min_version TLS10, TLS11: OpenSSL 3 speaks them only at security level 0, which would
        also admit weak keys and SHA-1 signatures on TLS 1.2.

Refused too, although Go starts with them, are files with which no client could ever
connect: min_version above max_version, a client CA with no certificate in it,
cipher_suites with no TLS 1.2 suite while max_version is TLS12.
"""
import contextlib
import os
import ssl
from dataclasses import dataclass
from typing import Optional

from monitor.settings import yamlfile
from monitor.settings.yamlfile import short
from monitor.web import goyaml, gotls

_FIELDS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
           "cipher_suites", "curve_preferences", "min_version", "max_version",
           "prefer_server_cipher_suites", "client_allowed_sans")
# Go's TLSConfig.IsEnabled(): TLS is on when one of these is set; otherwise the section
# is checked (names, versions) and the server speaks plain HTTP.
_ENABLING = ("cert_file", "cert", "key_file", "key", "client_ca_file", "client_ca", "client_auth_type")

# A PEM chain with its key is a few KiB; a CA bundle (Debian's has 140 CAs) about 200.
MAX_PEM_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TLSConfig:
    """A parsed tls_server_config. A file given wins over inline PEM, as in Go."""
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    client_auth: int = ssl.CERT_NONE
    client_ca_file: Optional[str] = None
    client_allowed_sans: tuple = ()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    prefer_server_ciphers: bool = True
    ciphers: tuple = gotls.DEFAULT_TLS12_CIPHERS      # OpenSSL names, TLS 1.2 and below
    curve: Optional[str] = None                       # the one ECDH group; None: OpenSSL's
    cert: Optional[str] = None                        # inline PEM
    key: Optional[str] = None
    client_ca: Optional[str] = None

    @property
    def system_cas(self):
        """Clients verified against the system's CAs (Go: a nil ClientCAs pool)."""
        return self.client_auth != ssl.CERT_NONE and not (self.client_ca_file or self.client_ca)


def parse(t, fail, path, http2=True):
    """TLSConfig from the tls_server_config mapping, or None when TLS is off.
    fail(key, reason) makes the error; path(key, value) resolves a file name."""
    k = "tls_server_config"
    if t is None:
        return None
    if not isinstance(t, dict):
        raise fail(k, "expected a mapping")
    for key in t:
        if key not in _FIELDS:
            raise fail(f"{k}.{yamlfile.key_name(key)}", "unknown key")
    # What Go's YAML decoding refuses comes first: it is refused with TLS off as well.
    for key in _ENABLING:
        if t.get(key) is not None and not isinstance(t[key], str):
            raise fail(f"{k}.{key}", f"{short(t[key])} is not a string")
    suites = _names(t, "cipher_suites", (*gotls.TLS12_CIPHERS, *gotls.TLS13_CIPHERS), "unknown cipher", fail)
    curves = _names(t, "curve_preferences", gotls.CURVES, "unknown curve", fail)
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = t.get(key, default)
        if not isinstance(name, str) or name not in gotls.VERSIONS:
            raise fail(f"{k}.{key}", f"unknown TLS version {short(name)} (one of {', '.join(gotls.VERSIONS)})")
        versions[key] = gotls.VERSIONS[name]
    prefer = goyaml.boolean(t.get("prefer_server_cipher_suites", True))
    if prefer is None:
        raise fail(f"{k}.prefer_server_cipher_suites", f"{short(t['prefer_server_cipher_suites'])} is not true or false")
    sans = t.get("client_allowed_sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        raise fail(f"{k}.client_allowed_sans", "expected a list of names")
    if not any(t.get(key) for key in _ENABLING):
        return None

    if not (t.get("cert_file") or t.get("cert")):
        raise fail(f"{k}.cert_file", "missing one of cert or cert_file")
    if not (t.get("key_file") or t.get("key")):
        raise fail(f"{k}.key_file", "missing one of key or key_file")
    auth_name = t.get("client_auth_type") or "NoClientCert"
    if auth_name not in gotls.CLIENT_AUTH:      # a str: checked above
        raise fail(f"{k}.client_auth_type", f"invalid ClientAuth {short(auth_name)} "
                   f"(one of {', '.join(n for n in gotls.CLIENT_AUTH if n != 'RequireClientCert')})")
    auth = gotls.CLIENT_AUTH[auth_name]
    if auth is None:
        raise fail(f"{k}.client_auth_type", f"{auth_name} is not supported: Python's ssl verifies every "
                   "client certificate it asks for; use VerifyClientCertIfGiven or RequireAndVerifyClientCert")
    if (t.get("client_ca_file") or t.get("client_ca")) and auth == ssl.CERT_NONE:
        raise fail(f"{k}.client_ca_file", "client CAs are configured without a client_auth_type")
    if versions["min_version"] < ssl.TLSVersion.TLSv1_2:
        raise fail(f"{k}.min_version", "TLS10 and TLS11 are not supported: OpenSSL 3 speaks them only at "
                   "security level 0, which would admit weak keys on TLS 1.2 too")
    if versions["min_version"] > versions["max_version"]:
        raise fail(f"{k}.min_version", "is above max_version: no client could connect")
    if suites and http2 and versions["min_version"] < ssl.TLSVersion.TLSv1_3 \
            and not set(suites) & set(gotls.HTTP2_REQUIRED):
        raise fail(f"{k}.cipher_suites", "missing an HTTP/2-required AES_128_GCM_SHA256 suite (one of "
                   f"{' or '.join(gotls.HTTP2_REQUIRED)}), or set http_server_config.http2: false")
    ciphers = gotls.DEFAULT_TLS12_CIPHERS
    if suites:
        ciphers = tuple(dict.fromkeys(gotls.TLS12_CIPHERS[s] for s in suites if s in gotls.TLS12_CIPHERS))
        if not ciphers:
            # Go then has no suite for TLS 1.2: only TLS 1.3 clients get in.
            if versions["max_version"] < ssl.TLSVersion.TLSv1_3:
                raise fail(f"{k}.cipher_suites", "no TLS 1.2 suite and max_version is TLS12: no client could connect")
            versions["min_version"] = ssl.TLSVersion.TLSv1_3
    return TLSConfig(
        cert_file=path(f"{k}.cert_file", t["cert_file"]) if t.get("cert_file") else None,
        key_file=path(f"{k}.key_file", t["key_file"]) if t.get("key_file") else None,
        client_auth=auth,
        client_ca_file=path(f"{k}.client_ca_file", t["client_ca_file"]) if t.get("client_ca_file") else None,
        client_allowed_sans=tuple(sans), min_version=versions["min_version"],
        max_version=versions["max_version"], prefer_server_ciphers=prefer, ciphers=ciphers,
        curve=_curve(curves, fail), cert=t.get("cert") or None, key=t.get("key") or None,
        client_ca=t.get("client_ca") or None)


def _names(t, key, known, unknown, fail):
    names = t.get(key) or []
    if not isinstance(names, list):
        raise fail(f"tls_server_config.{key}", "expected a list of names")
    for name in names:
        if not isinstance(name, str) or name not in known:
            raise fail(f"tls_server_config.{key}", f"{unknown} {short(name)}")
    return names


def _curve(curves, fail):
    if not curves:
        return None
    distinct = list(dict.fromkeys(curves))
    group = gotls.CURVES[distinct[0]] if len(distinct) == 1 else None
    if group is None:
        raise fail("tls_server_config.curve_preferences",
                   f"{', '.join(distinct)} is not supported: Python's ssl can limit key exchange to one of "
                   "CurveP256, CurveP384, CurveP521, not to a list nor to X25519; give one, or none for OpenSSL's "
                   "defaults")
    return group


def ssl_context(t, where, error):
    """A server SSLContext for TLSConfig t; every file is opened and loaded now, so a bad
    certificate is error("WHERE.KEY: FILE: reason") at once. WHERE is "FILE: tls_server_config"."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = t.min_version
    ctx.maximum_version = t.max_version
    ctx.set_ciphers(":".join(t.ciphers) if t.ciphers else "DEFAULT")   # no ciphers: TLS 1.3 only
    if t.curve:
        ctx.set_ecdh_curve(t.curve)
    if t.prefer_server_ciphers:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    with _pem(t.cert_file, t.cert, f"{where}.cert_file", error) as cert, \
            _pem(t.key_file, t.key, f"{where}.key_file", error) as key:
        cert_name, key_name = t.cert_file or "(inline cert)", t.key_file or "(inline key)"
        try:
            # OpenSSL's own error for a bad chain does not say which file is bad.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=cert)
        except ssl.SSLError as e:
            raise error(f"{where}.cert_file: {cert_name}: no PEM certificate in it ({_reason(e)})") from None
        try:
            ctx.load_cert_chain(cert, key, password=_no_password)
        except _EncryptedKey:
            raise error(f"{where}.key_file: {key_name}: the key is encrypted; mnmon needs an unencrypted key") from None
        except ssl.SSLError as e:
            if e.reason == "KEY_VALUES_MISMATCH":
                raise error(f"{where}.key_file: {key_name}: not the key of cert_file {cert_name}") from None
            raise error(f"{where}.key_file: {key_name}: no PEM private key in it") from None
    ctx.verify_mode = t.client_auth
    try:
        if t.client_ca_file:
            _readable(f"{where}.client_ca_file", t.client_ca_file, error)
            ctx.load_verify_locations(cafile=t.client_ca_file)
        elif t.client_ca:
            ctx.load_verify_locations(cadata=t.client_ca)
        elif t.client_auth != ssl.CERT_NONE:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)     # Go: a nil pool is the system's
    except ssl.SSLError as e:
        name = f"client_ca_file: {t.client_ca_file}" if t.client_ca_file else "client_ca"
        raise error(f"{where}.{name}: {_reason(e)}") from None
    return ctx


@contextlib.contextmanager
def pem_path(text):
    """A file name for PEM text: ssl loads a certificate chain and key only from a file.
    A memfd keeps an inline key off the disk."""
    fd = os.memfd_create("mnmon-pem", os.MFD_CLOEXEC)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


@contextlib.contextmanager
def _pem(path, text, where, error):
    if path:
        _readable(where, path, error)
        yield path
    else:
        with pem_path(text) as p:
            yield p


def _readable(where, path, error):
    # OpenSSL opens the file again by name: a file swapped for a FIFO in between could
    # still block, but a FIFO, device or directory named in the file is refused here.
    yamlfile.read_regular(path, lambda msg: error(f"{where}: {msg}"), MAX_PEM_BYTES, "a PEM file")


class _EncryptedKey(Exception):
    pass


def _no_password():
    # Without a callback OpenSSL would prompt on the terminal; a daemon has none.
    raise _EncryptedKey()


def _reason(e):
    # "KEY_VALUES_MISMATCH" reads better as "key values mismatch".
    return e.reason.replace("_", " ").lower() if e.reason else str(e)
