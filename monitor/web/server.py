"""The exporter's HTTP(S) server: a registry at the telemetry path, a landing page at /,
/-/healthy and /-/ready as Prometheus has them.

    exporter = Exporter(None, settings)
    exporter.start()              # returns once listening; ServeError if it cannot
    exporter.serve(registry)      # probes attached: /-/ready turns 200, /metrics serves
    exporter.reload(new_settings) # new TLS certificate / users / path / address
    exporter.stop()

TLS and basic auth come from the web configuration file (monitor.web.webconfig); as
exporter-toolkit does, basic auth guards every path, /-/healthy and /-/ready included.
The TLS handshake runs in the connection's own thread, so a client that stalls or
sends garbage holds only its thread, never the accept loop; every request is
served with the configuration current when its connection arrived.

Under abuse: connections are capped (the one waiting longest for its request head
makes room), a request head has a deadline, accept() at the descriptor limit backs
off, and repeated errors are logged once per interval. stop() drains: idle
connections close, requests in flight finish, then the caller may detach.
"""
import dataclasses
import errno
import gzip
import html
import ipaddress
import logging
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import gzip_accepted

from monitor import __version__
from monitor.export import exposition
from monitor.printable import printable
from monitor.web import posture, webconfig

# A client gets this long to finish its TLS handshake, then this long per read or write.
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0
# ...and this long, in all, from connecting or from its last reply to the end of its next
# request head: a client dribbling a byte every 29 s holds a thread no longer than this.
HEAD_TIMEOUT = 30.0
# Open connections at most. Past it the one that has waited longest for its request head
# is closed to make room (a scrape sends its head at once, so a slow client goes first);
# when every connection is inside a request, the new one is closed.
MAX_CONNECTIONS = 512
# stop() lets requests in flight finish for this long before the probes are detached.
DRAIN_TIMEOUT = 10.0
# Errors a flood can repeat (EMFILE, connections refused) are logged once per this long.
ERROR_LOG_INTERVAL = 10.0
# How often the accept loop looks for stop(): the most stop() and reload() wait.
# Each look is a wakeup of an idle daemon: at 0.25 s they were 0.05 % of a core here
# and about 0.3 % under emulation, most of mnmon's idle CPU.
POLL_INTERVAL = 1.0


class ServeError(RuntimeError):
    """The server cannot listen: "listen 127.0.0.1:7668: address already in use"."""


@dataclass(frozen=True)
class _Site:
    """Everything a request is served with; reload() swaps it whole."""
    registry: object              # None until serve(): /-/ready and /metrics answer 503
    telemetry_path: str
    tls: Optional[ssl.SSLContext]
    allowed_sans: tuple
    auth: webconfig.BasicAuth
    headers: dict
    posture: posture.Posture


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

    @staticmethod
    def check(settings):
        """Read the web configuration file and load its certificates, as start() will:
        a WebConfigError now, before anything slow (the BPF compile) runs."""
        _web_config(settings).ssl_context()

    def start(self):
        """Read the web configuration and listen. Raises WebConfigError or ServeError."""
        self._site = self._build(self.settings)
        self._server, self._thread = self._listen(self.settings)

    def stop(self, drain=None):
        """Stop accepting and close the listening socket; close idle connections, let
        requests in flight finish (DRAIN_TIMEOUT at most), then return: whatever the
        requests read stays open until then."""
        if self._server is not None:
            _shutdown(self._server, self._thread, DRAIN_TIMEOUT if drain is None else drain)
            self._server = self._thread = None

    def reload(self, settings):
        """Apply new settings: the web configuration file is read again, so a new
        certificate, CA or user list takes effect for the next connection. A new
        listen address is bound before the old one is closed. On any error the
        old settings stay in force and the error is raised.

        A reload never lowers security: a web configuration that would admit anything
        the current one refuses (TLS or basic auth off, a lower client_auth_type or
        min_version, a new client CA, more SANs: monitor.web.posture) is refused; that
        takes a restart."""
        site = self._build(settings, self._site.auth)
        lost = posture.weakenings(self._site.posture, site.posture)
        if lost:
            raise webconfig.WebConfigError(
                f"{settings.web_config_file or 'no web config file'}: would {', '.join(lost)}; "
                "kept as it is (restart to apply a weaker configuration)")
        if settings.listen_address != self.settings.listen_address:
            server, thread = self._listen(settings)
            _shutdown(self._server, self._thread, DRAIN_TIMEOUT)
            self._server, self._thread = server, thread
        self._site, self.settings = site, settings

    def serve(self, registry):
        """Serve `registry` from now on: the probes are attached, /-/ready answers 200."""
        self.registry = registry
        self._site = dataclasses.replace(self._site, registry=registry)

    def _build(self, settings, auth=None):
        wc = _web_config(settings)
        ctx = wc.ssl_context()
        when = wc.tls and webconfig.expired(wc.tls.cert_file)
        if when:
            self.log.warning("%s: tls_server_config.cert_file %s expired on %s: clients that verify "
                             "it refuse every scrape", wc.source, wc.tls.cert_file, when)
        # The current BasicAuth's answers carry over for users whose hash is unchanged:
        # a reload during a flood of wrong passwords must not send every scrape to bcrypt.
        return _Site(self.registry, settings.telemetry_path, ctx,
                     wc.tls.client_allowed_sans if wc.tls else (), wc.basic_auth(previous=auth),
                     wc.headers, posture.of(wc, ctx))

    def _listen(self, settings):
        listen = settings.listen_address
        try:
            host, port = settings.listen
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
        bound_host, bound_port = server.server_address[:2]
        bound = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
        self.log.info("listening on %s", listen if bound_port == port else f"{bound} ({listen})")
        return server, thread


