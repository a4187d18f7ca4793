"""Reading mnmon's two YAML files (settings, web configuration) safely, and the
error every bad setting becomes.

A settings file is a few hundred bytes, so anything that is not a small regular file
is refused before it is read (/dev/zero, a FIFO, a 3 GB log), and YAML aliases are
refused outright: none is needed, and nine nested ones (a "billion laughs") expand a
348-byte file into gigabytes. Error messages quote at most a short prefix of a value.
"""
import os
import re
import stat

import yaml

MAX_BYTES = 64 * 1024
QUOTE_CHARS = 40


class ConfigError(ValueError):
    """A setting that cannot be used; the message names its source and key path."""


def short(value):
    """repr(value), cut to QUOTE_CHARS characters: error lines stay one short line."""
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 3] + "..."


_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def key_name(key):
    """A mapping key as an error line may quote it: a name-like key as it is, anything else
    (a line of /etc/shadow, a key with a newline or an escape) not quoted at all, so an
    error never repeats a file's contents nor forges a log line."""
    text = str(key) if isinstance(key, (str, int)) else ""
    return text if _NAME.fullmatch(text) else "(a key that is not a name)"


class SafeLoader(yaml.SafeLoader):
    """SafeLoader without aliases, and refusing a key given twice (PyYAML keeps the last)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed here",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value", key_node.start_mark) from None
            if dup:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short(key)}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def parse_text(text, where, error=ConfigError, loader=SafeLoader):
    """The YAML document in `text`; `error(msg)` for broken YAML, "WHERE: line L, column C: ...".
    `loader` is SafeLoader or a subclass of it."""
    if len(text) > MAX_BYTES:
        raise error(f"{where}: larger than {MAX_BYTES // 1024} KiB; not a settings file")
    try:
        return yaml.load(text, Loader=loader)      # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = (getattr(e, "problem", None) or str(e)).splitlines()[0]
        if len(problem) > 2 * QUOTE_CHARS:          # a problem may quote the bad token
            problem = problem[:2 * QUOTE_CHARS - 3] + "..."
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise error(f"{where}: {at}{problem}") from None
    except RecursionError:
        raise error(f"{where}: nested too deeply") from None


def read_regular(path, error=ConfigError, max_bytes=MAX_BYTES, what="a settings file"):
    """The bytes of a regular file of at most max_bytes; `error("PATH: reason")` otherwise.

    A FIFO, device, directory or socket (also behind a symbolic link) is refused before a
    byte is read: a FIFO would block the daemon's main loop, /dev/zero never ends."""
    path = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat refuses it next.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise error(f"{path}: {(e.strerror or str(e)).lower()}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: {'is a directory' if stat.S_ISDIR(mode) else 'not a regular file'}")
    with open(fd, "rb") as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise error(f"{path}: {(e.strerror or str(e)).lower()}") from None
    if len(data) > max_bytes:
        raise error(f"{path}: larger than {max_bytes // 1024} KiB; not {what}")
    return data


def read_text(path, error=ConfigError):
    """The text of a small regular UTF-8 file; `error("PATH: reason")` otherwise."""
    path = str(path)
    data = read_regular(path, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start})") from None


def load(path, error=ConfigError, loader=SafeLoader):
    """The YAML document of a small file, with errors naming the file."""
    return parse_text(read_text(path, error), str(path), error, loader)
