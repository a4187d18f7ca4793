"""The exporter's HTTP(S) server: a registry at the telemetry path, a landing page at /.

    exporter = Exporter(registry, settings)
    exporter.start()              # returns once listening; ServeError if it cannot
    exporter.reload(new_settings) # new TLS certificate / users / path / address
    exporter.stop()

TLS and basic auth come from the web configuration file (monitor.web.webconfig).
The TLS handshake runs in the connection's own thread, so a client that stalls or
sends garbage holds only its thread, never the accept loop; every request is
served with the configuration current when its connection arrived.
"""
import errno
import gzip
import html
import ipaddress
import logging
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import gzip_accepted

from monitor import __version__
from monitor import exposition
from monitor.config import parse_listen_address
from monitor.web import webconfig

# A client gets this long to finish its TLS handshake, then this long per request.
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0
# How often the accept loop looks for stop(): the most stop() and reload() wait.
# Each look is a wakeup of an idle daemon: at 0.25 s they were 0.05 % of a core here
# and about 0.3 % under emulation, most of mnmon's idle CPU.
POLL_INTERVAL = 1.0


class ServeError(RuntimeError):
    """The server cannot listen: "listen 127.0.0.1:7668: address already in use"."""


@dataclass(frozen=True)
class _Site:
    """Everything a request is served with; reload() swaps it whole."""
    registry: object
    telemetry_path: str
    tls: Optional[ssl.SSLContext]
    allowed_sans: tuple
    auth: webconfig.BasicAuth
    headers: dict


class Exporter:
    """Serves `registry` (a prometheus_client CollectorRegistry) as `settings` say."""

    def __init__(self, registry, settings, log=None):
        self.registry = registry
        self.settings = settings
        self.log = log or logging.getLogger("mnmon.web")
        self._site = None
        self._server = None
        self._thread = None

    @property
    def address(self):
        """(host, port) the server is bound to -- the real port when asked for port 0."""
        return self._server.server_address[:2]

    @property
    def url(self):
        """Where the metrics are, e.g. "https://127.0.0.1:7668/metrics"."""
        host, port = self.address
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self._site.tls else "http"
        return f"{scheme}://{host}:{port}{self._site.telemetry_path}"

    def start(self):
        """Read the web configuration and listen. Raises WebConfigError or ServeError."""
        self._site = self._build(self.settings)
        self._server, self._thread = self._listen(self.settings.listen_address)

    def stop(self):
        """Stop accepting, close the listening socket; in-flight requests finish on their own."""
        if self._server is not None:
            _shutdown(self._server, self._thread)
            self._server = self._thread = None

    def reload(self, settings):
        """Apply new settings: the web configuration file is read again, so a new
        certificate, CA or user list takes effect for the next connection. A new
        listen address is bound before the old one is closed. On any error the
        old settings stay in force and the error is raised."""
        site = self._build(settings)
        if settings.listen_address != self.settings.listen_address:
            server, thread = self._listen(settings.listen_address)
            _shutdown(self._server, self._thread)
            self._server, self._thread = server, thread
        self._site, self.settings = site, settings

    def _build(self, settings):
        wc = webconfig.load(settings.web_config_file) if settings.web_config_file else webconfig.WebConfig()
        return _Site(self.registry, settings.telemetry_path, wc.ssl_context(),
                     wc.tls.client_allowed_sans if wc.tls else (), wc.basic_auth(), wc.headers)

    def _listen(self, listen):
        try:
            host, port = parse_listen_address(listen)
        except ValueError as e:
            raise ServeError(f"listen {listen}: {e}") from None
        try:
            server = _bind(host, port, self)
        except socket.gaierror as e:
            raise ServeError(f"listen {listen}: {e.strerror.lower()}") from None
        except OSError as e:
            raise ServeError(f"listen {listen}: {(e.strerror or str(e)).lower()}") from None
        thread = threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL,),
                                  name=f"mnmon-http {listen}", daemon=True)
        thread.start()
        self.log.info("listening on %s", listen)
        return server, thread


def _bind(host, port, exporter):
    if host == "":
        # Every address: one dual-stack IPv6 socket, or IPv4 where IPv6 is off.
        try:
            return _Server(socket.AF_INET6, ("::", port), exporter, dual_stack=True)
        except OSError as e:
            if e.errno != errno.EAFNOSUPPORT:              # booted with ipv6.disable=1
                raise
        return _Server(socket.AF_INET, ("0.0.0.0", port), exporter)
    family, _, _, _, addr = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                               0, socket.AI_PASSIVE)[0]
    return _Server(family, addr, exporter)


