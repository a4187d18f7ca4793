"""The `mnmon serve` daemon: listen, attach, serve, tell systemd, reload on SIGHUP, detach on SIGTERM.

The CLI passes `make_registry(settings)`, which attaches the BPF probes and
returns an Attachment: the prometheus_client registry to serve and a close()
that detaches. This module knows nothing of BPF, so it is tested with a plain
registry.

    every discovery.interval   the attachment's refresh(), if it has one
    every WatchdogSec/2        WATCHDOG=1, when systemd asks for it
    SIGHUP   re-read the config file (flags still win) and the web config file;
             on error log it and keep serving with the old settings
    SIGTERM  STOPPING=1, stop accepting, close idle connections, let requests in
             flight finish, then close(), return 0 (SIGINT too)
"""
import dataclasses
import logging
import os
import resource
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from monitor.daemon import logformat, sdnotify
from monitor.printable import printable
from monitor.settings.config import ConfigError, format_duration
from monitor.web.server import Exporter, ServeError

# Probe settings are read once, at attach time; a reload cannot change them.
_RESTART_ONLY = ("strict", "disable", "callbacks", "lean", "latency", "discovery_interval", "watchdog")


class Attachment(Protocol):
    """What make_registry(settings) returns.

    registry: a prometheus_client CollectorRegistry with the probes' collectors.
    close(): detach the probes; called once, after the server has stopped.
    refresh(): optional; called from the main loop every discovery.interval to
        attach what appeared since (new notifiers, modules). An exception is
        logged and the next call comes on time. Returns new ProbeStatus-like
        records (or nothing); each is logged.
    """
    registry: object

    def close(self) -> None: ...


@dataclass
class Attached:
    """The simplest Attachment: `Attached(registry, bpf.cleanup, monitor.refresh)`."""
    registry: object
    close: Callable[[], None] = lambda: None
    refresh: Optional[Callable[[], object]] = None


class Daemon:
    """The daemon's steps without the signal loop, so tests can drive them one by one."""

    def __init__(self, settings, make_registry, log, env=None, validate=None):
        self.settings = settings
        self.make_registry = make_registry
        # validate(settings) raises ConfigError: the CLI's config.validate, the very check
        # `config check` runs, so a start, a reload and the check accept the same files.
        self.validate = validate or Exporter.check
        self.log = log
        self.env = os.environ if env is None else env
        self.attachment = None
        self.exporter = None
        self.watchdog_period = None

    def start(self):
        """Listen, attach, serve, send READY=1. Raises ConfigError, WebConfigError or
        ServeError before attaching, and whatever make_registry raises (the server stopped)."""
        interval = sdnotify.watchdog_interval(self.env)
        if self.settings.watchdog and interval is None:
            raise ServeError("watchdog: true, but systemd set no WATCHDOG_USEC (WatchdogSec= in the unit)")
        if self.settings.watchdog is False and interval is not None:
            self.log.warning("watchdog: false, but systemd expects a ping every %s", format_duration(interval))
            interval = None
        self.watchdog_period = interval / 2 if interval else None
        # Every setting is checked, and the port taken, before the slow part (the BPF
        # compile: 27 s emulated). Meanwhile /-/healthy answers, /-/ready says 503: a
        # liveness probe does not kill a pod that is compiling.
        self.validate(self.settings)
        exporter = Exporter(None, self.settings, self.log.getChild("web"))
        exporter.start()
        try:
            self.attachment = self.make_registry(self.settings)
        except BaseException:
            exporter.stop()
            raise
        self.exporter = exporter
        self.exporter.serve(self.attachment.registry)
        self._notify(sdnotify.ready, f"serving {self.exporter.url}")

    def reload(self):
        """Re-read the settings and apply them; True if applied. Errors are logged and
        the old settings stay: a typo in a config file must not take the exporter down."""
        self._notify(sdnotify.reloading)
        try:
            new = self.settings.reload()
            self.validate(new)
            kept = {k: getattr(self.settings, k) for k in _RESTART_ONLY
                    if getattr(new, k) != getattr(self.settings, k)}
            for key in kept:
                self.log.warning("reload: %s changed; that takes effect at the next restart", key)
            new = dataclasses.replace(new, **kept)
            self.exporter.reload(new)
        except (ConfigError, ServeError) as e:
            self.log.error("reload failed, still serving with the previous settings: %s", e)
            applied = False
        else:
            self.settings = new
            self.log.info("reloaded: serving %s", self.exporter.url)
            applied = True
        self._notify(sdnotify.ready, f"serving {self.exporter.url}")
        return applied

    def ping(self):
        """WATCHDOG=1."""
        self._notify(sdnotify.watchdog)

    def refresh(self):
        """The attachment's refresh(), if it has one; its failures are logged, not raised."""
        fn = getattr(self.attachment, "refresh", None)
        if fn is None:
            return
        try:
            for found in fn() or ():
                self.log.info("discovery: %s", found)
        except Exception as e:     # noqa: BLE001 -- the next round may succeed; serving goes on
            self.log.warning("discovery failed: %s", e, exc_info=self.log.isEnabledFor(logging.DEBUG))

    def stop(self):
        """STOPPING=1, stop the server, detach. Safe to call after a partial start."""
        self._notify(sdnotify.stopping)
        if self.exporter is not None:
            self.exporter.stop()
            self.exporter = None
        if self.attachment is not None:
            attachment, self.attachment = self.attachment, None
            attachment.close()

    def _notify(self, fn, *args):
        try:
            fn(*args, env=self.env)
        except sdnotify.NotifyError as e:
            self.log.warning("%s", e)


