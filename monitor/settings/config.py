"""Settings of `mnmon serve`: a YAML file, overridden by command-line flags.

    web:
      listen_address: ":7668"      # [host]:port; ":port" is every address, "[::1]:port" IPv6
      telemetry_path: /metrics
      config_file: web.yaml        # exporter-toolkit TLS / basic-auth file, optional
    probes:
      strict: false                # a probe that cannot attach is fatal
      disable: [oom_reaper]        # probe names to leave unattached
      callbacks: auto              # auto | kprobe: how notifier callbacks are probed (see below)
      lean: false                  # the lean configuration (see below)
      latency: sampled             # sampled | always | off | full (see below)
    discovery:
      interval: 5s                 # Prometheus-style duration
    watchdog: auto                 # true | false | auto (ping when systemd set WATCHDOG_USEC)

probes.callbacks: auto probes a notifier's callbacks by fentry/fexit where its module
has BTF (cheaper per call), which holds that module loaded while mnmon runs (`rmmod`
refused), and by kprobe elsewhere; kprobe never holds a module.

probes.lean: one fexit on __mmu_notifier_invalidate_range_start and nothing else on the
invalidation path (the cheapest way to leave mnmon on everywhere). It keeps the core
counts, each notifier's non-blockable calls and outcomes, and who blocked the OOM
reaper; it drops latency, counts by event, ends, and each notifier's blockable calls.

probes.latency: sampled (the default) is the counts configuration, an fexit on the core
start and an fentry on its end that count every notifier's calls in both modes with every
result, the ends and the reaper's figures, plus the notifier callbacks' timing probes
attached in windows (5 s, or one discovery interval if longer, and at most a twelfth of
the time; mnmon_latency_sampled_ratio):
latency histograms as a sample, counts exact. always is the same with the timing probes
attached all the time (every call timed: two more program runs per callback call); off is
the counts configuration with no timing at all; full is every probe (five BPF program runs
per one-page invalidation): the core start timed too, and each callback's outcome from its
own probe, which names the one of several overlapping interval notifiers that failed.
Where counts cannot run (no fentry on the start, or no walk of subscriptions), sampled
and always run every probe, as full does.

Every error is a ConfigError whose message starts with where the value came from
(the file, or the flag) and the key path: "config.yaml: web.listen_address: port
70000 out of range". Nothing here prints or exits.
"""
import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Callable, Optional

from monitor.settings import yamlfile
from monitor.settings.yamlfile import ConfigError, short

DEFAULT_PATH = "/etc/mnmon/config.yaml"

# Prometheus' default-port allocations wiki hands out 9090-9099 to its own
# components and 9100-9999 to exporters, and that range is full. 7668 is below
# it, unassigned in IANA's service-name and port registry (checked against the
# 2024 registry), and not the default of any widely deployed server we know of
# (unlike 7070 Parca, 7199 Cassandra, 7474 Neo4j, 7946 memberlist, 8080...).
# Mnemonic: S-M-M-U on a phone keypad.
DEFAULT_PORT = 7668
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"


@dataclass(frozen=True)
class Setting:
    """One row of SETTINGS: where a setting is spelled, how its value is checked, and
    what `mnmon serve --help` says of it."""
    key: str          # key path in the file: "web.listen_address"
    flag: str         # the `mnmon serve` flag: "--web.listen-address"
    field: str        # the Settings field it sets
    parse: Callable   # value -> field value; ValueError with the reason
    help: str = ""
    metavar: str = ""  # "" with a yes/no flag: --strict/--no-strict

    @property
    def keyword(self):
        """The flag's Python name, as with_overrides() takes it: "web_listen_address"."""
        return self.key.replace(".", "_")


def _path(value):
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{short(value)} is not a path starting with \"/\"")
    return value


def _file_name(value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"{short(value)} is not a file name")
    return value


def _bool(value):
    if not isinstance(value, bool):
        raise ValueError(f"{short(value)} is not true or false")
    return value


def _names(value):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{short(value)} is not a list of probe names")
    return tuple(value)


def _latency(value):
    if value is False:      # YAML 1.1 reads a bare `off` as false
        return "off"
    if value not in ("sampled", "always", "off", "full"):
        raise ValueError(f"{short(value)} is not sampled, always, off or full")
    return value


def _callbacks(value):
    if value not in ("auto", "kprobe"):
        raise ValueError(f"{short(value)} is not auto or kprobe")
    return value


