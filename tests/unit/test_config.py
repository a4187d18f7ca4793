"""Settings of `mnmon serve`: durations, listen addresses, the YAML file, flags."""
import os

import pytest
import yaml

from monitor.settings import config
from monitor.settings.config import ConfigError, Settings, parse, parse_duration, parse_listen_address


@pytest.mark.parametrize("text, seconds", [
    ("0", 0.0),
    ("500ms", 0.5),
    ("10s", 10.0),
    ("1m", 60.0),
    ("1h", 3600.0),
    ("1h30m", 5400.0),
    ("2d", 172800.0),
    ("1w", 604800.0),
    ("1y", 365 * 86400.0),
    ("1m1s1ms", 61.001),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, reason", [
    ("", "invalid duration"),
    ("5", "invalid duration"),
    (5, "needs a unit"),
    ("1.5s", "invalid duration"),
    ("-1s", "invalid duration"),
    ("1s1m", "invalid duration"),        # units largest first, as Prometheus wants
    ("10 s", "invalid duration"),
    ("1x", "invalid duration"),
    (None, "invalid duration"),
])
def test_parse_duration_rejects(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_duration(text)


@pytest.mark.parametrize("seconds, text", [(0.5, "500ms"), (5.0, "5s"), (5400.0, "1h30m"), (0.0, "0s")])
def test_format_duration_round_trips(seconds, text):
    assert config.format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, want", [
    (":7668", ("", 7668)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("[::1]:9", ("::1", 9)),
    ("[::]:80", ("::", 80)),
    ("localhost:65535", ("localhost", 65535)),
])
def test_parse_listen_address(text, want):
    assert parse_listen_address(text) == want


