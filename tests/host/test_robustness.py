"""A bounded robustness run of `mnmon serve` on this host (degraded is fine), loopback only:
a connection flood and a burst, slow clients, SIGHUP and then SIGTERM under scrape load,
and fuzzing of both YAML files' parsers. Its figures are printed at the end of the run
(requests served, errors, RSS before/after, tracebacks in the log: must be 0).

Every loop is bounded in count and in time; the whole run takes well under a minute.
"""
import http.client
import os
import random
import resource
import signal
import socket
import subprocess
import threading
import time

import pytest
import yaml

from monitor.settings import config
from monitor.web import webconfig
from monitor.settings.yamlfile import ConfigError
from tests.support.mnmon_proc import MNMON, REPO, free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="attaching BPF needs root")

SEED_CONFIG = """\
web:
  listen_address: "127.0.0.1:{port}"
  telemetry_path: /metrics
probes:
  strict: false
  disable: [oom_reap_task_mm]
discovery:
  interval: 1s
watchdog: auto
"""
SEED_WEB = """\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  client_allowed_sans: [prometheus.example.org]
  min_version: TLS12
http_server_config:
  http2: true
  headers:
    X-Content-Type-Options: nosniff
basic_auth_users:
  prometheus: $2b$10$cgVrPUKhW8gfHJcLNo.HBuuMsvXnwP2rwQUehQxaAgoooAmTxbV.S
"""
FIGURES = {}


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Tally:
    """Outcomes of requests from many threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, outcome):
        with self.lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def get(self, outcome):
        return self.counts.get(outcome, 0)


def scrape_fresh(port, tally, timeout=10):
    """One GET /metrics on its own connection."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        resp.read()
        conn.close()
        tally.add(resp.status)
    except (OSError, http.client.HTTPException) as e:
        tally.add(type(e).__name__)


def scrape_loop(port, tally, stop, until):
    """Kept-alive scrapes until stop is set or the time is up; reconnects on a close."""
    conn = None
    while not stop.is_set() and time.monotonic() < until:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            resp.read()
            tally.add(resp.status)
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            tally.add("closed" if isinstance(e, (ConnectionError, http.client.RemoteDisconnected,
                                                 http.client.BadStatusLine)) else type(e).__name__)
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.01)
    if conn is not None:
        conn.close()


def run_threads(n, target, *args):
    threads = [threading.Thread(target=target, args=args) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a load thread hung"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))   # the slow clients
    tmp = tmp_path_factory.mktemp("robust")
    port = free_port()
    cfg = tmp / "config.yaml"
    cfg.write_text(SEED_CONFIG.format(port=port))
    log = tmp / "serve.log"
    # systemd's default soft limit, made hard: the slow clients below outnumber it.
    nofile = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))   # noqa: E731
    with open(log, "w") as out:
        proc = subprocess.Popen(MNMON + ["serve", "--config.file", str(cfg)], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=nofile)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        tally = Tally()
        scrape_fresh(port, tally, timeout=2)
        if tally.get(200):
            break
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("mnmon serve not ready in 120 s")
    FIGURES["rss_before_mb"] = rss_mb(proc.pid)
    yield proc, port, cfg, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_1_flood_and_burst(daemon):
    proc, port, _, _ = daemon
    flood = Tally()
    t0 = time.monotonic()
    run_threads(50, lambda: [scrape_fresh(port, flood) for _ in range(40)])
    FIGURES["flood"] = (flood.get(200), sum(flood.counts.values()) - flood.get(200), time.monotonic() - t0)
    burst = Tally()
    start = threading.Barrier(500)
    run_threads(500, lambda: (start.wait(30), scrape_fresh(port, burst)))
    FIGURES["burst"] = (burst.get(200), sum(burst.counts.values()) - burst.get(200))
    FIGURES["rss_after_burst_mb"] = rss_mb(proc.pid)
    assert flood.counts == {200: 2000}, flood.counts
    assert burst.counts == {200: 500}, burst.counts


def test_2_slow_clients_do_not_starve_scrapes(daemon):
    proc, port, _, _ = daemon
    slow = []
    try:
        for i in range(1000):                 # each sends half a request head, then nothing
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            slow.append(s)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        scrapes, worst = Tally(), 0.0
        for _ in range(20):
            t = time.monotonic()
            scrape_fresh(port, scrapes, timeout=5)
            worst = max(worst, time.monotonic() - t)
            time.sleep(0.1)
        cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    finally:
        for s in slow:
            s.close()
    FIGURES["slow"] = (len(slow), scrapes.get(200), worst, cpu)
    assert scrapes.counts == {200: 20}, scrapes.counts
    assert worst < 2.0
    assert cpu < 0.5, f"{cpu:.0%} of a core while slow clients wait: the accept loop spins"


