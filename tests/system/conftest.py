"""One booted Debian 12 host for all the guest tests of a run (boots are slow under TCG)."""
import os
import time

import pytest

from tests.system import host_image, roots


@pytest.fixture(scope="session")
def guest():
    if os.geteuid() != 0:
        pytest.skip("making a root and booting it need root")
    t0 = time.monotonic()
    root = roots.BUILD / "host-root"
    kver, _ = host_image.make_root(root, extra=_with_image)
    image = host_image.make_disk(root, roots.BUILD / "host.img")
    made = time.monotonic() - t0
    g = host_image.Guest(root, image, roots.BUILD / "host-console.log")
    try:
        g.wait_ssh()
        g.kver = kver
        print(f"\nhost root made in {made:.0f} s, ssh after {time.monotonic() - t0 - made:.0f} s")
        yield g
    finally:
        g.stop()


def _with_image(root):
    """The container image's OCI layout, for the podman tests inside the guest."""
    from tests.system import oci_image
    oci_image.copy_into(root)