def run(settings, make_registry, log, env=None, validate=None):
    """Run the daemon until SIGTERM or SIGINT; returns the exit status (0).

    Must be called from the main thread (signal handlers live there). Start-up
    errors are raised for the CLI to report (see Daemon.start).
    """
    _raise_open_file_limit()
    daemon = Daemon(settings, make_registry, log, env, validate)
    # The C-level handler writes each signal's number to this socket, which wakes
    # select() whichever thread the kernel delivered the signal to.
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    wsock.setblocking(False)
    signals = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
    old_wakeup = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
    old_handlers = {s: signal.signal(s, _ignore) for s in signals}
    try:
        daemon.start()         # a SIGTERM during a slow attach waits in the socket
        return _loop(daemon, rsock)
    finally:
        daemon.stop()          # signals still go to the socket: a second SIGTERM cannot cut the drain
        for s, h in old_handlers.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(old_wakeup)
        rsock.close()
        wsock.close()


def _raise_open_file_limit():
    """Soft RLIMIT_NOFILE up to the hard one (systemd's default soft limit is 1024):
    connections are capped by the server, not by EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


def _ignore(signum, frame):
    pass                       # the wakeup socket carries the signal to _loop


def _loop(daemon, rsock):
    # [period, what to call, when next]: the watchdog now, discovery after one interval.
    now = time.monotonic()
    interval = daemon.settings.discovery_interval
    timers = [[interval, daemon.refresh, now + interval]]
    if daemon.watchdog_period:
        timers.append([daemon.watchdog_period, daemon.ping, now])
    while True:
        now = time.monotonic()
        for timer in timers:
            if now >= timer[2]:
                timer[1]()
                timer[2] += timer[0]
                if timer[2] <= now:          # fell behind (a slow refresh): no burst of catch-ups
                    timer[2] = now + timer[0]
        # Capped: select() refuses a timeout past ~2**31 s (a huge WATCHDOG_USEC).
        timeout = min(3600.0, max(0.0, min(t[2] for t in timers) - time.monotonic()))
        readable, _, _ = select.select([rsock], [], [], timeout)
        for signum in rsock.recv(256) if readable else b"":
            if signum == signal.SIGHUP:
                daemon.log.info("SIGHUP: reloading")
                daemon.reload()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                daemon.log.info("%s: stopping", signal.Signals(signum).name)
                return 0


# syslog priorities sd-daemon(3) reads from a "<N>" line prefix.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def _escaped(record):
    """A copy of record whose message has its control characters escaped: a config key, a
    client's request line or a process name in it cannot start a log line (a journal
    entry) of its own. A traceback (exc_info, debug level) keeps its lines."""
    return logging.makeLogRecord({**record.__dict__, "msg": printable(record.getMessage()), "args": None})


class JournalFormatter(logging.Formatter):
    """"<6>message": the journal adds the time and reads the priority from the prefix.
    With `inner` (a --log.format formatter) its line follows the prefix."""

    def __init__(self, fmt=None, datefmt=None, inner=None):
        super().__init__(fmt, datefmt)
        self.inner = inner

    def format(self, record):
        prio = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = self.inner.format(record) if self.inner else super().format(_escaped(record))
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def stderr_is_journal(stream=None, env=None):
    """Whether `stream` is the journal: $JOURNAL_STREAM ("dev:inode") names its file."""
    stream = sys.stderr if stream is None else stream
    env = os.environ if env is None else env
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return env.get("JOURNAL_STREAM", "") == f"{st.st_dev}:{st.st_ino}"


def setup_logging(level=logging.INFO, stream=None, env=None, fmt="plain"):
    """The "mnmon" logger, writing to stderr. fmt "plain": "<6>msg" under systemd's journal,
    "2024-05-01 12:00:00 info: msg" elsewhere; "logfmt" or "json" (monitor.daemon.logformat):
    that line, after "<6>" under the journal. Returns the logger."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    structured = logformat.FORMATTERS[fmt]() if fmt != "plain" else None
    if stderr_is_journal(stream, env):
        handler.setFormatter(JournalFormatter("%(message)s", inner=structured))
    elif structured:
        handler.setFormatter(structured)
    else:
        handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    log = logging.getLogger("mnmon")
    for old in list(log.handlers):
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    return log


class _PlainFormatter(logging.Formatter):
    def format(self, record):
        # A copy: other handlers of the same record keep the usual spelling.
        record = _escaped(record)
        record.levelname = record.levelname.lower()
        return super().format(record)