@pytest.mark.parametrize("text, reason", [
    ("127.0.0.1", "missing port"),
    ("127.0.0.1:70000", "port 70000 out of range"),
    ("::1:80", "needs brackets"),
    ("[::1]80", "expected"),
    ("host:http", "not a number"),
    (":-1", "not a number"),
    (7668, "not a"),
])
def test_parse_listen_address_rejects(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_listen_address(text)


def test_missing_port_error_stays_one_line():
    # Found by fuzzing: the example address used to repeat the value's newlines raw.
    with pytest.raises(ValueError) as e:
        parse_listen_address("127.0\n\n\x1b[2J.0.1")
    assert "missing port" in str(e.value)
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


def test_defaults():
    s = Settings()
    assert s.listen_address == ":7668"
    assert config.DEFAULT_PORT not in range(9090, 10000)    # Prometheus' allocated range
    assert (s.telemetry_path, s.strict, s.disable, s.discovery_interval, s.watchdog) == \
        ("/metrics", False, (), 5.0, None)


FULL = """\
web:
  listen_address: "[::1]:7000"
  telemetry_path: /m
  config_file: web.yaml
probes:
  strict: true
  disable: [oom_reaper, notifiers]
discovery:
  interval: 1m30s
watchdog: false
"""


def test_parse_full_file():
    s = parse(FULL, "c.yaml", base_dir="/etc/mnmon")
    assert s.listen_address == "[::1]:7000"
    assert s.telemetry_path == "/m"
    assert s.web_config_file == "/etc/mnmon/web.yaml"       # relative to the config file
    assert s.strict is True
    assert s.disable == ("oom_reaper", "notifiers")
    assert s.discovery_interval == 90.0
    assert s.watchdog is False


@pytest.mark.parametrize("text, settings", [
    ("", Settings()),
    ("# only a comment\n", Settings()),
    ("web:\n", Settings()),
    ("watchdog: auto\n", Settings(watchdog=None)),
    ("watchdog: true\n", Settings(watchdog=True)),
    ("probes:\n  disable: []\n", Settings()),
    ("probes:\n  callbacks: kprobe\n", Settings(callbacks="kprobe")),
    ("probes:\n  callbacks: auto\n  lean: true\n", Settings(lean=True)),
    ("probes:\n  latency: off\n", Settings(latency="off")),
])
def test_parse_partial_files_keep_defaults(text, settings):
    assert parse(text, "c.yaml") == settings


@pytest.mark.parametrize("text, message", [
    ("web:\n  listen_address: \":70000\"\n", "config.yaml: web.listen_address: port 70000 out of range"),
    ("web:\n  listen_address: 7668\n", "config.yaml: web.listen_address: 7668 is not a"),
    ("probes:\n  strtc: true\n", "config.yaml: probes.strtc: unknown key"),
    ("webb: {}\n", "config.yaml: webb: unknown key"),
    ("probes:\n  strict: maybe\n", "config.yaml: probes.strict: 'maybe' is not true or false"),
    ("probes:\n  disable: oom\n", "config.yaml: probes.disable: 'oom' is not a list"),
    ("probes:\n  callbacks: fentry\n", "config.yaml: probes.callbacks: 'fentry' is not auto or kprobe"),
    ("probes:\n  lean: yes please\n", "config.yaml: probes.lean: 'yes please' is not true or false"),
    ("probes:\n  latency: sometimes\n", "config.yaml: probes.latency: 'sometimes' is not sampled, always, off or full"),
    ("probes:\n  disable: [1]\n", "config.yaml: probes.disable: [1] is not a list"),
    ("discovery:\n  interval: 5\n", "config.yaml: discovery.interval: duration 5 needs a unit"),
    ("discovery:\n  interval: 5 seconds\n", "config.yaml: discovery.interval: invalid duration"),
    ("discovery:\n  interval: \"0\"\n", "config.yaml: discovery.interval: must be longer than 0s"),
    ("web:\n  telemetry_path: metrics\n", "config.yaml: web.telemetry_path: 'metrics' is not a path"),
    ("watchdog: sometimes\n", "config.yaml: watchdog: 'sometimes' is not true, false or auto"),
    ("web: [a, b]\n", "config.yaml: web: expected a mapping"),
    ("- a\n", "config.yaml: top level: expected a mapping"),
    ("web:\n  listen_address: ':1'\n  listen_address: ':2'\n", "config.yaml: line 3, column 3: duplicate key"),
    ("web:\n  listen_address: :1\n bad: x\n", "config.yaml: line 3, column 2:"),
    ("web: {listen_address: ':1'\n", "config.yaml: line 2, column 1:"),
    ("web:\n\tlisten_address: x\n", "config.yaml: line 2, column 1:"),
])
def test_parse_errors_name_the_file_and_key(text, message):
    with pytest.raises(ConfigError) as e:
        parse(text, "config.yaml")
    assert str(e.value).startswith(message)


def test_load_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(FULL)
    s = config.load(path)
    assert s.source == str(path)
    assert s.web_config_file == str(tmp_path / "web.yaml")
    assert s.discovery_interval == 90.0


def test_load_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file or directory"):
        config.load(tmp_path / "nope.yaml")


def test_load_without_path_uses_the_default_file_only_if_present(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "DEFAULT_PATH", str(tmp_path / "absent.yaml"))
    assert config.load() == Settings()
    present = tmp_path / "present.yaml"
    present.write_text("probes:\n  strict: true\n")
    monkeypatch.setattr(config, "DEFAULT_PATH", str(present))
    assert config.load().strict is True


def test_flags_override_the_file():
    s = parse(FULL, "c.yaml").with_overrides(
        web_listen_address="127.0.0.1:1", probes_strict=False, probes_disable="a, b",
        discovery_interval="2s", watchdog="auto", web_telemetry_path=None)
    assert s.listen_address == "127.0.0.1:1"
    assert s.strict is False
    assert s.disable == ("a", "b")
    assert s.discovery_interval == 2.0
    assert s.watchdog is None
    assert s.telemetry_path == "/m"                 # None means the flag was not given


def test_flag_relative_web_config_is_relative_to_the_working_directory():
    s = Settings().with_overrides(web_config_file="web.yaml")
    assert s.web_config_file == os.path.join(os.getcwd(), "web.yaml")


@pytest.mark.parametrize("flags, message", [
    ({"web_listen_address": ":70000"}, "--web.listen-address: port 70000 out of range"),
    ({"discovery_interval": "soon"}, "--discovery.interval: invalid duration"),
    ({"probes_strict": "yes"}, "--strict: 'yes' is not true or false"),
    ({"listen": ":1"}, "listen: unknown setting"),
])
def test_flag_errors_name_the_flag(flags, message):
    with pytest.raises(ConfigError) as e:
        Settings().with_overrides(**flags)
    assert str(e.value).startswith(message)


def test_reload_rereads_the_file_and_keeps_the_flags(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("web:\n  telemetry_path: /one\n  listen_address: ':1'\n")
    s = config.load(path).with_overrides(web_listen_address="127.0.0.1:2")
    path.write_text("web:\n  telemetry_path: /two\n  listen_address: ':3'\n")
    again = s.reload()
    assert again.telemetry_path == "/two"
    assert again.listen_address == "127.0.0.1:2"
    path.write_text("web: [\n")
    with pytest.raises(ConfigError, match="config.yaml: line"):
        s.reload()


def test_describe_is_what_the_file_would_say():
    s = parse(FULL, "c.yaml", base_dir="/etc/mnmon")
    assert parse(yaml.safe_dump(s.describe()), "again.yaml") == s


def test_check_validates_the_web_config_too(tmp_path):
    (tmp_path / "web.yaml").write_text("tls_server_config:\n  cert_file: none.crt\n  key_file: none.key\n")
    path = tmp_path / "config.yaml"
    path.write_text("web:\n  config_file: web.yaml\n")
    with pytest.raises(ConfigError, match=r"web\.yaml: tls_server_config\.cert_file: .*none\.crt: no such file"):
        config.check(path, known_probes=())
    path.write_text("probes:\n  strict: true\n")
    assert config.check(path, known_probes=()).strict is True


def test_check_probe_names():
    config.check_probe_names(Settings(disable=("a",)), known=("a", "b"))
    with pytest.raises(ConfigError, match=r"probes.disable: unknown probe 'c' \(known: a, b\)"):
        config.check_probe_names(Settings(disable=("a", "c")), known=("a", "b"))


def test_flags_table_names_the_real_flags():
    """Every row's flag is an option of `mnmon serve`, spelled the same (issue: --config.strict vs --strict)."""
    from monitor.cli.commands import serve
    opts = {o for p in serve.params for o in p.opts}
    assert {row.flag for row in config.SETTINGS} <= opts
    assert set(config.FLAGS) <= {p.name for p in serve.params}


def test_probe_names_checked_for_file_and_flag(tmp_path):
    from monitor.cli.commands import known_probes
    path = tmp_path / "c.yaml"
    path.write_text("probes:\n  disable: [oom_reapr]\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: probes\.disable: unknown probe 'oom_reapr' \(known: .*oom_reaper_gave_up"):
        config.check(path, known_probes())
    s = Settings().with_overrides(probes_disable="oom_reapr")
    with pytest.raises(ConfigError, match=r"^--probes\.disable: unknown probe 'oom_reapr'"):
        config.check_probe_names(s, known_probes())
    config.check_probe_names(Settings().with_overrides(probes_disable="oom:mark_victim"), known_probes())


def test_listen_address_is_parsed_once():
    s = parse("web:\n  listen_address: '[::1]:7000'\n", "c.yaml")
    assert isinstance(s.listen_address, config.ListenAddress)
    assert s.listen == ("::1", 7000)
    assert Settings().listen == ("", config.DEFAULT_PORT)


LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "web:\n  listen_address: *i\n"


@pytest.mark.parametrize("text, message", [
    (LAUGHS, "line 2, column 8: aliases (*name) are not allowed"),
    ("web:\n  telemetry_path: " + "x" * 5000 + "\n", "web.telemetry_path: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."),
    ("[" * 20000 + "]" * 20000, "nested too deeply"),
    ("? [a]\n: b\n", "a key must be a plain value"),
    ("x" * 70000, "larger than 64 KiB"),
    ("a: !" + "x" * 3000 + " 1\n", "could not determine a constructor for the tag '!xxxxxxxx"),
])
def test_hostile_yaml_is_one_short_line(text, message):
    with pytest.raises(ConfigError) as e:
        parse(text, "c.yaml")
    assert message in str(e.value)
    assert len(str(e.value)) < 200 and "\n" not in str(e.value)


def test_only_small_regular_files_are_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    big.write_text("#" * (config.yamlfile.MAX_BYTES + 1))
    for path, message in [("/dev/zero", "not a regular file"), (fifo, "not a regular file"),
                          (big, "larger than 64 KiB"), (tmp_path, "is a directory")]:
        with pytest.raises(ConfigError, match=message):
            config.load(path)
