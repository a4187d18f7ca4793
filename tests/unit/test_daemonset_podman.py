"""The DaemonSet spelled as podman arguments (tests/system/oci_image.py): what the
system tier runs in the guest must be what the manifest says."""
from tests.system import oci_image


def test_podman_args_follow_the_manifest():
    args, image, cargs = oci_image.podman_args()
    assert image == f"mnmon:{oci_image.version()}"
    assert cargs == ["serve"]
    joined = " ".join(args)
    assert "--pid host" in joined and "--read-only" in joined and "--user 0" in joined
    assert "--cap-drop ALL" in joined and "--privileged" not in args
    for cap in ("BPF", "PERFMON", "SYSLOG"):
        assert f"--cap-add {cap}" in joined
    for mount in ("/lib/modules:/lib/modules:ro", "/usr/src:/usr/src:ro", "/sys/kernel/btf:/sys/kernel/btf:ro",
                  "/sys/kernel/debug:/sys/kernel/debug:rw", "/sys/kernel/tracing:/sys/kernel/tracing:rw"):
        assert f"--volume {mount}" in joined, mount
    assert "--tmpfs /tmp" in joined and "--memory 512m" in joined


def test_dropped_mounts_are_left_out():
    args, _, _ = oci_image.podman_args(drop_mounts=("modules", "usr-src"))
    joined = " ".join(args)
    assert "/lib/modules" not in joined and "/usr/src" not in joined
    assert "/sys/kernel/tracing" in joined
