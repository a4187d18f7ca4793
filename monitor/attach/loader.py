"""Importing bcc and compiling mnmon's BPF program for a plan. Nothing here prints:
failures are LoadError with one line that says why."""
import contextlib
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

from monitor.attach import compile_error
from monitor.bpf_sources import BPF_DIR
from monitor.kernel import headers


class LoadError(Exception):
    """bcc is missing or cannot compile mnmon's program here; the message says why."""


def import_bcc():
    """(the bcc module, its BPF class with autoload off)."""
    try:
        import bcc
    except ImportError as e:
        raise LoadError(f"bcc is not importable ({e}): install python3-bpfcc") from None

    class NoAutoload(bcc.BPF):
        # bcc attaches every kfunc__ program on load and one refusal aborts the
        # whole load; mnmon attaches each probe itself, with its fallbacks.
        def _trace_autoload(self):
            pass
    return bcc, NoAutoload


def kfunc_support(bcc, symbols):
    """bcc's BPF.support_kfunc(), with the kernel's symbols already read (a
    monitor.kernel.symbols.Symbols): bcc's asks its own cache of every kernel symbol,
    which it keeps for the process's life, ~17 MB of the daemon's heap, to look up one name."""
    if not len(symbols):        # kallsyms hides addresses from this user: bcc's own answer
        return bcc.BPF.support_kfunc()
    return (platform.machine() == "x86_64"           # trampolines exist only there
            and bool(bcc.lib.bpf_has_kernel_btf())
            and "bpf_trampoline_link_prog" in symbols)


def compile_program(plan, facts):
    """The compiled (not yet attached) program for plan on the kernel facts describe."""
    _, NoAutoload = import_bcc()
    if facts.headers == "none":
        raise LoadError(f"no kernel headers for {facts.release}: bcc cannot compile "
                        f"(apt-get install linux-headers-{facts.release})")
    source = None
    if facts.headers == "other":
        # Tracepoint programs compile against any headers; struct readers are off (HAVE_STRUCTS=0).
        try:
            source = str(headers.usable_headers(facts.headers_dir))
        except (OSError, headers.HeadersError) as e:
            raise LoadError(f"no usable kernel headers for {facts.release}: {e}") from None
    with stderr_to(tempfile.TemporaryFile()) as noise, _kernel_source(source):
        try:
            return NoAutoload(text=compile_unit().encode(), cflags=plan.cflags + [f"-I{BPF_DIR}"])
        except Exception as e:      # noqa: BLE001 -- bcc raises bare Exception on compile errors
            noise.seek(0)
            why = compile_error.summarize(noise.read().decode(errors="replace")) or str(e)
            raise LoadError(f"BPF program did not compile against the headers at "
                            f"{source or facts.headers_dir}: {why}") from None


@contextlib.contextmanager
def _kernel_source(path):
    """BCC_KERNEL_SOURCE for the compile only: the rest of mnmon sees the host as it is."""
    if path is None:
        yield
        return
    saved = os.environ.get("BCC_KERNEL_SOURCE")
    os.environ["BCC_KERNEL_SOURCE"] = path
    try:
        yield
    finally:
        if saved is None:
            del os.environ["BCC_KERNEL_SOURCE"]
        else:
            os.environ["BCC_KERNEL_SOURCE"] = saved


@contextlib.contextmanager
def stderr_to(sink):
    """Send C-level stderr (bcc's and libbpf's messages) to sink: what failed is reported
    once, in a ProbeStatus or an exception, not as noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
        yield sink
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def compile_unit(main=None):
    """bpf/mnmon.bpf.c with its concern files (#include "x.bpf.c") put in place.

    bcc rewrites map calls (.lookup, .atomic_increment...) and makes programs only
    in the main file it is given, so the concern files must be part of it. Headers
    (.h) stay includes.
    """
    main = Path(main or BPF_DIR / "mnmon.bpf.c")
    out = []
    for line in main.read_text().splitlines(keepends=True):
        m = re.match(r'#include "([\w.]+\.bpf\.c)"', line)
        out.append((main.parent / m.group(1)).read_text() if m else line)
    return "".join(out)
