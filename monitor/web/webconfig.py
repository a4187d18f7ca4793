"""The Prometheus exporter-toolkit web configuration file (--web.config.file).

Same layout as every Go exporter (exporter-toolkit docs/web-configuration.md):

    tls_server_config:
      cert_file: server.crt            # relative names are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      client_allowed_sans: [prometheus.example.org]
      min_version: TLS12               # TLS10 TLS11 TLS12 TLS13
      max_version: TLS13
      prefer_server_cipher_suites: true
    http_server_config:
      http2: true                      # accepted; mnmon speaks HTTP/1.1
      headers:
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$...           # bcrypt hash, e.g. htpasswd -nBC 10 "" | tr -d ':\\n'

Parts of the Go toolkit Python's ssl module cannot do the same way are refused
with the reason, never silently weakened: RequestClientCert and
RequireAnyClientCert (Python verifies every client certificate it asks for),
cipher_suites and curve_preferences (Go names), inline cert/key/client_ca, and
rate_limit.
"""
import base64
import binascii
import hashlib
import os
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import bcrypt

from monitor.settings import yamlfile
from monitor.settings.yamlfile import ConfigError, short

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's tls.ClientAuthType names -> what Python's ssl can do for them.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": None,
    "RequireAnyClientCert": None,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}

# The headers the toolkit lets a file set, and the values it accepts (None: any).
HEADERS = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
_CANONICAL = {h.lower(): h for h in HEADERS}

_UNSUPPORTED = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_ca": "an inline CA is not supported; use client_ca_file",
    "cipher_suites": "Go cipher-suite names are not supported; OpenSSL's defaults apply",
    "curve_preferences": "Go curve names are not supported; OpenSSL's defaults apply",
    "rate_limit": "rate limiting is not supported",
}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "client_allowed_sans",
             "min_version", "max_version", "prefer_server_cipher_suites"}

_BCRYPT = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")
# For a user name not in the file: a hash of the same cost as a configured user's, so a
# wrong name takes as long as a wrong password (a cost of its own told which users exist).
_DUMMY_SECRET = os.urandom(16)
_DUMMIES = {}                  # cost -> a bcrypt hash of a random password


class WebConfigError(ConfigError):
    """A web configuration that cannot be used; names the file, key and reason."""


@dataclass(frozen=True)
class TLSConfig:
    cert_file: str
    key_file: str
    client_auth: int = ssl.CERT_NONE
    client_ca_file: Optional[str] = None
    client_allowed_sans: tuple = ()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    prefer_server_ciphers: bool = True


class Busy(Exception):
    """Too many logins are waiting for bcrypt: answer 429 now rather than hold a
    connection slot in the queue."""


class _HashGate:
    """One bcrypt at a time, first come first served, at most `waiting` queued.

    A request waiting here holds a connection: an unbounded queue let a flood of wrong
    passwords fill every connection slot, and valid scrapes were turned away. When the
    queue is full, a newcomer from an address with fewer requests queued than the
    busiest address takes the place of that address's newest request; otherwise the
    newcomer is refused (Busy). A flood from one address cannot keep a login from
    another address waiting longer than `waiting` hashes."""

    def __init__(self, waiting):
        self.waiting = waiting
        self._cond = threading.Condition()
        self._busy = False
        self._queue = []           # [[address, refused]] in arrival order

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def enter(self, address):
        """Wait for the hasher; Busy when refused (at once, or when displaced)."""
        with self._cond:
            if not self._busy and not self._queue:
                self._busy = True
                return self
            if len(self._queue) >= self.waiting and not self._displace(address):
                raise Busy()
            me = [address, False]
            self._queue.append(me)
            while not me[1] and (self._busy or self._queue[0] is not me):
                self._cond.wait()
            if me[1]:                   # displaced (and taken off the queue) by _displace
                raise Busy()
            self._queue.remove(me)
            self._busy = True
            return self

    def _displace(self, address):
        counts = {}
        for a, _ in self._queue:
            counts[a] = counts.get(a, 0) + 1
        top = max(counts, key=counts.get)
        if counts.get(address, 0) + 1 >= counts[top]:
            return False
        victim = next(w for w in reversed(self._queue) if w[0] == top)
        victim[1] = True
        self._queue.remove(victim)
        self._cond.notify_all()
        return True


