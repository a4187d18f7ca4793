"""bed/lanes.py's schedule and bed/slots.py's guest slots (no guest booted)."""
import threading
import time

from bed import lanes, slots


def test_every_other_pinned_kernel_gets_a_leg_and_the_installed_one_its_tier():
    named = dict(lanes.stages("6.1.0-57-amd64", ["5.10.0-46-amd64", "6.1.0-57-amd64", "7.2.13+deb14-amd64"]))
    assert list(named) == ["kernel 6.1.0-57-amd64", "system", "host", "matrix 5.10.0-46-amd64:6.1.0-57-amd64",
                           "matrix 7.2.13+deb14-amd64"]
    assert named["kernel 6.1.0-57-amd64"][-3:-1] == ["test-kernel", "KVER=6.1.0-57-amd64"]
    assert named["host"][-1] == "test-host"
    assert named["matrix 7.2.13+deb14-amd64"][-2:] == ["--kernels", "7.2.13+deb14-amd64"]
    # 5.10 with only 6.1's headers in reach, as a host whose kernel Debian does not package
    assert named["matrix 5.10.0-46-amd64:6.1.0-57-amd64"][-2:] == ["--kernels", "5.10.0-46-amd64:6.1.0-57-amd64"]


def test_longest_first_by_the_last_run_else_by_kind():
    named = lanes.stages("6.1.0-57-amd64", ["5.10.0-46-amd64", "6.12.117+deb12-amd64", "7.2.13+deb14-amd64"])
    assert [n for n, _ in lanes.order(named, {})] == [
        "system", "kernel 6.1.0-57-amd64", "matrix 5.10.0-46-amd64:6.1.0-57-amd64", "matrix 7.2.13+deb14-amd64",
        "matrix 6.12.117+deb12-amd64:6.1.0-57-amd64", "host"]
    # A recorded time wins over the default.
    leg = "matrix 5.10.0-46-amd64:6.1.0-57-amd64"
    assert lanes.order(named, {leg: 5000})[0][0] == leg


def test_slots_let_as_many_guests_run_as_there_are_slots(monkeypatch, tmp_path):
    monkeypatch.setattr(slots, "LOCK", str(tmp_path / "lock"))
    monkeypatch.setenv("MNMON_BED_SLOTS", "2")
    inside, most = [], [0]
    guard = threading.Lock()

    def guest():
        with slots.slot(poll=0.01):
            with guard:
                inside.append(1)
                most[0] = max(most[0], len(inside))
            time.sleep(0.1)
            with guard:
                inside.pop()
    threads = [threading.Thread(target=guest) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most[0] == 2


def test_a_whole_machine_holder_waits_for_every_slot(monkeypatch, tmp_path):
    monkeypatch.setattr(slots, "LOCK", str(tmp_path / "lock"))
    monkeypatch.setenv("MNMON_BED_SLOTS", "2")
    order = []

    def bench():
        with slots.slot(whole_machine=True):
            order.append("bench")
    with slots.slot():
        t = threading.Thread(target=bench)
        t.start()
        time.sleep(0.2)
        order.append("guest done")
    t.join(5)
    assert order == ["guest done", "bench"]


def test_the_host_tier_starts_after_the_system_tier_ends(monkeypatch, tmp_path):
    monkeypatch.setattr(lanes, "OUT", tmp_path)
    done = []
    ended = {"system": threading.Event()}

    def host():
        lanes.run_stage("host", ["sh", "-c", "exit 0"], threading.Lock(), ended)
        done.append("host")
    t = threading.Thread(target=host)
    t.start()
    time.sleep(0.3)
    done.append("system")
    ended["system"].set()
    t.join(10)
    assert done == ["system", "host"]
