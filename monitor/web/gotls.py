"""Go's crypto/tls names, as exporter-toolkit's web configuration takes them, in the terms
of Python's ssl and OpenSSL.

The names are those exporter-toolkit accepts (web/tls_config.go): cipher suites from Go's
tls.CipherSuites(), which leaves out the ones Go calls insecure (static RSA key exchange,
3DES, RC4, CBC-SHA256); four curves; four protocol versions; five client auth policies.
"""
import ssl

# TLS 1.0-1.2 suites: Go name -> OpenSSL name (`openssl ciphers -stdname` pairs them).
TLS12_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# Accepted in cipher_suites and without effect, as in Go: TLS 1.3 suites are not
# configurable there, and these three are OpenSSL's TLS 1.3 defaults too.
TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")

# Without cipher_suites: forward-secret AEAD suites only. Go's own default list also
# still has the four ECDHE AES-CBC-SHA1 suites; they are left out here (MAC-then-encrypt,
# SHA-1), and a file that lists them gets them. Prometheus, a Go client, offers GCM.
DEFAULT_TLS12_CIPHERS = tuple(TLS12_CIPHERS[n] for n in TLS12_CIPHERS if "CBC" not in n)

# Go's net/http refuses to start HTTP/2 over TLS 1.2 without one of these (RFC 7540 9.2.2):
# with http2 on and a cipher_suites list, exporter-toolkit fails to serve, so mnmon refuses.
HTTP2_REQUIRED = ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")

# Curve -> the OpenSSL group SSLContext.set_ecdh_curve() takes; None: it cannot take it
# (X25519 is not a curve EC_KEY knows, and Python 3.11's set_ecdh_curve goes through EC_KEY).
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": None}

VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's tls.ClientAuthType names -> Python's verify mode; None: Python's ssl cannot do it
# (it verifies every client certificate it asks for). "RequireClientCert" is the toolkit's
# old name for RequireAnyClientCert.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": None,
    "RequireAnyClientCert": None,
    "RequireClientCert": None,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
