"""Kernel headers for bcc when the running kernel has none of its own.

Debian splits headers in two: linux-headers-X-amd64 (generated files, Makefile)
and linux-headers-X-common (the rest), joined by /lib/modules/X/{build,source}.
bcc follows that pair for the running kernel, but BCC_KERNEL_SOURCE takes one
directory, so another kernel's split headers are merged here into one tree of
symbolic links. Only tracepoint programs are compiled against it (HAVE_STRUCTS=0).
"""
import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

RUN_DIR = Path(os.environ.get("MNMON_RUN_DIR", "/run/mnmon"))


class HeadersError(Exception):
    """The headers cannot serve bcc; the message says why."""


def merge_tree(dirs, dest):
    """Make dest a union of dirs (earlier ones win) as symbolic links.

    Directories present in several dirs are made real and merged one level down;
    everything else is one link to its source.
    """
    dest.mkdir(parents=True, exist_ok=True)
    names = {}
    for d in dirs:
        for entry in sorted(os.listdir(d)):
            names.setdefault(entry, []).append(d / entry)
    for name, sources in names.items():
        target = dest / name
        dirs_here = [s for s in sources if s.is_dir() and not s.is_symlink()] or [s for s in sources if s.is_dir()]
        if len(dirs_here) > 1:
            merge_tree([s.resolve() for s in dirs_here], target)
        elif not target.exists() and not target.is_symlink():
            target.symlink_to(sources[0].resolve())


def usable_headers(build_dir, run_dir=RUN_DIR):
    """A directory bcc can use as BCC_KERNEL_SOURCE for build_dir's headers."""
    build = Path(build_dir).resolve()
    parts = [build]
    # Before resolving: build is a link, and source sits beside the link, not its target.
    source = Path(build_dir).parent / "source" if Path(build_dir).name == "build" else None
    # /lib/modules/X/source, else Debian's sibling: linux-headers-X-amd64 -> linux-headers-X-common
    if source and source.exists():
        parts.append(source.resolve())
    elif build.name.endswith("-amd64") or build.name.endswith("-arm64"):
        common = build.with_name(build.name.rsplit("-", 1)[0] + "-common")
        if common.is_dir():
            parts.append(common)
    if len(parts) == 1:
        merged = build
    else:
        merged = run_dir / "headers" / build.name
        try:
            merge_tree(parts, merged)
        except OSError as e:
            # A read-only /run without /run/mnmon (ProtectSystem=strict without
            # RuntimeDirectory=, a read-only container): a private directory instead.
            scratch = Path(tempfile.mkdtemp(prefix="mnmon-headers-"))
            atexit.register(shutil.rmtree, scratch, True)
            logging.getLogger("mnmon").warning("%s: %s; merging kernel headers under %s instead",
                                               run_dir, (e.strerror or str(e)).lower(), scratch)
            merged = scratch / build.name
            merge_tree(parts, merged)
    if not (merged / "include/linux/kconfig.h").exists():
        raise HeadersError(f"{build_dir}: no include/linux/kconfig.h (incomplete kernel headers)")
    return merged
