"""A real Prometheus (Debian's `prometheus` binary) on loopback, for tests.

It scrapes one target every second into a temporary data directory, loads the
given rule files, and answers PromQL through its HTTP API:

    with Prometheus("http://127.0.0.1:7668/metrics", workdir, rule_files) as prom:
        prom.wait_for_target()
        prom.query('sum(rate(mnmon_oom_victims_total[1m]))')   # the API's JSON
"""
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

JOB = "mnmon"


class PrometheusError(RuntimeError):
    """Prometheus did not start, or did not scrape its target, in time."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(target_url, rule_files=()):
    """The prometheus.yml that scrapes target_url (a /metrics URL) as job "mnmon"."""
    url = urllib.parse.urlsplit(target_url)
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": [{"job_name": JOB, "scheme": url.scheme, "metrics_path": url.path or "/metrics",
                            "static_configs": [{"targets": [url.netloc]}]}],
    }


class Prometheus:
    def __init__(self, target_url, workdir, rule_files=(), binary="prometheus"):
        self.binary = shutil.which(binary)
        if self.binary is None:
            raise PrometheusError(f"{binary}: not found (Debian package prometheus)")
        self.workdir = Path(workdir)
        self.cfg = config(target_url, rule_files)
        self.port = None
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout=30):
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(self.cfg))
        self.port = free_port()
        self.log = open(self.workdir / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={cfg}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._until(self._ready, timeout, "ready")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()

    def query(self, expr):
        """The API's answer to an instant query: {"status": "success"|"error", ...}."""
        return self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))

    def query_range(self, expr, start, end, step):
        """The API's answer to a range query (start/end: unix seconds)."""
        return self._get("/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": expr, "start": start, "end": end, "step": step}))

    def wait_for_target(self, timeout=30):
        """Until the one target has been scraped successfully."""
        def up():
            targets = self._get("/api/v1/targets")["data"]["activeTargets"]
            return targets and targets[0]["health"] == "up"
        self._until(up, timeout, "scraping its target")

    def wait_for(self, expr, timeout=30):
        """Until expr returns a non-empty result; returns that result."""
        result = []

        def has_data():
            result[:] = self.query(expr).get("data", {}).get("result", [])
            return bool(result)
        self._until(has_data, timeout, f"returning data for {expr}")
        return result

    def evaluated_rules(self, timeout=30):
        """The loaded rules ([{name, health, lastError...}]) once each has been evaluated."""
        def rules():
            return [r for g in self._get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        self._until(lambda: all(r["health"] != "unknown" for r in rules()), timeout, "done evaluating rules")
        return rules()

    def _ready(self):
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:           # refused while starting, or 503 until the TSDB is open
            return False

    def _get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())   # the API answers a bad query with 400 and a JSON error

    def _until(self, ok, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited ({self.proc.returncode}): {self._log_tail()}")
            if ok():
                return
            time.sleep(0.2)
        raise PrometheusError(f"prometheus: still not {what} after {timeout}s: {self._log_tail()}")

    def _log_tail(self):
        self.log.flush()
        return (self.workdir / "prometheus.log").read_text()[-2000:]