def mutate(text, rng):
    """A random edit of a YAML text: characters changed, lines dropped or repeated, values swapped."""
    ops = rng.randrange(1, 6)
    lines = text.splitlines()
    for _ in range(ops):
        kind = rng.randrange(6)
        i = rng.randrange(len(lines)) if lines else 0
        if kind == 0 and lines:
            del lines[i]
        elif kind == 1 and lines:
            lines.insert(i, lines[i])
        elif kind == 2 and lines:
            line = lines[i]
            j = rng.randrange(len(line) + 1)
            lines[i] = line[:j] + rng.choice(":-[]{}&*!|>'\"#%@`, \t\x00\u00e9?\\0123456789abc") + line[j + 1:]
        elif kind == 3 and lines:
            key = lines[i].split(":")[0]
            value = rng.choice(["", "~", "[]", "{}", "[a, [b]]", "{a: 1}", "-1", "1e999", "0x10", "true",
                                "!!binary aGk=", "!!python/object:os.system x", "&a x", "*a", "'" + "x" * 5000 + "'",
                                "2001-01-01", ".inf", "? [a]", "\"\\u0000\""])
            lines[i] = f"{key}: {value}"
        elif kind == 4:
            lines.insert(i, rng.choice(["---", "...", "%YAML 1.1", "- x", "? a", "a: &x [1]", "b: *x",
                                        "  " * rng.randrange(1, 30) + "k: v"]))
        else:
            lines = [rng.choice(lines) for _ in lines] if lines else lines
    return "\n".join(lines) + rng.choice(["\n", ""])


def random_value(rng, depth=0):
    kinds = [lambda: rng.choice([None, True, False, 0, -1, 2 ** 70, 1.5, "", "x", ":7668", "/m", "5s", "TLS13"])]
    if depth < 3:
        kinds += [lambda: [random_value(rng, depth + 1) for _ in range(rng.randrange(3))],
                  lambda: {rng.choice(["web", "probes", "tls_server_config", "cert_file", "headers", 1, "x"]):
                           random_value(rng, depth + 1) for _ in range(rng.randrange(3))}]
    return rng.choice(kinds)()


def test_3_config_fuzzing_raises_only_one_line_errors(tmp_path):
    rng = random.Random(14)
    cases = errors = 0
    seeds = {"config": SEED_CONFIG.format(port=7668), "web": SEED_WEB}
    t0 = time.monotonic()
    for i in range(4000):
        which = "config" if i % 2 else "web"
        if i % 4 < 2:
            text = mutate(seeds[which], rng)
        else:
            text = yaml.safe_dump(random_value(rng)) if i % 8 < 4 else yaml.safe_dump(
                {"web": random_value(rng), "probes": random_value(rng)} if which == "config" else
                {"tls_server_config": random_value(rng), "basic_auth_users": random_value(rng),
                 "http_server_config": random_value(rng)})
        path = tmp_path / f"{which}.yaml"
        path.write_text(text, errors="surrogatepass")
        cases += 1
        try:
            if which == "config":
                config.load(path)
            else:
                webconfig.load(path).ssl_context()
        except ConfigError as e:
            errors += 1
            msg = str(e)
            assert "\n" not in msg and len(msg) < 400, (text, msg)
        except Exception as e:  # noqa: BLE001 -- the finding this test exists for
            pytest.fail(f"{which} parser raised {type(e).__name__}: {e} on:\n{text[:500]}")
    FIGURES["fuzz"] = (cases, errors, time.monotonic() - t0)


def test_4_sighup_under_load(daemon):
    proc, port, cfg, _ = daemon
    good = cfg.read_text()
    rng = random.Random(4)
    tally, stop = Tally(), threading.Event()
    until = time.monotonic() + 30
    threads = [threading.Thread(target=scrape_loop, args=(port, tally, stop, until)) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            # Every other reload is a broken file: it must be refused, and serving go on.
            cfg.write_text(good if i % 2 else mutate(good, rng))
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.2)
        cfg.write_text(good)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    FIGURES["sighup"] = (21, tally.get(200), sum(tally.counts.values()) - tally.get(200))
    assert proc.poll() is None
    assert set(tally.counts) == {200}, tally.counts


