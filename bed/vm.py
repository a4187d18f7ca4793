"""Boot Debian's stock kernel under QEMU software emulation and run one command in it.

The guest's root is this host's filesystem (virtme-ng), so the repository, the
virtualenv and the kernel headers are all visible inside; the repository is
mounted writable.  Booting costs ~20 s, so callers run a whole pytest session
(or demo, or benchmark) per boot.

    python -m bed.vm [--kernel 6.1.0-NN-amd64] -- COMMAND...

A kernel not installed on the host but pinned in bed/kernels.py is
fetched into build/kernels/ and booted from there.

Exit status is the command's.
"""
import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bed import kernels, slots

REPO = Path(__file__).resolve().parents[1]
GUEST_SETUP = REPO / "bed" / "guest_setup.sh"


class BedError(Exception):
    """The bed cannot boot: something it needs is missing."""


def newest_kernel(modules=Path("/lib/modules")):
    """The newest installed Debian amd64 kernel that has headers, e.g. '6.1.0-56-amd64'."""
    found = sorted(
        (p.name for p in modules.glob("*-amd64") if (p / "build").exists()),
        key=lambda v: [int(x) if x.isdigit() else x for x in v.replace("-", ".").split(".")],
    )
    if not found:
        raise BedError("no Debian kernel with headers installed (apt-get install linux-image-amd64 linux-headers-amd64)")
    return found[-1]


def vng_argv(kver, command, *, cpus=2, memory="2G", env=None, plugin=""):
    """The virtme-ng command line that boots kver and runs command (a list) as root.

    plugin: a QEMU TCG plugin and its arguments, as -plugin takes them (bench/plugin/).
    """
    image = Path(f"/boot/vmlinuz-{kver}")
    if not image.exists() and kver in kernels.KERNELS:
        # A pinned stock kernel, unpacked under build/kernels/: virtme-ng finds its
        # modules beside the image, and their build link leads bcc to its headers.
        try:
            image = kernels.image(kver)
        except kernels.KernelError as e:
            raise BedError(str(e)) from None
    if not image.exists():
        raise BedError(f"{image} is missing (apt-get install linux-image-amd64, or one of "
                       f"{', '.join(kernels.KERNELS)})")
    vng = shutil.which("vng", path=f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
    if not vng:
        raise BedError("vng (virtme-ng) not found: run make setup-test")
    guest_env = {"MNMON_GUEST": "1", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    guest_env.update(env or {})
    inner = " ".join(
        [f"cd {shlex.quote(str(REPO))} &&", "sh", shlex.quote(str(GUEST_SETUP)), "&&", "env"]
        + [f"{k}={shlex.quote(v)}" for k, v in guest_env.items()]
        + [shlex.quote(c) for c in command]
    )
    return [
        vng, "--run", str(image),
        "--disable-kvm",            # software emulation: the host's /dev/kvm is not ours to use
        # max exposes SVM, so kvm_amd loads inside the guest
        "--qemu-opts=-cpu max" + (f" -plugin {plugin}" if plugin else ""),
        "--cpus", str(cpus), "--memory", memory,
        f"--rwdir={REPO}",
        # The OOM scenarios log ~1000 reaper lines; the default 128 KiB buffer would drop some.
        "--append", "log_buf_len=8M",
        "--exec", inner,
    ]


def run(kver, command, *, timeout=3600, whole_machine=False, **kw):
    """Boot, run command, return its exit status. Output streams to ours.

    One guest per core (bed/slots.py); whole_machine (benchmarks) waits for every
    slot, so no other guest skews its figures.
    """
    argv = vng_argv(kver, command, **kw)
    with slots.slot(whole_machine):
        return _run(kver, argv, timeout)


def _run(kver, argv, timeout):
    started = time.monotonic()
    # vng calls its sibling virtme-run through PATH.
    env = dict(os.environ, PATH=f"{Path(argv[0]).parent}:{os.environ.get('PATH', '')}")
    # QEMU reopens the console's output by path, which truncates a file: a CI log held
    # nothing from before the boot. It writes to a pipe here, relayed to our stdout.
    # Its own session, so a timeout stops QEMU too, not only vng.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    expired = threading.Event()

    def expire():
        expired.set()
        _kill_group(proc)
    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        sys.stdout.flush()
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:      # interrupted: take the guest down with us
            _kill_group(proc)
            proc.wait()
    # Boot and command, without the wait for the lock: what a leg of the matrix costs.
    print(f"vm: {kver} booted and ran {time.monotonic() - started:.0f} s", file=sys.stderr)
    if expired.is_set():
        print(f"vm: guest command still running after {timeout} s, stopped", file=sys.stderr)
        return 124
    return rc


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", default="", help="kernel release under /boot (default: newest Debian amd64)")
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--cpus", type=int, default=2, help="vCPUs of the guest (default 2)")
    ap.add_argument("--plugin", default="", help="QEMU TCG plugin: PATH.so[,ARG=VALUE...]")
    ap.add_argument("command", nargs="+")
    args = ap.parse_args(argv)
    try:
        kver = args.kernel or newest_kernel()
        # A plugin counts instructions for a benchmark: it gets the machine to itself.
        return run(kver, args.command, timeout=args.timeout, cpus=args.cpus, plugin=args.plugin,
                   whole_machine=bool(args.plugin))
    except BedError as e:
        print(f"vm: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