# The longest interval serve's timers take: select() refuses timeouts past ~2**31 s and a
# "300y" made the daemon exit after attaching. A day is longer than anyone needs here.
MAX_INTERVAL = 86400.0


def _interval(value):
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    if seconds > MAX_INTERVAL:
        raise ValueError(f"{short(value)} is longer than {format_duration(MAX_INTERVAL)}")
    return seconds


def _watchdog(value):
    if value in ("auto", None):
        return None
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise ValueError(f"{short(value)} is not true, false or auto")
    return value


# Every setting, once: a new one is a row here; `mnmon serve` makes its flags from these.
SETTINGS = (
    Setting("web.listen_address", "--web.listen-address", "listen_address", lambda v: _listen(v),
            "Where to listen (default :7668).", "[HOST]:PORT"),
    Setting("web.telemetry_path", "--web.telemetry-path", "telemetry_path", _path,
            "Metrics path (default /metrics).", "PATH"),
    Setting("web.config_file", "--web.config.file", "web_config_file", _file_name,
            "TLS and basic auth, in the Prometheus exporter-toolkit layout.", "FILE"),
    Setting("probes.strict", "--strict", "strict", _bool,
            "Exit non-zero if any probe cannot attach (default: degrade and report)."),
    Setting("probes.disable", "--probes.disable", "disable", _names,
            "Comma-separated probes not to attach.", "NAMES"),
    Setting("probes.callbacks", "--probes.callbacks", "callbacks", _callbacks,
            "How notifier callbacks are probed: auto (fentry where the module has BTF, which "
            "keeps the module loaded while attached; else kprobe) or kprobe.", "auto|kprobe"),
    Setting("probes.lean", "--probes.lean", "lean", _bool,
            "The lean configuration: one fexit per invalidation; keeps core counts, non-blockable "
            "outcomes per notifier and the reaper's blockers; drops latency, ends and blockable "
            "per-notifier counts."),
    Setting("probes.latency", "--probes.latency", "latency", _latency,
            "sampled (default): every count from two programs per invalidation, callbacks timed in "
            "windows (a twelfth of the time); always: the same, every call timed; off: counts, no "
            "latency histograms; full: every probe, the core start timed too and each callback's "
            "outcome from its own probe.", "sampled|always|off|full"),
    Setting("discovery.interval", "--discovery.interval", "discovery_interval", _interval,
            "How often to look for new notifier callbacks (default 5s).", "DURATION"),
    Setting("watchdog", "--watchdog", "watchdog", _watchdog,
            "Ping systemd's watchdog (default: when it asks)."),
)
# Override keyword (web_listen_address, probes_strict...) -> row.
FLAGS = {row.keyword: row for row in SETTINGS}
_BY_KEY = {row.key: row for row in SETTINGS}


def _schema():
    """{"web": {"listen_address": None, ...}, "watchdog": None}: the file's key tree."""
    tree = {}
    for row in SETTINGS:
        *parents, leaf = row.key.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = None
    return tree


_SCHEMA = _schema()


@dataclass(frozen=True)
class Settings:
    """Validated settings. `source` and `flags` let a SIGHUP re-read the same file
    and re-apply the same flags (see reload())."""
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    telemetry_path: str = "/metrics"
    web_config_file: Optional[str] = None
    strict: bool = False
    disable: tuple = ()
    callbacks: str = "auto"
    lean: bool = False
    latency: str = "sampled"
    discovery_interval: float = 5.0
    watchdog: Optional[bool] = None          # None: auto, from WATCHDOG_USEC
    source: Optional[str] = None             # the file these came from, if any
    flags: tuple = ()                        # ((keyword, value), ...) applied on top

    @property
    def listen(self):
        """(host, port) of listen_address; ValueError if it is not one."""
        addr = self.listen_address
        if not isinstance(addr, ListenAddress):
            addr = ListenAddress(addr)
        return addr.host, addr.port

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
            row = FLAGS[kw]
            if kw == "web_config_file" and isinstance(value, str) and value:
                value = os.path.abspath(value)
            if kw == "probes_disable" and isinstance(value, str):    # "--probes.disable a,b"
                value = [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, list):
                value = tuple(value)
            changes.update(_validate(row.key, value, row.flag))
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
            "web": {"listen_address": str(self.listen_address), "telemetry_path": self.telemetry_path,
                    "config_file": self.web_config_file},
            "probes": {"strict": self.strict, "disable": list(self.disable), "callbacks": self.callbacks,
                       "lean": self.lean, "latency": self.latency},
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
        raise ValueError(f"duration {short(text)} needs a unit, e.g. \"{short(text)}s\"")
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {short(text)}")
    if text == "0":
        return 0.0
    m = _DURATION.match(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"invalid duration {short(text)} (use e.g. 500ms, 10s, 1m, 1h30m)")
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