def test_5_sigterm_under_load(daemon):
    proc, port, _, log = daemon
    FIGURES["rss_after_mb"] = rss_mb(proc.pid)
    tally, stop = Tally(), threading.Event()
    until = time.monotonic() + 30
    threads = [threading.Thread(target=scrape_loop, args=(port, tally, stop, until)) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(30)
    stop.set()
    for t in threads:
        t.join(30)
    text = log.read_text()
    FIGURES["sigterm"] = (tally.get(200), {k: v for k, v in tally.counts.items() if k != 200}, rc)
    FIGURES["log"] = (text.count("Traceback"), sum(" error: " in l for l in text.splitlines()),
                      len(text.splitlines()))
    assert rc == 0, text[-2000:]
    # After the stop, clients see a closed connection or a refused one: never a 5xx or a
    # reply cut short.
    assert set(tally.counts) <= {200, "closed"}, tally.counts
    assert "Traceback" not in text and "Exception" not in text, text[-3000:]


def test_6_report():
    """The run's figures (printed in the terminal summary, see conftest.py)."""
    assert FIGURES.get("log", (1,))[0] == 0
    if "rss_after_mb" in FIGURES:
        assert FIGURES["rss_after_mb"] < 150, FIGURES


def summary():
    f = FIGURES
    out = ["robustness run (mnmon serve on loopback):"]
    if "flood" in f:
        ok, bad, secs = f["flood"]
        out.append(f"  flood: {ok} requests served, {bad} errors, {ok / secs:.0f} req/s (50 clients, new connection each)")
    if "burst" in f:
        out.append(f"  burst: {f['burst'][0]} of 500 concurrent requests served, {f['burst'][1]} errors")
    if "slow" in f:
        n, ok, worst, cpu = f["slow"]
        out.append(f"  slow clients: {n} held half-sent heads; {ok}/20 scrapes served, slowest {worst * 1000:.0f} ms; "
                   f"daemon CPU {cpu:.0%} of a core meanwhile")
    if "fuzz" in f:
        out.append(f"  config fuzzing: {f['fuzz'][0]} files, {f['fuzz'][1]} one-line errors, 0 other exceptions "
                   f"({f['fuzz'][2]:.1f} s)")
    if "sighup" in f:
        out.append(f"  SIGHUP x{f['sighup'][0]} under 8 scraping clients (half of the files broken): "
                   f"{f['sighup'][1]} requests served, {f['sighup'][2]} errors")
    if "sigterm" in f:
        out.append(f"  SIGTERM under 8 scraping clients: {f['sigterm'][0]} served, then {f['sigterm'][1] or 'nothing else'}; "
                   f"exit {f['sigterm'][2]}")
    if "rss_before_mb" in f:
        out.append(f"  RSS: {f['rss_before_mb']:.0f} MB before, {f.get('rss_after_burst_mb', 0):.0f} MB after the burst, "
                   f"{f.get('rss_after_mb', 0):.0f} MB at the end")
    if "log" in f:
        out.append(f"  log: {f['log'][2]} lines, {f['log'][1]} errors, {f['log'][0]} tracebacks")
    if "auth_flood" in f:          # tests/host/test_hostile.py
        a = f["auth_flood"]
        out.append(f"  wrong-password flood (520 held + 40 clients, bcrypt cost 10): {a['valid']}/{a['of']} valid "
                   f"scrapes served, p99 {a['p99'] * 1000:.0f} ms (quiet: {a['quiet_p99'] * 1000:.0f} ms); "
                   f"flood answers {a['flood']}")
        other, same = a["first_other"], a["first_same"]
        out.append(f"  first good login during the flood: {other[0]} in {other[1] * 1000:.0f} ms from another "
                   f"address; from the flood's own, {same[2]}/10 tries served, each answered within "
                   f"{same[1] * 1000:.0f} ms; "
                   f"RSS {a['rss'][0]:.0f} MB before, {a['rss'][1]:.0f} MB after")
    if "reload_storm" in f:
        r = f["reload_storm"]
        out.append(f"  reload storm (special files, weaker TLS/auth, typos, 300y): {r['refused']}/{r['reloads']} "
                   f"refused in one line each; scrapes meanwhile {r['scrapes']}")
    for key, what in (("tls_defaults", "TLS 1.2 without cipher_suites"),     # tests/host/test_tls_negotiation.py
                      ("tls_go_named", "after a reload to Go-named cipher_suites and CurveP384")):
        if key in f:
            out.append(f"  {what}: " + ", ".join(f"{k} {v}" for k, v in f[key].items()))
    if "readonly_run" in f:
        out.append(f"  read-only run directory: served, exit {f['readonly_run'][0]}, {f['readonly_run'][1]} warning")
    if "atheris" in f:
        out.append(f"  coverage-guided fuzzing (atheris), no invariant broken: {'; '.join(f['atheris'])}")
    if "forged_comm" in f:
        out.append(f"  OOM victim with a forged comm, as watch printed it: {f['forged_comm']}")
    return out
