"""One line from a failed BPF compile: bcc prints clang's whole diagnostic dump (often
hundreds of lines from kernel headers newer than its clang), a user needs the first
real error and where it came from."""
import re

# clang: "/virtual/main.c:12:5: error: ..." or "include/linux/compiler.h:9:2: fatal error: ..."
_DIAG = re.compile(r"^(?P<file>[^:\s][^:]*):(?P<line>\d+):(?:\d+:)?\s*(?P<sev>fatal error|error):\s*(?P<msg>.+)$")
# driver errors have no location: "error: unknown argument: '-fmin-function-alignment=16'"
_DRIVER = re.compile(r"^(?:clang(?:-\d+)?: )?(?P<sev>fatal error|error):\s*(?P<msg>.+)$")


def _where(path):
    """A diagnostic's file, short: bcc's in-memory source, else the path from include/ or arch/ on."""
    if path.startswith("/virtual/"):
        return "mnmon's BPF program (" + path.rsplit("/", 1)[-1] + ")"
    m = re.search(r"(?:^|/)((?:include|arch)/.+)$", path)
    return "kernel header " + m.group(1) if m else path


def summarize(text, limit=200):
    """The first error of a compile log as one line, with how many more followed.

    'kernel header include/linux/compiler_types.h:9: unknown type name 'x' (and 3 more errors)'.
    Returns '' when the text holds no error (the caller keeps its own message then).
    """
    errors = []
    for line in (text or "").splitlines():
        line = line.strip()
        m = _DIAG.match(line)
        if m:
            errors.append(f"{_where(m.group('file'))}:{m.group('line')}: {m.group('msg').strip()}")
            continue
        m = _DRIVER.match(line)
        if m:
            errors.append(m.group("msg").strip())
    if not errors:
        m = re.search(r"(\d+) errors? generated", text or "")
        return f"{m.group(1)} compile errors" if m else ""
    first = errors[0]
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    more = len(errors) - 1
    return first + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