def _web_config(settings):
    return webconfig.load(settings.web_config_file) if settings.web_config_file else webconfig.WebConfig()


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


def _shutdown(server, thread, drain):
    server.shutdown()
    server.server_close()
    thread.join()
    left = server.drain(drain)
    if left:
        server.exporter.log.warning("stopping: %d request(s) still running after %gs", left, drain)


class _Conn:
    """One open connection, as the accept loop sees it."""
    __slots__ = ("sock", "busy", "since")

    def __init__(self, sock, now):
        self.sock = sock          # the SSL socket once the handshake is done
        self.busy = False         # inside a request: head read, reply not yet written
        self.since = now          # when it last started waiting for a request head

    def abort(self):
        # socket.socket's own shutdown, also for an SSLSocket: its override would drop the
        # SSL object under the thread reading from it. The reading thread sees EOF and ends.
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False        # stop() must not wait for a slow client
    request_queue_size = 128      # socketserver's 5 drops connections under a scrape burst

    def __init__(self, family, addr, exporter, dual_stack=False):
        self.address_family = family
        self.exporter = exporter
        self.dual_stack = dual_stack
        self.draining = False
        self._conns = {}                     # request socket -> _Conn
        self._lock = threading.Condition()
        self._local = threading.local()      # .conn: the worker thread's own _Conn
        self._logged = {}                    # error kind -> [last logged, suppressed since]
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

    # --- connections: a cap, a deadline on the request head, a drain at stop
    def get_request(self):
        try:
            return super().get_request()
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # The connection stays in the backlog, so the loop would spin on it: make
                # room, and give the threads a moment to close what they hold.
                self.log_limited("accept", "accept: %s; closing the slowest connection", e.strerror.lower())
                with self._lock:
                    self._evict()
                time.sleep(0.1)
            raise

    def process_request(self, request, client_address):
        with self._lock:
            if self.draining or (len(self._conns) >= MAX_CONNECTIONS and not self._evict()):
                # Evicted connections stay in _conns until their thread ends: not counted.
                open_now = sum(1 for c in self._conns.values() if c.since != float("inf"))
                self.log_limited("full", "%d connections open (the cap is %d), all inside a request: "
                                 "a new one was closed", open_now, MAX_CONNECTIONS)
                self.shutdown_request(request)
                return
            self._conns[request] = _Conn(request, time.monotonic())
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request, client_address):
        self._local.conn = self._conns.get(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request):
        with self._lock:
            self._conns.pop(request, None)
            self._lock.notify_all()

    def _evict(self):
        """Close the connection waiting longest for its request head (lock held); False if none is."""
        waiting = [c for c in self._conns.values() if not c.busy]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.since)
        oldest.abort()
        oldest.since = float("inf")        # being closed: not chosen again
        return True

    def request_begins(self):
        """A request head was read; False when the server is draining (no reply is sent)."""
        with self._lock:
            conn = self._local.conn
            if self.draining or conn is None:
                return False
            conn.busy = True
            return True

    def request_ends(self):
        with self._lock:
            conn = self._local.conn
            if conn is not None:
                conn.busy, conn.since = False, time.monotonic()

    def service_actions(self):
        # The accept loop comes here at least every POLL_INTERVAL.
        now = time.monotonic()
        with self._lock:
            for conn in self._conns.values():
                if not conn.busy and now - conn.since > HEAD_TIMEOUT:
                    conn.abort()
                    conn.since = float("inf")

    def drain(self, timeout):
        """Close idle connections, wait for requests in flight; the number still running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self.draining = True
            for conn in self._conns.values():
                if not conn.busy:
                    conn.abort()
            while self._conns and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            return len(self._conns)

    def log_limited(self, kind, fmt, *args, level=logging.ERROR):
        """log.error (or `level`) at most once per ERROR_LOG_INTERVAL per kind, counting
        what it left out."""
        now = time.monotonic()
        last, quiet = self._logged.get(kind, (-ERROR_LOG_INTERVAL, 0))
        if now - last < ERROR_LOG_INTERVAL:
            self._logged[kind] = (last, quiet + 1)
            return
        self._logged[kind] = (now, 0)
        self.exporter.log.log(level, fmt + (f" ({quiet} more like it)" if quiet else ""), *args)

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
        if self._local.conn is not None:
            self._local.conn.sock = conn
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
    # No version: every client, authenticated or not, would learn which build (and so which
    # known bugs) it talks to. Go's server, under exporter-toolkit, sends no Server header.
    server_version = "mnmon"
    sys_version = ""
    timeout = REQUEST_TIMEOUT
    # Errors before the version is parsed still get a status line (not HTTP/0.9's bare body).
    default_request_version = "HTTP/1.0"
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def send_error(self, code, message=None, explain=None):
        # The stock message quotes the bad request line back; the status phrase is enough.
        super().send_error(code)

    def send_response_only(self, code, message=None):
        # http.server answers a request line ending in "HTTP/0.9" (also one it refuses as bad
        # syntax) with no status line and no headers: a bare body a client or proxy could take
        # for anything (found by tests/host/fuzz_targets.py). Every reply gets its status line.
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
            self.close_connection = True
        super().send_response_only(code, message)

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        self.rfile = _EOFTracking(self.rfile)

    def parse_request(self):
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(505)              # no HTTP/0.9: a status line, see send_response_only
            return False
        if self.rfile.eof:
            # The head ended at EOF, not at a blank line: the client hung up mid-head, or the
            # connection was evicted past the cap (shutdown()). Nobody waits for a reply:
            # no collection for a client that is gone.
            self.close_connection = True
            return False
        lengths = set(self.headers.get_all("Content-Length") or ())
        if self.headers.get("Transfer-Encoding") or lengths - {"0"}:
            # A GET or HEAD has no body; read as one, it was served as a second request.
            self.close_connection = True
            self.send_error(400)
            return False
        if not self.server.request_begins():
            self.close_connection = True      # stopping: the client retries elsewhere or later
            return False
        return True

    def handle_one_request(self):
        try:
            super().handle_one_request()
        finally:
            self.server.request_ends()

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def _serve(self, head):
        site = self.server.exporter._site
        try:
            allowed = site.auth.check(self.headers.get("Authorization"), self.client_address[0])
        except webconfig.Busy:
            self.server.log_limited("auth-busy", "basic auth: a login was refused (429) while %d "
                                    "others waited for bcrypt: a flood of wrong passwords?",
                                    webconfig.BasicAuth.WAITING, level=logging.WARNING)
            self._reply(429, b"Too Many Requests\n", site, head, [("Retry-After", "1")])
            return
        if not allowed:
            self._reply(401, b"Unauthorized\n", site, head, [("WWW-Authenticate", 'Basic realm="mnmon"')])
            return
        url = urlsplit(self.path)
        if url.path == site.telemetry_path:
            if site.registry is None:
                self._reply(503, b"not ready: attaching the probes\n", site, head, [("Retry-After", "5")])
            else:
                self._metrics(site, parse_qs(url.query), head)
        elif url.path == "/-/healthy":
            self._reply(200, b"mnmon is healthy.\n", site, head)
        elif url.path == "/-/ready":
            if site.registry is None:
                self._reply(503, b"mnmon is not ready: attaching the probes.\n", site, head)
            else:
                self._reply(200, b"mnmon is ready.\n", site, head)
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
            # One line, rate-limited: under a flood the same failure would repeat per scrape.
            self.server.log_limited("collect", "collecting metrics: %s: %s", type(e).__name__, e)
            self.server.exporter.log.debug("collecting metrics", exc_info=True)
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
        if self.server.draining:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            # A 1.0 client keeps the connection only when the reply says so; without it,
            # it waits for a close that never comes (ab -k waited 30 s).
            self.send_header("Connection", "keep-alive")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format, *args):   # noqa: A002 -- BaseHTTPRequestHandler's name
        # The request line is the client's: ESC or CR in it must not reach a terminal or the
        # journal raw (the standard library's own log_message escapes; this override must too).
        self.server.exporter.log.debug("%s: %s", self.client_address[0], printable(format % args))


class _EOFTracking:
    """The request's rfile, noting whether a line ended at EOF rather than at a newline:
    http.client's header parser takes EOF for the end of the head."""

    def __init__(self, f):
        self._f = f
        self.eof = False

    def readline(self, limit=-1):
        line = self._f.readline(limit)
        if not line.endswith(b"\n") and (limit < 0 or len(line) < limit):
            self.eof = True
        return line

    def __getattr__(self, name):
        return getattr(self._f, name)


def _landing(telemetry_path):
    # A relative link still works behind a reverse proxy that adds a path prefix.
    href = html.escape(telemetry_path.lstrip("/") or ".", quote=True)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mnmon</title></head>\n"
        "<body><h1>mnmon</h1>\n"
        f"<p>eBPF monitor of mmu notifiers and the OOM reaper, version {html.escape(__version__)}.</p>\n"
        f"<p><a href=\"{href}\">Metrics</a></p>\n</body></html>\n"
    ).encode()
