"""deploy/kubernetes/: the manifests against the Kubernetes API schemas and against each other.

kubernetes-validate bundles the API's JSON schemas, so this runs offline; the
ServiceMonitor (a CRD it does not know) is checked against the fields of
monitoring.coreos.com/v1 this repository uses, written out below.
"""
import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from monitor.settings import config

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"        # API schemas of this release (the package bundles many)

_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {"type": "string", "pattern": r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                         r"(([0-9]+)s)?(([0-9]+)ms)?$"}
# The ServiceMonitor fields used here, as the prometheus-operator CRD defines them.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                                    "labels": _LABELS},
                     "additionalProperties": False},
        "spec": {
            "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {"type": "object", "properties": {"matchLabels": _LABELS},
                             "additionalProperties": False},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "relabelings": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False,
                            "properties": {
                                "sourceLabels": {"type": "array",
                                                 "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}},
                                "targetLabel": {"type": "string"},
                                "regex": {"type": "string"},
                                "replacement": {"type": "string"},
                                "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop",
                                                    "labelmap", "LabelMap", "labeldrop", "LabelDrop",
                                                    "labelkeep", "LabelKeep"]},
                            }}},
                    }}},
            }},
    },
}


def manifest(name):
    [doc] = list(yaml.safe_load_all((KUBE / name).read_text()))
    return doc


def container():
    [c] = manifest("daemonset.yaml")["spec"]["template"]["spec"]["containers"]
    return c


@pytest.mark.parametrize("name", ["daemonset.yaml", "service.yaml"])
def test_manifest_matches_the_kubernetes_api_schema(name):
    kubernetes_validate.validate(manifest(name), KUBERNETES_VERSION, strict=True)


def test_the_api_schema_check_rejects_an_unknown_field():
    ds = manifest("daemonset.yaml")
    ds["spec"]["template"]["spec"]["hostPid"] = True        # not hostPID
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, KUBERNETES_VERSION, strict=True)


def test_service_monitor_matches_its_crd_fields():
    jsonschema.validate(manifest("servicemonitor.yaml"), SERVICE_MONITOR_SCHEMA)


@pytest.mark.parametrize("path,value", [
    (("spec", "endpoints", 0, "port"), 7668),               # the port's name, not its number
    (("spec", "endpoints", 0, "interval"), "15 seconds"),
    (("spec", "endpoints", 0, "intervall"), "15s"),
    (("apiVersion",), "monitoring.coreos.com/v1alpha1"),
])
def test_service_monitor_schema_rejects_mistakes(path, value):
    sm = copy.deepcopy(manifest("servicemonitor.yaml"))
    node = sm
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(sm, SERVICE_MONITOR_SCHEMA)


def test_selectors_and_ports_connect():
    ds, svc, sm = manifest("daemonset.yaml"), manifest("service.yaml"), manifest("servicemonitor.yaml")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert svc["spec"]["clusterIP"] == "None", "headless: every pod is scraped, none load-balanced"
    [svc_port] = svc["spec"]["ports"]
    [c_port] = container()["ports"]
    assert svc_port["targetPort"] == c_port["name"]
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [svc_port["name"]]
    # The operator's job label is the Service's name; MnmonExporterDown matches it.
    alerts = (ROOT / "deploy" / "prometheus" / "mnmon.alerts.yml").read_text()
    assert f'up{{job="{svc["metadata"]["name"]}"}}' in alerts


def test_probes_ask_health_and_readiness_on_the_metrics_port():
    c = container()
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    # /-/healthy answers while bcc compiles: no delay to guess, a slow node is not restarted.
    assert "initialDelaySeconds" not in c["livenessProbe"]


def test_the_port_is_mnmons_default_everywhere():
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    [job] = prom["scrape_configs"]
    assert job["job_name"] == "mnmon"
    ports = {int(t.rsplit(":", 1)[1]) for sc in job["static_configs"] for t in sc["targets"]}
    [c_port] = container()["ports"]
    [svc_port] = manifest("service.yaml")["spec"]["ports"]
    assert ports == {c_port["containerPort"]} == {svc_port["port"]} == {config.DEFAULT_PORT}


def test_runs_unprivileged_with_the_capabilities_bcc_needs():
    pod = manifest("daemonset.yaml")["spec"]["template"]["spec"]
    sc = container()["securityContext"]
    assert pod["hostPID"] is True
    assert sc["privileged"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == {"BPF", "PERFMON", "SYS_ADMIN", "SYS_RESOURCE", "SYSLOG"}


def test_host_paths_are_read_only_but_tracefs():
    pod = manifest("daemonset.yaml")["spec"]["template"]["spec"]
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert set(host.values()) == {"/sys/kernel/btf", "/lib/modules", "/usr/src", "/sys/kernel/debug",
                                  "/sys/kernel/tracing", "/sys/fs/bpf"}
    # bcc writes kretprobes with maxactive into kprobe_events, in one of these two.
    writable = {"/sys/kernel/debug", "/sys/kernel/tracing"}
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    for name, path in host.items():
        assert mounts[name]["mountPath"] == path, "mounted where bcc looks for it"
        assert mounts[name].get("readOnly", False) is (path not in writable), path
