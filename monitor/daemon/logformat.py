"""`--log.format`: log lines as Prometheus's exporters write them.

    logfmt  time=2024-05-01T12:00:00.000+02:00 level=info source=serve.py:98 msg="listening on :7668"
    json    {"time": "2024-05-01T12:00:00.000+02:00", "level": "info", "source": "serve.py:98", "msg": "..."}

A child logger ("mnmon.web") adds component=web, as Prometheus's components do; a traceback
(debug level) is the err value. Each record is one line: in logfmt, control characters,
backslashes and quotes in a value are escaped (monitor.printable), so a client's request line
or a process name cannot forge a line or a key; JSON escapes them itself.
"""
import datetime
import json
import logging

from monitor.printable import printable

# go-kit's level names, which Prometheus's logfmt lines carry.
_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
           logging.ERROR: "error", logging.CRITICAL: "error"}


def fields(record):
    """[(key, value)] of a record, in the order Prometheus writes them."""
    when = datetime.datetime.fromtimestamp(record.created).astimezone()
    out = [("time", when.isoformat(timespec="milliseconds").replace("+00:00", "Z")),
           ("level", _LEVELS.get(record.levelno, record.levelname.lower())),
           ("source", f"{record.filename}:{record.lineno}")]
    if record.name.startswith("mnmon."):
        out.append(("component", record.name[len("mnmon."):]))
    out.append(("msg", record.getMessage()))
    if record.exc_info:
        out.append(("err", logging.Formatter().formatException(record.exc_info)))
    return out


def logfmt_value(value):
    """A logfmt value: bare when it is a plain word, else quoted with its escapes."""
    value = str(value)
    if value and value.isprintable() and not any(c in ' ="\\' for c in value):
        return value
    return '"' + printable(value, unambiguous=True).replace('"', '\\"') + '"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record):
        return " ".join(f"{k}={logfmt_value(v)}" for k, v in fields(record))


class JsonFormatter(logging.Formatter):
    def format(self, record):
        return json.dumps(dict(fields(record)))


FORMATTERS = {"logfmt": LogfmtFormatter, "json": JsonFormatter}