class BasicAuth:
    """Checks an Authorization header against {user: bcrypt hash}.

    bcrypt at cost 10 takes ~70 ms of CPU, so answers are cached, as the toolkit does:
    good (user, password) pairs, so a scrape every 15 s costs one hash per password
    change, and recent wrong ones, so a client retrying the same wrong password costs
    nothing. A cached answer needs no lock. One hash runs at a time (_HashGate): a flood
    of distinct wrong passwords gets one core at most, and waits in a short queue, not in
    the connection slots valid scrapes need. A cache key covers the user, the password
    and the hash, so a reload keeps the answers of users whose hash did not change.
    """

    CACHE = 1000
    WAITING = 4

    def __init__(self, users, previous=None):
        self.users = {u: h.encode() for u, h in users.items()}
        self._costs = sorted({int(h.split(b"$")[2]) for h in self.users.values()})
        if previous is not None:
            self._ok, self._bad, self._gate = set(previous._ok), set(previous._bad), previous._gate
        else:
            self._ok, self._bad, self._gate = set(), set(), _HashGate(self.WAITING)

    @property
    def required(self):
        return bool(self.users)

    def check(self, header, address=""):
        """True if no users are configured, or `header` ("Basic b64(user:pass)") matches one.
        Raises Busy when too many uncached logins wait for bcrypt already."""
        if not self.users:
            return True
        creds = parse_basic(header)
        if creds is None:
            return False
        user, password = creds
        hashed = self.users.get(user)
        key = hashlib.sha256(b"\0".join([user.encode(), password, hashed or b""])).digest()
        if key in self._ok:
            return True
        if key in self._bad:
            return False
        with self._gate.enter(address):
            try:
                ok = bcrypt.checkpw(password, hashed or self._dummy(user)) and hashed is not None
            except ValueError:           # bcrypt >= 5 refuses passwords over 72 bytes
                ok = False
        seen = self._ok if ok else self._bad
        if len(seen) >= self.CACHE:
            seen.clear()
        seen.add(key)
        return ok

    def _dummy(self, user):
        # The same name always gets the same cost, one of the configured ones.
        pick = hashlib.sha256(_DUMMY_SECRET + user.encode()).digest()[0] % len(self._costs)
        cost = self._costs[pick]
        if cost not in _DUMMIES:
            _DUMMIES[cost] = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(cost))
        return _DUMMIES[cost]


