"""The metric families mnmon exports: the public contract dashboards and alerts rely on.

Every rendering (Prometheus exposition, the CLI table, the CLI JSON) takes its
names, types, help texts and label names from here.
"""
from dataclasses import dataclass

# Label values come from the BPF side's header (monitor/read/contract.py).
from monitor.read.contract import MODES, REAP_CALLERS, REAP_RESULTS, RESULTS  # noqa: F401 -- re-exported

# log2 latency buckets, in seconds: 1 us .. ~8.4 s (powers of two of nanoseconds).
LATENCY_BUCKETS = tuple((1 << s) / 1e9 for s in range(10, 34))
# A given-up victim's mm is held for seconds to hours: ~1 ms .. ~18 min (powers of two of ns).
HELD_BUCKETS = tuple((1 << s) / 1e9 for s in range(20, 41))


@dataclass(frozen=True)
class Family:
    name: str
    type: str                  # counter | gauge | histogram | info
    help: str
    labels: tuple = ()


def _f(name, type_, help_, *labels):
    return Family(name, type_, help_, tuple(labels))


FAMILIES = {f.name: f for f in [
    _f("mnmon_invalidate_range_start_total", "counter",
       "Calls of __mmu_notifier_invalidate_range_start by mode and result.", "mode", "result"),
    _f("mnmon_invalidations_total", "counter",
       "Calls of __mmu_notifier_invalidate_range_start by mmu_notifier_event (kernels 5.2+).", "event"),
    _f("mnmon_invalidate_range_end_total", "counter",
       "Calls of __mmu_notifier_invalidate_range_end."),
    _f("mnmon_invalidate_range_start_duration_seconds", "histogram",
       "Time spent in __mmu_notifier_invalidate_range_start, all notifiers together.", "mode"),
    _f("mnmon_invalidations_in_progress", "gauge",
       "Invalidation sections started successfully and not ended yet."),
    _f("mnmon_unpaired_invalidate_starts_total", "counter",
       "Notifier starts that succeeded inside a failed non-blockable start and got no end "
       "(the skipped-end bug fixed by c2655835fd8c in 5.12)."),
    _f("mnmon_notifier_invalidations_total", "counter",
       "Notifier invalidate callbacks by outcome. eagain: the notifier would have blocked; "
       "unobserved: called, but its outcome could not be observed (no probe of its own saw it, and "
       "neither the kernel's log line nor the interval notifiers' sequence numbers named the "
       "failure among several candidates). "
       "notifier=\"unattributed\": calls to interval notifiers of a crowd (more than 8 over "
       "one range) whose callback was not among the 4 the walk counts apart: called, callback not "
       "named; notifier=\"unknown\": failed starts no notifier was named for.",
       "notifier", "module", "kind", "mode", "result"),
    _f("mnmon_notifier_invalidate_range_end_total", "counter",
       "invalidate_range_end callbacks of list notifiers.", "notifier", "module"),
    _f("mnmon_notifier_invalidation_duration_seconds", "histogram",
       "Time spent in one notifier's invalidate callback. With probes.latency: sampled, the calls "
       "of the timing windows only (mnmon_latency_sampled_ratio): its _count is a sample, "
       "mnmon_notifier_invalidations_total the count.", "notifier", "module", "mode"),
    _f("mnmon_latency_sampled_ratio", "gauge",
       "probes.latency: sampled or always: the fraction of the time since start that callbacks were "
       "timed (their probes attached; a window skipped because no invalidation ran since the last "
       "counts as timed), the share of calls the latency histograms hold; 1 with always."),
    _f("mnmon_oom_victims_total", "counter", "Processes the OOM killer marked as victims."),
    _f("mnmon_oom_tracked_victims_total", "counter",
       "OOM victims by the cgroup (v2 path) they were in, and the Kubernetes pod and container that "
       "path names (empty elsewhere); at most the 64 cgroups with the most recent victims are tracked "
       "(a cgroup pushed out starts again from 0).", "cgroup", "pod_uid", "container_id"),
    _f("mnmon_oom_reap_attempts_total", "counter",
       "Attempts to reap an OOM victim's memory by result.", "result"),
    _f("mnmon_oom_reap_calls_total", "counter",
       "Calls of __oom_reap_task_mm by caller and result.", "caller", "result"),
    _f("mnmon_oom_reaper_gave_up_total", "counter",
       "Victims the OOM reaper gave up on after its retries."),
    _f("mnmon_oom_reap_blocked_total", "counter",
       "Reap attempts that a notifier made fail, by that notifier.", "notifier", "module"),
    _f("mnmon_oom_reap_duration_seconds", "histogram", "Time spent in one __oom_reap_task_mm call."),
    _f("mnmon_oom_premature_victims_total", "counter",
       "OOM victims chosen while an earlier victim of the same OOM domain (memory cgroup, or the machine) "
       "that the reaper gave up on still held its address space, by the notifier that blocked that reap "
       "(unknown: none named).", "notifier", "module"),
    _f("mnmon_oom_given_up_mm_held_seconds", "histogram",
       "How long the address space of a victim the OOM reaper gave up on stayed, from the victim's choice "
       "to its teardown (exit_mmap)."),
    _f("mnmon_probe_attached", "gauge", "Whether a probe is attached (1) or not (0), and how.",
       "probe", "method"),
    _f("mnmon_events_lost_total", "counter",
       "Events mnmon could not record: ring buffer full, kretprobe instances exhausted, "
       "an in-flight invalidation not stored."),
    _f("mnmon_build_info", "gauge", "mnmon's version, the bcc it runs on and the kernel.",
       "version", "bcc_version", "kernel"),
    _f("mnmon_scrape_duration_seconds", "gauge", "Time the last collection of BPF maps took."),
    _f("mnmon_scrape_collector_success", "gauge",
       "Whether a concern's maps were read at the last collection (1) or not (0: its series are left out).",
       "collector"),
    _f("mnmon_scrape_collector_duration_seconds", "gauge",
       "Time reading a concern's maps took at the last collection.", "collector"),
]}
