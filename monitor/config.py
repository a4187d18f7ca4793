"""Settings of `mnmon serve`: a YAML file, overridden by command-line flags.

    web:
      listen_address: ":7668"      # [host]:port; ":port" is every address, "[::1]:port" IPv6
      telemetry_path: /metrics
      config_file: web.yaml        # exporter-toolkit TLS / basic-auth file, optional
    probes:
      strict: false                # a probe that cannot attach is fatal
      disable: [oom_reaper]        # probe names to leave unattached
    discovery:
      interval: 5s                 # Prometheus-style duration
    watchdog: auto                 # true | false | auto (ping when systemd set WATCHDOG_USEC)

Every error is a ConfigError whose message starts with where the value came from
(the file, or the flag) and the key path: "config.yaml: web.listen_address: port
70000 out of range". Nothing here prints or exits.
"""
import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

DEFAULT_PATH = "/etc/mnmon/config.yaml"

# Prometheus' default-port allocations wiki hands out 9090-9099 to its own
# components and 9100-9999 to exporters, and that range is full. 7668 is below
# it, unassigned in IANA's service-name and port registry (checked against the
# 2024 registry), and not the default of any widely deployed server we know of
# (unlike 7070 Parca, 7199 Cassandra, 7474 Neo4j, 7946 memberlist, 8080...).
# Mnemonic: S-M-M-U on a phone keypad.
DEFAULT_PORT = 7668
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"

# Override keyword -> (key path in the file, the flag the CLI spells it as).
FLAGS = {
    "web_listen_address": ("web.listen_address", "--web.listen-address"),
    "web_telemetry_path": ("web.telemetry_path", "--web.telemetry-path"),
    "web_config_file": ("web.config_file", "--web.config.file"),
    "probes_strict": ("probes.strict", "--config.strict"),
    "probes_disable": ("probes.disable", "--probes.disable"),
    "discovery_interval": ("discovery.interval", "--discovery.interval"),
    "watchdog": ("watchdog", "--watchdog"),
}

_SCHEMA = {
    "web": {"listen_address": None, "telemetry_path": None, "config_file": None},
    "probes": {"strict": None, "disable": None},
    "discovery": {"interval": None},
    "watchdog": None,
}


class ConfigError(ValueError):
    """A setting that cannot be used; the message names its source and key path."""


@dataclass(frozen=True)
class Settings:
    """Validated settings. `source` and `flags` let a SIGHUP re-read the same file
    and re-apply the same flags (see reload())."""
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    telemetry_path: str = "/metrics"
    web_config_file: Optional[str] = None
    strict: bool = False
    disable: tuple = ()
    discovery_interval: float = 5.0
    watchdog: Optional[bool] = None          # None: auto, from WATCHDOG_USEC
    source: Optional[str] = None             # the file these came from, if any
    flags: tuple = ()                        # ((keyword, value), ...) applied on top

    def with_overrides(self, **flags):
        """Settings with command-line values on top; a None value means "not given".

        Keywords are the keys of FLAGS (web_listen_address=..., probes_strict=...).
        Raises ConfigError naming the flag.
        """
        given = {k: v for k, v in flags.items() if v is not None}
        changes = {}
        for kw, value in given.items():
            if kw not in FLAGS:
                raise ConfigError(f"{kw}: unknown setting (known: {', '.join(FLAGS)})")
            keypath, flag = FLAGS[kw]
            if kw == "web_config_file" and isinstance(value, str) and value:
                value = os.path.abspath(value)
            if kw == "probes_disable" and isinstance(value, str):    # "--probes.disable a,b"
                value = [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, list):
                value = tuple(value)
            changes.update(_validate(keypath, value, flag))
            given[kw] = value        # as applied, so reload() re-applies the same thing
        merged = dict(self.flags)
        merged.update(given)
        return dataclasses.replace(self, **changes, flags=tuple(sorted(merged.items())))

    def reload(self):
        """Re-read the file these settings came from and re-apply the same flags."""
        base = load(self.source) if self.source else Settings()
        return base.with_overrides(**dict(self.flags))

    def describe(self):
        """The settings as the file would spell them (for logs and `config check`)."""
        return {
            "web": {"listen_address": self.listen_address, "telemetry_path": self.telemetry_path,
                    "config_file": self.web_config_file},
            "probes": {"strict": self.strict, "disable": list(self.disable)},
            "discovery": {"interval": format_duration(self.discovery_interval)},
            "watchdog": "auto" if self.watchdog is None else self.watchdog,
        }