def _shutdown(server, thread):
    server.shutdown()
    server.server_close()
    thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False        # stop() must not wait for a slow client
    request_queue_size = 128      # socketserver's 5 drops connections under a scrape burst

    def __init__(self, family, addr, exporter, dual_stack=False):
        self.address_family = family
        self.exporter = exporter
        self.dual_stack = dual_stack
        super().__init__(addr, _Handler, bind_and_activate=False)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if self.dual_stack else 1)
        # HTTPServer.server_bind would look the host up in DNS (getfqdn): skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):
        site = self.exporter._site
        if site.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = site.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.exporter.log.debug("%s: TLS handshake failed: %s", client_address[0], e)
            return None
        try:
            if site.allowed_sans and not san_allowed(conn.getpeercert(), site.allowed_sans):
                self.exporter.log.debug("%s: client certificate SAN not allowed", client_address[0])
                return None
            return self.RequestHandlerClass(conn, client_address, self)
        finally:
            conn.close()

    def handle_error(self, request, client_address):
        # socketserver would print a traceback to stderr; a bad client is not news.
        self.exporter.log.debug("%s: request failed", client_address[0], exc_info=True)


def san_allowed(cert, allowed):
    """Whether a peer certificate (ssl.getpeercert() form) has a SAN in `allowed`;
    IP addresses compare as addresses, so "::1" matches "0:0:0:0:0:0:0:1"."""
    want = {_norm(a) for a in allowed}
    return any(_norm(value) in want for _, value in (cert or {}).get("subjectAltName", ()))


def _norm(name):
    try:
        return str(ipaddress.ip_address(name.strip()))
    except ValueError:
        return name


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"         # keep-alive: Prometheus reuses its connection
    # The head and the body go out in two writes; with Nagle the body waited for the
    # client's delayed ACK of the head: 40 ms added to every scrape on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = f"mnmon/{__version__}"
    sys_version = ""
    timeout = REQUEST_TIMEOUT
    # Errors before the version is parsed still get a status line (not HTTP/0.9's bare body).
    default_request_version = "HTTP/1.0"
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def send_error(self, code, message=None, explain=None):
        # The stock message quotes the bad request line back; the status phrase is enough.
        super().send_error(code)

    def version_string(self):
        return self.server_version

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def _serve(self, head):
        site = self.server.exporter._site
        if not site.auth.check(self.headers.get("Authorization")):
            self._reply(401, b"Unauthorized\n", site, head, [("WWW-Authenticate", 'Basic realm="mnmon"')])
            return
        url = urlsplit(self.path)
        if url.path == site.telemetry_path:
            self._metrics(site, parse_qs(url.query), head)
        elif url.path == "/":
            self._reply(200, _landing(site.telemetry_path), site, head,
                        [("Content-Type", "text/html; charset=utf-8")])
        else:
            self._reply(404, b"404 page not found\n", site, head)

    def _metrics(self, site, params, head):
        try:
            output, content_type = exposition.encode(site.registry, self.headers.get("Accept"),
                                                     params.get("name[]", ()))
        except Exception as e:     # noqa: BLE001 -- a failing collector must not take the server down
            self.server.exporter.log.error("collecting metrics: %s", e, exc_info=True)
            self._reply(500, f"error collecting metrics: {e}\n".encode(), site, head)
            return
        headers = [("Content-Type", content_type)]
        if gzip_accepted(self.headers.get("Accept-Encoding")):
            # Level 1: level 9 saves another 1 % of the body (877 KiB with 100 notifiers) for 10x the CPU.
            output = gzip.compress(output, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        self._reply(200, output, site, head, headers)

    def _reply(self, code, body, site, head, headers=()):
        self.send_response(code)
        names = {name.lower() for name, _ in headers}
        if "content-type" not in names:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        for name, value in list(headers) + list(site.headers.items()):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format, *args):   # noqa: A002 -- BaseHTTPRequestHandler's name
        self.server.exporter.log.debug("%s: " + format, self.client_address[0], *args)


def _landing(telemetry_path):
    # A relative link still works behind a reverse proxy that adds a path prefix.
    href = html.escape(telemetry_path.lstrip("/") or ".", quote=True)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mnmon</title></head>\n"
        "<body><h1>mnmon</h1>\n"
        f"<p>eBPF monitor of mmu notifiers and the OOM reaper, version {html.escape(__version__)}.</p>\n"
        f"<p><a href=\"{href}\">Metrics</a></p>\n</body></html>\n"
    ).encode()
