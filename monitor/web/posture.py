"""What a web configuration admits, and whether a reload would admit more.

A reload never weakens TLS or authentication (README, security): every downgrade takes a
restart, so a file swapped in by someone who can write it, or a careless edit, cannot
quietly open the exporter. Compared, each by its own order:

    TLS              on > off
    client_auth      RequireAndVerifyClientCert > VerifyClientCertIfGiven > NoClientCert
    client CAs       the certificates trusted: a new one admits clients it did not, and
                     so do the system's CAs (no client CA given) where a file was given
    client SANs      a list admits fewer than none; names added admit more
    min_version      a lower one admits older protocols
    cipher suites    one OpenSSL would now accept and did not before
    key exchange     curve_preferences: OpenSSL's default groups admit more than one curve
    server order     prefer_server_cipher_suites true > false
    basic auth       on > off (users may be added, removed or given new passwords)
"""
import ssl
from dataclasses import dataclass
from typing import Optional

_AUTH_NAMES = {ssl.CERT_NONE: "NoClientCert", ssl.CERT_OPTIONAL: "VerifyClientCertIfGiven",
               ssl.CERT_REQUIRED: "RequireAndVerifyClientCert"}
_VERSION_NAMES = {ssl.TLSVersion.TLSv1: "TLS10", ssl.TLSVersion.TLSv1_1: "TLS11",
                  ssl.TLSVersion.TLSv1_2: "TLS12", ssl.TLSVersion.TLSv1_3: "TLS13"}


@dataclass(frozen=True)
class Posture:
    tls: bool = False
    client_auth: int = ssl.CERT_NONE        # CERT_NONE < CERT_OPTIONAL < CERT_REQUIRED
    client_cas: frozenset = frozenset()     # DER of each trusted client CA
    allowed_sans: frozenset = frozenset()   # empty: any verified client
    min_version: int = ssl.TLSVersion.TLSv1_2
    ciphers: frozenset = frozenset()        # OpenSSL names the context accepts
    prefer_server_ciphers: bool = True
    basic_auth: bool = False
    groups: Optional[frozenset] = None      # ECDH groups allowed; None: OpenSSL's defaults
    system_cas: bool = False                # clients verified against the system's CAs


def of(web_config, context):
    """The Posture of a parsed WebConfig and the SSLContext it made (None without TLS)."""
    t = web_config.tls
    if t is None or context is None:
        return Posture(basic_auth=bool(web_config.users))
    given = t.client_auth != ssl.CERT_NONE and not t.system_cas
    cas = frozenset(context.get_ca_certs(binary_form=True)) if given else frozenset()
    # SANs are checked only on certificates asked for (Go: with NoClientCert, never).
    sans = frozenset(t.client_allowed_sans) if t.client_auth != ssl.CERT_NONE else frozenset()
    return Posture(True, t.client_auth, cas, sans, t.min_version,
                   frozenset(c["name"] for c in context.get_ciphers()), t.prefer_server_ciphers,
                   bool(web_config.users), frozenset({t.curve}) if t.curve else None, t.system_cas)


def weakenings(old, new):
    """What `new` would admit that `old` does not, as phrases ("turn off TLS", ...);
    [] when new is at least as strict in every respect."""
    out = []
    if old.tls and not new.tls:
        out.append("turn off TLS")
    elif old.tls:
        if new.client_auth < old.client_auth:
            out.append(f"lower client_auth_type from {_AUTH_NAMES[old.client_auth]} "
                       f"to {_AUTH_NAMES[new.client_auth]}")
        elif old.client_auth != ssl.CERT_NONE and not new.client_cas <= old.client_cas:
            out.append("trust a client CA not trusted before")
        elif old.client_auth != ssl.CERT_NONE and new.system_cas and not old.system_cas:
            out.append("trust the system's CAs for client certificates")
        if old.allowed_sans and not (new.allowed_sans and new.allowed_sans <= old.allowed_sans):
            out.append("admit client certificate SANs not allowed before")
        if new.min_version < old.min_version:
            out.append(f"lower min_version from {_version(old.min_version)} to {_version(new.min_version)}")
        if not new.ciphers <= old.ciphers:
            out.append("accept cipher suites not accepted before")
        if old.groups is not None and (new.groups is None or not new.groups <= old.groups):
            out.append("accept key exchange groups not accepted before")
        if old.prefer_server_ciphers and not new.prefer_server_ciphers:
            out.append("stop preferring the server's cipher suites")
    if old.basic_auth and not new.basic_auth:
        out.append("turn off basic auth")
    return out


def _version(v):
    return _VERSION_NAMES.get(v, str(v))
