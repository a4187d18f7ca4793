"""deploy/systemd: the unit verifies, keeps its hardening, and its recorded exposure
score is the one systemd-analyze computes; the example config is the defaults."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from monitor.settings import config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNIT = DEPLOY / "mnmon.service"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (Debian package: systemd)")


def directives(text):
    """{(section, key): [values in order]} of a unit file; repeated keys accumulate."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def unit():
    return directives(UNIT.read_text())


def one(unit, key, section="Service"):
    values = unit.get((section, key))
    assert values and len(values) == 1, f"{key}= should be set once, is {values}"
    return values[0]


def test_directives_parser():
    d = directives("[A]\n# c\nX=1\nX=2\n[B]\nY = z\n")
    assert d == {("A", "X"): ["1", "2"], ("B", "Y"): ["z"]}


def test_service_lifecycle(unit):
    assert one(unit, "Type") == "notify"
    assert one(unit, "ExecStart") == "/opt/mnmon/.venv/bin/mnmon serve"
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert config.parse_duration(one(unit, "WatchdogSec")) >= 10
    assert one(unit, "LimitMEMLOCK") == "infinity"
    from monitor.web import server
    assert int(one(unit, "LimitNOFILE")) >= 4 * server.MAX_CONNECTIONS + 1024   # connections + bcc
    assert one(unit, "WantedBy", "Install") == "multi-user.target"


@pytest.mark.parametrize("key, value", [
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("PrivateMounts", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("SystemCallArchitectures", "native"),
    ("UMask", "0077"),
])
def test_hardening(unit, key, value):
    assert one(unit, key) == value


def test_capabilities_are_what_bcc_needs_and_no_more(unit):
    # Debian's perf_event_paranoid=3 wants CAP_SYS_ADMIN for perf_event_open(), and with it
    # CAP_BPF and CAP_PERFMON add nothing (the unit says why; tests/system boots it).
    assert set(one(unit, "CapabilityBoundingSet").split()) == {"CAP_SYS_ADMIN", "CAP_SYSLOG"}
    assert ("Service", "AmbientCapabilities") not in unit        # root: the bounding set is enough


def test_system_calls_and_sockets(unit):
    filters = unit[("Service", "SystemCallFilter")]
    assert filters[0] == "@system-service"                     # an allow list...
    assert filters[-1].split() == ["bpf", "perf_event_open"]   # ...ending with BPF's two calls
    assert set(one(unit, "RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}


@pytest.mark.parametrize("key", ["ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                                 "ProcSubset", "ProtectProc", "MemoryDenyWriteExecute"])
def test_settings_that_would_break_bcc_stay_off(unit, key):
    # Each hides /proc/kallsyms or /usr/lib/modules, or forbids LLVM's code mapping;
    # the unit's comments say which. Turning one on needs a real-kernel test first.
    assert ("Service", key) not in unit


def _stub(tmp_path):
    """The unit with ExecStart on /bin/true, so verify does not need mnmon installed."""
    text = re.sub(r"(?m)^ExecStart=\S+", "ExecStart=/bin/true", UNIT.read_text())
    copy = tmp_path / "mnmon.service"
    copy.write_text(text)
    return copy


@needs_analyze
def test_systemd_analyze_verify(tmp_path):
    run = subprocess.run(["systemd-analyze", "verify", str(_stub(tmp_path))],
                         capture_output=True, text=True, timeout=60)
    # Unknown or misspelt keys are only warnings (exit 0), so the output must be empty too.
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


@needs_analyze
def test_recorded_exposure_score_is_current(tmp_path):
    run = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(_stub(tmp_path))],
                         capture_output=True, text=True, timeout=60)
    if run.returncode != 0 and "offline" in run.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd 250+)")
    assert run.returncode == 0, run.stderr
    computed = re.search(r"Overall exposure level for mnmon\.service: (\d+\.\d)", run.stdout).group(1)
    recorded = re.search(r"exposure (\d+\.\d)", UNIT.read_text()).group(1)
    assert computed == recorded


def test_example_config_shows_the_defaults():
    loaded = config.load(DEPLOY / "config.yaml")
    assert loaded.describe() == config.Settings().describe()


def test_the_run_directory_is_the_units_own(unit):
    # ProtectSystem=strict makes /run read-only: without it mnmon had nowhere to merge
    # headers on a host without its kernel's own (issue 26).
    assert one(unit, "RuntimeDirectory") == "mnmon"