_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(text):
    """Seconds in a Prometheus duration: "500ms", "10s", "1m", "1h30m", "2d", "0".

    Units y w d h m s ms, largest first, each at most once, integers only -- the
    same grammar Prometheus' model.ParseDuration accepts. Raises ValueError.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        raise ValueError(f"duration {text} needs a unit, e.g. \"{text}s\"")
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}")
    if text == "0":
        return 0.0
    m = _DURATION.match(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"invalid duration {text!r} (use e.g. 500ms, 10s, 1m, 1h30m)")
    return float(sum(int(n) * unit for n, unit in zip(m.groups(), _UNITS) if n))


def format_duration(seconds):
    """The shortest Prometheus spelling of a duration parse_duration() returned."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = ""
    for unit, name in ((3600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")):
        if ms >= unit:
            out += f"{ms // unit}{name}"
            ms %= unit
    return out


def parse_listen_address(text):
    """(host, port) of "host:port", "[v6]:port" or ":port" (host "" = every address).

    Raises ValueError with the reason.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a \"host:port\" string")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected \"[ipv6]:port\"")
        port = rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r}: missing port, e.g. \"{text}:{DEFAULT_PORT}\"")
        if ":" in host:
            raise ValueError(f"{text!r}: an IPv6 address needs brackets, e.g. \"[::1]:{DEFAULT_PORT}\"")
    if not port.isdigit():
        raise ValueError(f"port {port!r} is not a number")
    if int(port) > 65535:
        raise ValueError(f"port {int(port)} out of range")
    return host, int(port)


def _validate(keypath, value, where):
    """{Settings field: value} for one key; ConfigError names `where` and the key."""
    def fail(reason):
        return ConfigError(f"{where}: {reason}" if where.startswith("--") else f"{where}: {keypath}: {reason}")

    try:
        if keypath == "web.listen_address":
            parse_listen_address(value)
            return {"listen_address": value}
        if keypath == "web.telemetry_path":
            if not isinstance(value, str) or not value.startswith("/"):
                raise ValueError(f"{value!r} is not a path starting with \"/\"")
            return {"telemetry_path": value}
        if keypath == "web.config_file":
            if not isinstance(value, str) or not value:
                raise ValueError(f"{value!r} is not a file name")
            return {"web_config_file": value}
        if keypath == "probes.strict":
            if not isinstance(value, bool):
                raise ValueError(f"{value!r} is not true or false")
            return {"strict": value}
        if keypath == "probes.disable":
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{value!r} is not a list of probe names")
            return {"disable": tuple(value)}
        if keypath == "discovery.interval":
            seconds = parse_duration(value)
            if seconds <= 0:
                raise ValueError("must be longer than 0s")
            return {"discovery_interval": seconds}
        if keypath == "watchdog":
            if value in ("auto", None):
                return {"watchdog": None}
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise ValueError(f"{value!r} is not true, false or auto")
            return {"watchdog": value}
    except ValueError as e:
        raise fail(str(e)) from None
    raise fail("unknown key")


def _walk(data, schema, prefix, where):
    """Yield (key path, value) of a parsed mapping, rejecting keys not in schema."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix or 'top level'}: expected a mapping, got {type(data).__name__}")
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in schema:
            raise ConfigError(f"{where}: {path}: unknown key (known: {', '.join(schema)})")
        if value is None:              # "key:" with nothing after it keeps the default
            continue
        if schema[key] is None:
            yield path, value
        else:
            yield from _walk(value, schema[key], path, where)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse(text, where="config", base_dir=None):
    """Settings from YAML text; `where` starts every error message, `base_dir`
    anchors a relative web.config_file (the config file's directory)."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        if mark is not None:
            raise ConfigError(f"{where}: line {mark.line + 1}, column {mark.column + 1}: {problem}") from None
        raise ConfigError(f"{where}: {problem}") from None
    if data is None:
        data = {}
    changes = {}
    for keypath, value in _walk(data, _SCHEMA, "", where):
        changes.update(_validate(keypath, value, where))
    cfg = changes.get("web_config_file")
    if cfg and base_dir and not os.path.isabs(cfg):
        changes["web_config_file"] = os.path.join(base_dir, cfg)
    return Settings(**changes)


def load(path=None):
    """Settings from a YAML file. path None: DEFAULT_PATH if it exists, else defaults.

    Raises ConfigError ("FILE: KEY: reason", or "FILE: line L, column C: ..." for
    broken YAML).
    """
    if path is None:
        if not os.path.exists(DEFAULT_PATH):
            return Settings()
        path = DEFAULT_PATH
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    settings = parse(text, where=path, base_dir=os.path.dirname(os.path.abspath(path)))
    return dataclasses.replace(settings, source=os.path.abspath(path))


def check(path):
    """What `mnmon config check FILE` runs: the settings file, then the web
    configuration file it names (certificates and keys are opened and loaded).

    Returns the Settings; raises ConfigError, or WebConfigError (a ConfigError).
    """
    settings = load(path)
    if settings.web_config_file:
        from monitor.web import webconfig    # noqa: PLC0415 -- only `check` needs TLS
        webconfig.load(settings.web_config_file).ssl_context()
    return settings


def check_probe_names(settings, known):
    """Raise ConfigError if probes.disable names a probe not in `known`.

    The probe list belongs to the BPF side, so the CLI calls this with it.
    """
    unknown = sorted(set(settings.disable) - set(known))
    if unknown:
        raise ConfigError(f"probes.disable: unknown probe {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(sorted(known))})")
