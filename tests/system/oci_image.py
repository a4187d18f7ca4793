"""The container image (deploy/container/build-oci.sh) and how the DaemonSet runs it,
spelled as podman arguments so the guest runs it exactly as the manifest says."""
import hashlib
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.system import roots

LAYOUT = roots.REPO / "build" / "oci"
DAEMONSET = roots.REPO / "deploy" / "kubernetes" / "daemonset.yaml"
IN_GUEST = "/var/lib/mnmon-image/oci"


def version():
    from monitor import __version__
    return __version__


def ensure_built():
    """build/oci, rebuilt when the checkout changed since it was made; its size in bytes."""
    stamp = LAYOUT / "built-from"
    digest = _checkout_digest()
    if not (stamp.exists() and stamp.read_text() == digest):
        r = subprocess.run([str(roots.REPO / "deploy/container/build-oci.sh"), str(LAYOUT)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise roots.RootError(f"build-oci.sh failed: {r.stdout[-2000:]}")
        stamp.write_text(digest)
    return sum(p.stat().st_size for p in (LAYOUT / "blobs").rglob("*") if p.is_file())


def copy_into(root):
    ensure_built()
    dest = root / IN_GUEST.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(LAYOUT, dest, dirs_exist_ok=True)


def _checkout_digest():
    # The files the image's package is built from (make deb) and build-oci.sh's scripts; the
    # package holds none of tests/, bench/ or bed/, so an edit there does not rebuild it.
    files = subprocess.run(["git", "-C", str(roots.REPO), "ls-files", "-co", "--exclude-standard", "-z",
                            "--", ".", ":!tests", ":!bench", ":!bed"],
                           check=True, stdout=subprocess.PIPE).stdout.decode().split("\0")
    h = hashlib.sha256()
    for f in sorted(filter(None, files)):
        p = roots.REPO / f
        if p.is_file():
            h.update(f.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def podman_args(daemonset=None, drop_mounts=()):
    """`podman run` options for the DaemonSet's mnmon container, from the manifest itself.

    Pod-level: hostPID. Container: image, args, securityContext (privileged, runAsUser,
    readOnlyRootFilesystem, capabilities), memory limit, volumeMounts over hostPath and
    emptyDir volumes. Mounts named in drop_mounts are left out. The pod network is the
    node's here (podman's --network host): the test scrapes the node's port.
    """
    doc = yaml.safe_load(Path(daemonset or DAEMONSET).read_text())
    spec = doc["spec"]["template"]["spec"]
    (c,) = [c for c in spec["containers"] if c["name"] == "mnmon"]
    sc = c.get("securityContext", {})
    args = ["--network", "host"]
    if spec.get("hostPID"):
        args += ["--pid", "host"]
    if sc.get("privileged"):
        args.append("--privileged")
    if "runAsUser" in sc:
        args += ["--user", str(sc["runAsUser"])]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    caps = sc.get("capabilities", {})
    for cap in caps.get("drop", []):
        args += ["--cap-drop", cap]
    for cap in caps.get("add", []):
        args += ["--cap-add", cap]
    limit = c.get("resources", {}).get("limits", {}).get("memory")
    if limit:
        args += ["--memory", limit.replace("Mi", "m").replace("Gi", "g")]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        if m["name"] in drop_mounts:
            continue
        v = volumes[m["name"]]
        if "hostPath" in v:
            args += ["--volume", f"{v['hostPath']['path']}:{m['mountPath']}:{'ro' if m.get('readOnly') else 'rw'}"]
        elif "emptyDir" in v:
            args += ["--tmpfs", m["mountPath"]]
        else:
            raise ValueError(f"volume {m['name']}: only hostPath and emptyDir are understood")
    return args, c["image"], c.get("args", [])
