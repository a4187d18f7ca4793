"""The Prometheus exporter-toolkit web configuration file (--web.config.file).

Same layout as every Go exporter (exporter-toolkit docs/web-configuration.md), taken as
the toolkit takes it: unknown keys are errors, scalars are typed as Go's YAML decoder
types them (monitor.web.goyaml), and tls_server_config means what it means in Go
(monitor.web.tlsconfig, which lists what Python's ssl cannot do and so refuses):

    tls_server_config:
      cert_file: server.crt            # or cert: inline PEM; relative names are relative to this file
      key_file: server.key             # or key: inline PEM
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt           # or client_ca: inline PEM; none: the system's CAs
      client_allowed_sans: [prometheus.example.org]
      cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]   # Go names, TLS 1.2 and below
      curve_preferences: [CurveP256]   # one curve (Python's ssl cannot take a list)
      min_version: TLS12               # TLS12 TLS13
      max_version: TLS13
      prefer_server_cipher_suites: true
    http_server_config:
      http2: true                      # accepted; mnmon speaks HTTP/1.1
      headers:
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$...           # bcrypt hash, e.g. htpasswd -nBC 10 "" | tr -d ':\\n'

rate_limit is refused: mnmon has no rate limiter.
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
from monitor.web import goyaml, tlsconfig
from monitor.web.tlsconfig import TLSConfig

# The headers the toolkit lets a file set, and the values it accepts (None: any). Names
# and values are compared exactly, as the toolkit compares them.
HEADERS = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}

_BCRYPT = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")
# For a user name not in the file: a hash of the same cost as a configured user's, so a
# wrong name takes as long as a wrong password (a cost of its own told which users exist).
_DUMMY_SECRET = os.urandom(16)
_DUMMIES = {}                  # cost -> a bcrypt hash of a random password


class WebConfigError(ConfigError):
    """A web configuration that cannot be used; names the file, key and reason."""


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
        if self.tls is None:
            return None
        return tlsconfig.ssl_context(self.tls, f"{self.source}: tls_server_config", WebConfigError)

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
        if key == "rate_limit":
            raise fail(key, "rate limiting is not supported")
        if key not in ("tls_server_config", "http_server_config", "basic_auth_users"):
            raise fail(_key(key), "unknown key")
    http = data.get("http_server_config", {})
    headers, http2 = _http(http, fail)
    tls = tlsconfig.parse(data.get("tls_server_config"), fail, path, http2)
    return WebConfig(tls, _users(data.get("basic_auth_users"), fail), headers, source)


def _users(users, fail):
    users = users or {}
    if not isinstance(users, dict):
        raise fail("basic_auth_users", "expected a mapping of user: bcrypt hash")
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise fail("basic_auth_users", f"{short(user)} is not a user name (no colons)")
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            raise fail(f"basic_auth_users.{_key(user)}", "not a bcrypt hash (htpasswd -nBC 10 \"\" | tr -d ':\\n')")
        cost = int(hashed.split("$")[2])
        if not 4 <= cost <= 31:          # Go's bcrypt.Cost() refuses the hash
            raise fail(f"basic_auth_users.{_key(user)}", f"bcrypt cost {cost} is outside 4..31")
    return {str(u): str(h) for u, h in users.items()}


def _http(http, fail):
    """(headers, http2) from http_server_config. Null is Go's zero value: http2 false."""
    if http is None:
        return {}, False
    if not isinstance(http, dict):
        raise fail("http_server_config", "expected a mapping")
    for key in http:
        if key not in ("http2", "headers"):
            raise fail(f"http_server_config.{_key(key)}", "unknown key")
    http2 = goyaml.boolean(http.get("http2", True))
    if http2 is None:
        raise fail("http_server_config.http2", "is not true or false")
    headers = http.get("headers") or {}
    if not isinstance(headers, dict):
        raise fail("http_server_config.headers", "expected a mapping")
    out = {}
    for name, value in headers.items():
        where = f"http_server_config.headers.{_key(name)}"
        if name not in HEADERS:
            raise fail(where, f"cannot be configured (allowed: {', '.join(HEADERS)})")
        value = "" if value is None else value          # Go's zero value
        if not isinstance(value, str):
            raise fail(where, f"{short(value)} is not a string")
        if "\r" in value or "\n" in value:
            raise fail(where, f"{short(value)} is not a one-line string")
        if HEADERS[name] and value not in HEADERS[name]:
            raise fail(where, f"invalid value {short(value)} (one of {', '.join(HEADERS[name])})")
        if value:                    # blank means unset, as the toolkit documents
            out[name] = str(value)
    return out, http2


_key = yamlfile.key_name


def load(path):
    """WebConfig from a file; relative file names in it are relative to its directory.

    Raises WebConfigError ("FILE: KEY: reason"). Certificates are opened by
    WebConfig.ssl_context().
    """
    path = str(path)
    data = yamlfile.load(path, WebConfigError, goyaml.Loader)
    return parse(data, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def loads(text, source="web config", base_dir=None):
    """WebConfig from the text of a file (as load() reads it)."""
    return parse(yamlfile.parse_text(text, source, WebConfigError, goyaml.Loader), source, base_dir)
