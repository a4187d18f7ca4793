"""Text from outside (a process name, a config key, a request line) made safe to print.

A process may set its comm to "x\n99:99 FAKE=1" or to terminal escapes without any
privilege; printed raw, it forges a line of `mnmon watch` or a journal entry, or drives
the terminal. printable() keeps every printable character and spells the rest the way
Python writes them in a string literal, so the text stays readable and one line.
"""

# C0 controls, DEL and the C1 controls (0x9b is a one-byte CSI on some terminals).
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
# ...and the backslash, where a reader must tell an escape from the same characters typed.
_UNAMBIGUOUS = {**_ESCAPES, ord("\\"): "\\\\"}


def printable(text, unambiguous=False):
    """`text` with control characters and other unprintable ones escaped (\\n, \\x1b,
    \\u2028...); printable text, also non-ASCII, unchanged. unambiguous=True escapes the
    backslash too (a process name), so "\\n" typed and a newline print differently."""
    text = str(text).translate(_UNAMBIGUOUS if unambiguous else _ESCAPES)
    if text.isprintable():
        return text
    # Line and paragraph separators, bidirectional overrides and the like.
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
