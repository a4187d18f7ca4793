"""The rule a reload keeps, as properties (hypothesis): a web configuration is taken on
SIGHUP only if it admits no client the current one refuses, and every refusal names a
client it would have let in. "Admits" is modelled here independently of
monitor.web.posture, over every kind of client: plain or TLS, which protocol version and
cipher, a certificate from which CA with which SAN or none, a right password or none."""
import itertools
import ssl

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.web.posture import Posture, weakenings

CAS = (b"ca-a", b"ca-b", b"ca-c")
SANS = ("prometheus.test", "grafana.test")
CIPHERS = ("AES128", "AES256", "CHACHA20")
VERSIONS = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


@st.composite
def postures(draw):
    """Postures the web config parser can produce: client CAs exactly when clients are
    verified, SANs only with RequireAndVerifyClientCert."""
    basic_auth = draw(st.booleans())
    if not draw(st.booleans()):
        return Posture(basic_auth=basic_auth)
    auth = draw(st.sampled_from((ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED)))
    cas = frozenset(draw(st.sets(st.sampled_from(CAS), min_size=1))) if auth != ssl.CERT_NONE else frozenset()
    sans = frozenset(draw(st.sets(st.sampled_from(SANS)))) if auth == ssl.CERT_REQUIRED else frozenset()
    return Posture(True, auth, cas, sans, draw(st.sampled_from(VERSIONS)),
                   frozenset(draw(st.sets(st.sampled_from(CIPHERS), min_size=1))), draw(st.booleans()), basic_auth)


# A client: (TLS version, cipher, (CA, SAN) of its certificate or None, has the password).
# As in the world outside, some clients speak plain HTTP (version None), and some offer a
# cipher or a certificate's CA or SAN that no configuration names.
CLIENTS = list(itertools.product((None, *VERSIONS), CIPHERS + ("NULL",),
                                 [None, *itertools.product(CAS + (b"ca-other",), SANS + ("x",))], (False, True)))


def admits(p, client):
    version, cipher, cert, password = client
    if p.basic_auth and not password:
        return False
    if not p.tls:
        return True                  # plain HTTP: anyone who can reach the port
    if version is None or version < p.min_version or cipher not in p.ciphers:
        return False
    if p.client_auth == ssl.CERT_NONE:
        return True                  # a certificate is not asked for, so not checked
    if cert is None:
        return p.client_auth == ssl.CERT_OPTIONAL
    ca, san = cert
    return ca in p.client_cas and (not p.allowed_sans or san in p.allowed_sans)


@settings(max_examples=250, deadline=None)
@given(postures(), postures())
def test_a_reload_is_taken_only_if_it_admits_no_one_new(old, new):
    newly_admitted = [c for c in CLIENTS if admits(new, c) and not admits(old, c)]
    refused = weakenings(old, new)
    if not refused:
        assert not newly_admitted, (old, new, newly_admitted[:3])
    elif refused != ["stop preferring the server's cipher suites"]:   # an order, not an admission
        assert newly_admitted, (old, new, refused)


@settings(max_examples=200, deadline=None)
@given(postures())
def test_the_same_configuration_is_always_taken(p):
    assert weakenings(p, p) == []


@settings(max_examples=200, deadline=None)
@given(postures(), postures(), postures())
def test_two_reloads_taken_in_turn_are_one_reload_taken(a, b, c):
    # Otherwise a downgrade could be walked down in steps, each one allowed.
    if not weakenings(a, b) and not weakenings(b, c):
        assert not weakenings(a, c), (a, b, c)
