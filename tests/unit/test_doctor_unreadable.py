"""`doctor` as a user: what could not be read is said so, not guessed as "inlined" or
"kernel too old" (issue 26)."""
import dataclasses

from monitor.plan import attach_plan
from tests.unit.test_attach_plan import facts


def test_probes_say_could_not_read_where_kallsyms_and_tracefs_were_unreadable():
    f = dataclasses.replace(facts("6.1.0-57-amd64", btf=True, kfunc=False), symbols=frozenset(),
                            tracepoints=frozenset(), kallsyms_readable=False, tracefs_readable=False,
                            privileged=False)
    reasons = {p.probe: p.reason for p in attach_plan.plan(f).probes}
    assert reasons["invalidate_range_start"] == "could not read /proc/kallsyms (needs root or CAP_SYSLOG)"
    assert reasons["oom:mark_victim"] == "could not read tracefs (root's)"
    assert not [r for r in reasons.values() if "inlined" in r or "too old" in r], reasons


def test_absent_symbols_and_tracepoints_keep_their_reasons():
    f = dataclasses.replace(facts("6.1.0-57-amd64", btf=True, kfunc=False), symbols=frozenset(),
                            tracepoints=frozenset())
    reasons = {p.probe: p.reason for p in attach_plan.plan(f).probes}
    assert "not in kallsyms" in reasons["invalidate_range_start"]
    assert "not in tracefs" in reasons["oom:mark_victim"]