class ListenAddress(str):
    """A listen address as given ("127.0.0.1:7668"), parsed once: .host, .port."""

    def __new__(cls, text):
        host, port = parse_listen_address(text)
        self = super().__new__(cls, text)
        self.host, self.port = host, port
        return self


def _listen(value):
    return ListenAddress(value)


def parse_listen_address(text):
    """(host, port) of "host:port", "[v6]:port" or ":port" (host "" = every address).

    Raises ValueError with the reason.
    """
    if not isinstance(text, str):
        raise ValueError(f"{short(text)} is not a \"host:port\" string")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{short(text)}: expected \"[ipv6]:port\"")
        port = rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            # The example is quoted like the value: a newline or escape in it must not
            # break the one-line error.
            raise ValueError(f"{short(text)}: missing port, e.g. {short(f'{text[:40]}:{DEFAULT_PORT}')}")
        if ":" in host:
            raise ValueError(f"{short(text)}: an IPv6 address needs brackets, e.g. \"[::1]:{DEFAULT_PORT}\"")
    if not port.isdigit():
        raise ValueError(f"port {short(port)} is not a number")
    if int(port) > 65535:
        raise ValueError(f"port {int(port)} out of range")
    return host, int(port)


def _validate(keypath, value, where):
    """{Settings field: value} for one key; ConfigError names `where` and the key."""
    row = _BY_KEY.get(keypath)
    try:
        if row is None:
            raise ValueError("unknown key")
        return {row.field: row.parse(value)}
    except ValueError as e:
        raise ConfigError(f"{where}: {e}" if where.startswith("--") else f"{where}: {keypath}: {e}") from None


def _walk(data, schema, prefix, where):
    """Yield (key path, value) of a parsed mapping, rejecting keys not in schema."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix or 'top level'}: expected a mapping, got {type(data).__name__}")
    for key, value in data.items():
        path = f"{prefix}.{yamlfile.key_name(key)}" if prefix else yamlfile.key_name(key)
        if not isinstance(key, str) or key not in schema:
            raise ConfigError(f"{where}: {path}: unknown key (known: {', '.join(schema)})")
        if value is None:              # "key:" with nothing after it keeps the default
            continue
        if schema[key] is None:
            yield path, value
        else:
            yield from _walk(value, schema[key], path, where)


def parse(text, where="config", base_dir=None):
    """Settings from YAML text; `where` starts every error message, `base_dir`
    anchors a relative web.config_file (the config file's directory)."""
    data = yamlfile.parse_text(text, where)
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
    text = yamlfile.read_text(path)
    settings = parse(text, where=path, base_dir=os.path.dirname(os.path.abspath(path)))
    return dataclasses.replace(settings, source=os.path.abspath(path))


def check(path, known_probes):
    """What `mnmon config check FILE` runs: the settings file, then validate().

    Returns the Settings; raises ConfigError, or WebConfigError (a ConfigError).
    """
    settings = load(path)
    validate(settings, known_probes)
    return settings


def validate(settings, known_probes):
    """Everything a start, a reload and `config check` check beyond the file's own
    syntax, in one place so the three can never disagree: the probe names
    probes.disable names (against `known_probes`), then the web configuration file
    (certificates and keys are opened and loaded). Raises ConfigError."""
    check_probe_names(settings, known_probes)
    if settings.web_config_file:
        from monitor.web import webconfig    # noqa: PLC0415 -- only serving needs TLS
        webconfig.load(settings.web_config_file).ssl_context()


def check_probe_names(settings, known):
    """Raise ConfigError if probes.disable names a probe not in `known`: a typo must
    not leave a user believing a probe is off while it runs.

    The probe list belongs to the BPF side, so the CLI passes it in. The error names
    the flag when the flag set the list, else the file.
    """
    unknown = sorted(set(settings.disable) - set(known))
    if not unknown:
        return
    if "probes_disable" in dict(settings.flags):
        where = FLAGS["probes_disable"].flag
    else:
        where = f"{settings.source or 'config'}: probes.disable"
    raise ConfigError(f"{where}: unknown probe {', '.join(short(u) for u in unknown[:3])}"
                      f"{' ...' if len(unknown) > 3 else ''} (known: {', '.join(sorted(known))})")