def parse_basic(header):
    """(user, password bytes) from an Authorization header, or None if it is not
    well-formed Basic credentials (wrong scheme, bad base64, not UTF-8, no colon)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        # http.server hands header bytes over as latin-1 text; undo that first.
        raw = base64.b64decode(value.strip().encode("latin-1"), validate=True)
        user, sep, password = raw.partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (UnicodeError, binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class WebConfig:
    """A parsed web configuration; WebConfig() is plain HTTP with no auth."""
    tls: Optional[TLSConfig] = None
    users: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    source: str = "web config"

    def ssl_context(self):
        """A server SSLContext (None without TLS). Opens and loads every file, so a
        missing or bad certificate is a WebConfigError naming it, now."""
        t = self.tls
        if t is None:
            return None
        where = f"{self.source}: tls_server_config"
        for key, path in (("cert_file", t.cert_file), ("key_file", t.key_file),
                          ("client_ca_file", t.client_ca_file)):
            if path:
                _readable(f"{where}.{key}", path)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.minimum_version = t.min_version
            ctx.maximum_version = t.max_version
        except (ValueError, ssl.SSLError) as e:
            raise WebConfigError(f"{where}: min_version/max_version: {e}") from None
        if t.prefer_server_ciphers:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            # OpenSSL's own error for a bad chain does not say which file is bad.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=t.cert_file)
        except ssl.SSLError as e:
            raise WebConfigError(f"{where}.cert_file: {t.cert_file}: no PEM certificate in it "
                                 f"({_ssl_reason(e)})") from None
        try:
            ctx.load_cert_chain(t.cert_file, t.key_file, password=_no_password)
        except _EncryptedKey:
            raise WebConfigError(f"{where}.key_file: {t.key_file}: the key is encrypted; "
                                 "mnmon needs an unencrypted key") from None
        except ssl.SSLError as e:
            if e.reason == "KEY_VALUES_MISMATCH":
                raise WebConfigError(f"{where}.key_file: {t.key_file}: not the key of "
                                     f"cert_file {t.cert_file}") from None
            raise WebConfigError(f"{where}.key_file: {t.key_file}: no PEM private key in it") from None
        ctx.verify_mode = t.client_auth
        if t.client_ca_file:
            try:
                ctx.load_verify_locations(cafile=t.client_ca_file)
            except ssl.SSLError as e:
                raise WebConfigError(f"{where}.client_ca_file: {t.client_ca_file}: {_ssl_reason(e)}") from None
        return ctx

    def basic_auth(self, previous=None):
        return BasicAuth(self.users, previous)


def expired(cert_file, now=None):
    """The notAfter date ("Jan  1 00:00:00 2025 GMT") of the first certificate in cert_file
    if it has passed, else None. OpenSSL serves an expired certificate without a word;
    the clients that verify it refuse every scrape."""
    try:
        # The standard library's own PEM decoder: no public ssl API reads a file's dates.
        not_after = ssl._ssl._test_decode_cert(cert_file)["notAfter"]    # noqa: SLF001
        if ssl.cert_time_to_seconds(not_after) < (time.time() if now is None else now):
            return not_after
    except (ssl.SSLError, OSError, KeyError, ValueError, AttributeError):
        pass
    return None


class _EncryptedKey(Exception):
    pass


def _no_password():
    # Without a callback OpenSSL would prompt on the terminal; a daemon has none.
    raise _EncryptedKey()


def _ssl_reason(e):
    # "KEY_VALUES_MISMATCH" reads better as "key values mismatch".
    return e.reason.replace("_", " ").lower() if e.reason else str(e)


# A PEM chain with its key is a few KiB; a CA bundle (Debian's has 140 CAs) about 200.
MAX_PEM_BYTES = 1024 * 1024


def _readable(where, path):
    # OpenSSL opens the file again by name: a file swapped for a FIFO in between could
    # still block, but a FIFO, device or directory named in the file is refused here.
    yamlfile.read_regular(path, lambda msg: WebConfigError(f"{where}: {msg}"), MAX_PEM_BYTES,
                          "a PEM file")


def parse(data, source="web config", base_dir=None):
    """Validate a parsed YAML mapping into a WebConfig (files are not opened yet)."""
    def fail(key, reason):
        return WebConfigError(f"{source}: {key}: {reason}")

    def path(key, value):
        if not isinstance(value, str) or not value:
            raise fail(key, f"{short(value)} is not a file name")
        return os.path.join(base_dir, value) if base_dir and not os.path.isabs(value) else value

    if data is None:
        return WebConfig(source=source)
    if not isinstance(data, dict):
        raise fail("top level", f"expected a mapping, got {type(data).__name__}")
    for key in data:
        if key in _UNSUPPORTED:
            raise fail(key, _UNSUPPORTED[key])
        if key not in ("tls_server_config", "http_server_config", "basic_auth_users"):
            raise fail(_key(key), "unknown key")

    tls = None
    t = data.get("tls_server_config") or {}
    if not isinstance(t, dict):
        raise fail("tls_server_config", "expected a mapping")
    for key in t:
        if key in _UNSUPPORTED:
            raise fail(f"tls_server_config.{key}", _UNSUPPORTED[key])
        if key not in _TLS_KEYS:
            raise fail(f"tls_server_config.{_key(key)}", "unknown key")
    if t:
        k = "tls_server_config"
        if not t.get("cert_file"):
            raise fail(f"{k}.cert_file", "missing (TLS needs cert_file and key_file)")
        if not t.get("key_file"):
            raise fail(f"{k}.key_file", "missing (TLS needs cert_file and key_file)")
        auth_name = t.get("client_auth_type", "NoClientCert")
        if not isinstance(auth_name, str) or auth_name not in CLIENT_AUTH:
            raise fail(f"{k}.client_auth_type", f"{short(auth_name)} is not one of {', '.join(CLIENT_AUTH)}")
        auth = CLIENT_AUTH[auth_name]
        if auth is None:
            raise fail(f"{k}.client_auth_type", f"{auth_name} is not supported: Python's ssl verifies "
                       "every client certificate it asks for; use VerifyClientCertIfGiven or "
                       "RequireAndVerifyClientCert with client_ca_file")
        ca = path(f"{k}.client_ca_file", t["client_ca_file"]) if t.get("client_ca_file") else None
        if ca and auth == ssl.CERT_NONE:
            raise fail(f"{k}.client_ca_file", "set, but client_auth_type is NoClientCert")
        if auth != ssl.CERT_NONE and not ca:
            raise fail(f"{k}.client_ca_file", f"missing: {auth_name} needs the CA to verify clients against")
        sans = t.get("client_allowed_sans") or []
        if not isinstance(sans, list) or not all(isinstance(s, str) and s for s in sans):
            raise fail(f"{k}.client_allowed_sans", "expected a list of names")
        if sans and auth != ssl.CERT_REQUIRED:
            raise fail(f"{k}.client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert")
        versions = {}
        for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
            name = t.get(key, default)
            if not isinstance(name, str) or name not in TLS_VERSIONS:
                raise fail(f"{k}.{key}", f"{short(name)} is not one of {', '.join(TLS_VERSIONS)}")
            versions[key] = TLS_VERSIONS[name]
        if versions["min_version"] > versions["max_version"]:
            raise fail(f"{k}.min_version", "is above max_version")
        prefer = t.get("prefer_server_cipher_suites", True)
        if not isinstance(prefer, bool):
            raise fail(f"{k}.prefer_server_cipher_suites", f"{short(prefer)} is not true or false")
        tls = TLSConfig(path(f"{k}.cert_file", t["cert_file"]), path(f"{k}.key_file", t["key_file"]),
                        auth, ca, tuple(sans), versions["min_version"], versions["max_version"], prefer)

    return WebConfig(tls, _users(data.get("basic_auth_users"), fail),
                     _headers(data.get("http_server_config"), fail), source)


def _users(users, fail):
    users = users or {}
    if not isinstance(users, dict):
        raise fail("basic_auth_users", "expected a mapping of user: bcrypt hash")
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise fail("basic_auth_users", f"{short(user)} is not a user name (no colons)")
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            raise fail(f"basic_auth_users.{_key(user)}", "not a bcrypt hash (htpasswd -nBC 10 \"\" | tr -d ':\\n')")
    return dict(users)


def _headers(http, fail):
    http = http or {}
    if not isinstance(http, dict):
        raise fail("http_server_config", "expected a mapping")
    for key in http:
        if key not in ("http2", "headers"):
            raise fail(f"http_server_config.{_key(key)}", "unknown key")
    if not isinstance(http.get("http2", True), bool):
        raise fail("http_server_config.http2", "is not true or false")
    headers = http.get("headers") or {}
    if not isinstance(headers, dict):
        raise fail("http_server_config.headers", "expected a mapping")
    out = {}
    for name, value in headers.items():
        where = f"http_server_config.headers.{_key(name)}"
        canon = _CANONICAL.get(str(name).lower())
        if canon is None:
            raise fail(where, f"cannot be set (allowed: {', '.join(HEADERS)})")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise fail(where, f"{short(value)} is not a one-line string")
        if value and HEADERS[canon] and value.lower() not in HEADERS[canon]:
            raise fail(where, f"{short(value)} is not one of {', '.join(HEADERS[canon])}")
        if value:                    # blank means unset, as in the toolkit
            out[canon] = value
    return out


_key = yamlfile.key_name


def load(path):
    """WebConfig from a file; relative file names in it are relative to its directory.

    Raises WebConfigError ("FILE: KEY: reason"). Certificates are opened by
    WebConfig.ssl_context().
    """
    path = str(path)
    data = yamlfile.load(path, WebConfigError)
    return parse(data, source=path, base_dir=os.path.dirname(os.path.abspath(path)))
