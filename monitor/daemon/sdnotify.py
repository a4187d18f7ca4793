"""sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET.

    notify("READY=1", "STATUS=serving on :7668")
    if (interval := watchdog_interval()) is not None: ... notify("WATCHDOG=1") every interval/2

Without $NOTIFY_SOCKET (not started by systemd as Type=notify) every call is a no-op.
"""
import os
import socket
import time

READY = "READY=1"
STOPPING = "STOPPING=1"
RELOADING = "RELOADING=1"
WATCHDOG = "WATCHDOG=1"


class NotifyError(OSError):
    """The notification socket is set but a message could not be sent to it."""


def socket_address(env=None):
    """The address $NOTIFY_SOCKET names: a path, or an abstract name for "@name"
    (returned with its leading NUL); None when unset or not a unix socket."""
    env = os.environ if env is None else env
    name = env.get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    return None                  # unset, or a form we do not speak (systemd 253's vsock:)


def notify(*lines, env=None):
    """Send state lines ("READY=1", "STATUS=...") in one datagram.

    Returns True if sent, False when there is no socket to send to. Raises NotifyError.
    """
    addr = socket_address(env)
    if addr is None:
        return False
    msg = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(msg, addr)
    except OSError as e:
        raise NotifyError(e.errno, f"NOTIFY_SOCKET {addr.lstrip(chr(0))}: {e.strerror}") from None
    return True


def ready(status=None, env=None):
    """READY=1 (and STATUS= if given): start-up is over."""
    return notify(READY, *([f"STATUS={status}"] if status else []), env=env)


def reloading(env=None):
    """RELOADING=1 with MONOTONIC_USEC (which systemd 253+ requires); send ready() when done."""
    return notify(RELOADING, f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", env=env)


def stopping(env=None):
    """STOPPING=1: shutting down."""
    return notify(STOPPING, env=env)


def watchdog(env=None):
    """WATCHDOG=1: still alive."""
    return notify(WATCHDOG, env=env)


def status(text, env=None):
    """STATUS=text: one line shown by `systemctl status`."""
    return notify(f"STATUS={text}", env=env)


def watchdog_interval(env=None, pid=None):
    """Seconds systemd waits between WATCHDOG=1 pings, or None when the watchdog is off.

    From $WATCHDOG_USEC; None too when $WATCHDOG_PID names another process (the
    variables were inherited, not meant for us) or the values are not numbers.
    """
    env = os.environ if env is None else env
    pid = os.getpid() if pid is None else pid
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1e6
