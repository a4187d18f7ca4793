"""mnmon's command line. Every error ends here as one line and an exit status:
0 ok, 1 runtime failure, 2 bad input (flags, config), 3 cannot attach or not privileged."""
import errno
import functools
import json
import logging
import signal
import sys
import time

import click

from monitor.settings.config import ConfigError, parse_duration

EXIT_FAIL, EXIT_INPUT, EXIT_ATTACH = 1, 2, 3


def _errors(fn):
    """Turn mnmon's errors into one line on stderr and an exit status."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        from monitor.kernel.headers import HeadersError
        from monitor.attach.session import MonitorError
        from monitor.web.server import ServeError
        try:
            return fn(*a, **kw)
        except ConfigError as e:            # WebConfigError is one too
            _die(str(e), EXIT_INPUT)
        except (MonitorError, HeadersError) as e:
            _die(str(e), EXIT_ATTACH)
        except ServeError as e:
            _die(str(e), EXIT_FAIL)
        except BrokenPipeError:
            sys.stderr.close()              # output piped into head: not an error
            sys.exit(0)
    return wrapper


def _die(msg, code):
    click.echo(f"mnmon: {msg}", err=True)
    sys.exit(code)


def _setting_options(fn):
    """One option per row of config.SETTINGS, in its order; yes/no rows get --x/--no-x."""
    from monitor.settings.config import SETTINGS
    for row in reversed(SETTINGS):
        if row.metavar:
            option = click.option(row.flag, row.keyword, metavar=row.metavar, help=row.help)
        else:
            option = click.option(f"{row.flag}/--no-{row.flag[2:]}", row.keyword, default=None, help=row.help)
        fn = option(fn)
    return fn


def _duration(ctx, param, value):
    try:
        return parse_duration(value)
    except ValueError as e:         # ConfigError is one too
        raise click.BadParameter(str(e)) from None


def _show_version(ctx, param, value):
    if value and not ctx.resilient_parsing:
        from monitor.build import version_text
        click.echo(version_text())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show mnmon's, bcc's, Python's and the kernel's versions, and the build.")
@click.pass_context
def main(ctx):
    """Live monitor of mmu notifiers and the OOM reaper.

    \b
    Examples:
      mnmon doctor                  what can attach on this kernel, and how
      mnmon sample --duration 10s   count for 10 s, print a table per notifier
      mnmon watch                   one line per non-blockable failure, victim, reap attempt
      mnmon serve                   Prometheus exporter on :7668/metrics
      mnmon notifiers               notifier callbacks this kernel has
      mnmon config check /etc/mnmon/config.yaml
    """
    if ctx.invoked_subcommand != "serve":
        # Ignored at start for `serve` (monitor/__main__.py); the other commands end on a hangup.
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


@main.command()
@click.option("--config.file", "config_file", metavar="FILE",
              help="YAML settings (default: /etc/mnmon/config.yaml if it exists).")
@_setting_options
@click.option("--log.level", "log_level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warn", "warning", "error"]))
@click.option("--log.format", "log_format", default="plain", show_default=True,
              type=click.Choice(["plain", "logfmt", "json"]),
              help="plain: 'DATE TIME level: msg' ('<6>msg' under the journal); logfmt or json: "
                   "time, level, source, msg as Prometheus's exporters write them.")
@_errors
def serve(config_file, log_level, log_format, **flags):
    """Serve Prometheus metrics, reading the BPF maps at each scrape.

    \b
    Examples:
      mnmon serve
      mnmon serve --web.listen-address 127.0.0.1:7668 --strict
      mnmon serve --config.file /etc/mnmon/config.yaml --web.config.file /etc/mnmon/web.yaml
    systemd: Type=notify; SIGHUP reloads the config, SIGTERM lets requests in flight finish,
    then detaches (deploy/systemd/).
    """
    from monitor.settings import config
    from monitor.daemon import serve as daemon
    settings = config.load(config_file).with_overrides(**flags)
    known = known_probes()
    log = logging.getLogger("mnmon")
    level = "WARNING" if log_level == "warn" else log_level.upper()     # Prometheus's spelling too
    daemon.setup_logging(level, sys.stderr, None, log_format)
    sys.exit(daemon.run(settings, _attach_for_serve, log, validate=lambda s: config.validate(s, known)))


def _attach_for_serve(settings):
    from monitor.export import collector
    from monitor.daemon import serve as daemon
    from monitor.plan.decisions import Off
    from monitor.attach.session import MonitorError, start_monitor
    _check_permissions()
    mon = start_monitor(disable=settings.disable, callbacks=None if settings.callbacks == "auto" else settings.callbacks,
                        lean=settings.lean, latency=settings.latency)
    log = logging.getLogger("mnmon")
    missing = [st for st in mon.statuses.values() if not st.attached and not st.disabled]
    for st in mon.statuses.values():
        if st.attached:
            log.info("probe %s: attached (%s)", st.probe, st.method)
        elif st.disabled:
            log.info("probe %s: off (%s)", st.probe, st.reason if st.off in (Off.LEAN, Off.COUNTS) else "probes.disable")
        else:
            log.warning("probe %s: not attached: %s", st.probe, st.reason)
    if mon.plan.latency_note:
        log.warning("%s", mon.plan.latency_note)
    if not mon.coverage.per_notifier:
        log.warning("per-notifier outcomes not countable here: %s", _why_not_per_notifier(mon))
    if not mon.coverage.measures("mnmon_oom_premature_victims_total"):
        from monitor.cli.doctor import premature_line
        log.warning("%s", premature_line(list(mon.statuses.values()), mon.coverage, True))
    if settings.strict and missing:
        mon.close()
        raise MonitorError("--strict: not attached: " + ", ".join(f"{st.probe} ({st.reason})" for st in missing))
    return daemon.Attached(collector.registry_for(mon), mon.close, mon.refresh)


def _why_not_per_notifier(mon):
    """One reason, the first that applies: a core probe not attached, else the callbacks'."""
    core = [mon.statuses[p.probe] for p in mon.plan.probes if p.core and p.probe in mon.statuses]
    for st in core:
        if not st.attached:
            return f"{st.probe}: {st.reason or 'not attached'}"
    cov = mon.coverage
    return cov.callbacks.reason if cov.callbacks else "core probes off by configuration"


def known_probes():
    """Every probe name probes.disable may name: the catalogue's (the names do not depend
    on what this host can attach)."""
    from monitor.plan import catalogue
    return catalogue.names()


def _check_permissions():
    """MonitorError naming what is missing, before bcc fails on it in its own words."""
    from monitor.kernel import facts as kernel
    from monitor.attach.session import MonitorError
    problem = kernel.permission_problem()
    if problem:
        raise MonitorError(problem)


@main.command()
@click.option("--duration", default="10s", callback=_duration, metavar="DURATION", show_default=True,
              help="How long to count (e.g. 500ms, 10s, 1m).")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON document: the window, the host, the same series as /metrics (README: sample --json).")
@click.option("--no-histograms", is_flag=True, help="Leave out the log2 latency histograms.")
@click.option("--timing", is_flag=True,
              help="Time every notifier call for the whole sample (default: in windows, as serve's "
                   "probes.latency: sampled does).")
@_errors
def sample(duration, as_json, no_histograms, timing):
    """Attach, count for a while, print what happened.

    \b
    Examples:
      mnmon sample                       10 s, a table per notifier with p50/p99 latency
      mnmon sample --duration 1m --json  the same series /metrics would show
      mnmon sample --timing              every callback call timed, not a sample of them
    """
    import socket
    from monitor import build
    from monitor.export import collector
    from monitor.cli import table as render
    from monitor.attach.session import start_monitor
    _check_permissions()
    mon = start_monitor(latency="always" if timing else "sampled")
    click.echo(f"attached; sampling for {duration:g} s", err=True)
    try:
        started, t0 = time.time(), time.monotonic()
        end = t0 + duration
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            mon.refresh()           # callbacks registered meanwhile get attached
        snap = collector.complete(mon.snapshot(), time.monotonic())
        counted = time.monotonic() - t0
    finally:
        mon.close()
    if as_json:
        host = {**build.facts(), "hostname": socket.gethostname()}
        click.echo(render.to_json(snap, started, started + counted, counted, host))
    else:
        click.echo(render.table(snap, histograms=not no_histograms))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_errors
def watch(as_json):
    """One line per rare event as it happens: a non-blockable notifier failure,
    an OOM victim, a reap attempt, the reaper giving up, a premature victim (chosen
    while a given-up victim still held its memory). Ctrl-C stops.

    \b
    Examples:
      mnmon watch
      mnmon watch --json | jq 'select(.event == "reaper_gave_up")'
    """
    from monitor.read import events
    from monitor.attach.session import start_monitor
    _check_permissions()
    mon = start_monitor()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))

    def show(ev):
        # Called from inside bcc's ring-buffer poll, which swallows exceptions (even
        # SystemExit): a reader that went away (`| head -1`) is noted here, and the loop ends.
        # After SIGTERM the last poll still prints what the buffer holds.
        if "EPIPE" in stop:
            return
        d = mon.describe(ev)
        try:
            click.echo(events.json_line(d) if as_json else events.line(d, time.strftime("%H:%M:%S")))
            sys.stdout.flush()
        except OSError as e:
            if e.errno != errno.EPIPE:
                raise
            stop.append("EPIPE")
    mon.open_events(show)
    click.echo("attached; watching (Ctrl-C stops)", err=True)
    last = time.monotonic()
    try:
        while not stop:
            mon.poll_events(500)
            if time.monotonic() - last > 2:
                mon.refresh()
                last = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        mon.close()
    if "EPIPE" in stop:
        _quiet_stdout()


def _quiet_stdout():
    """The reader of stdout went away: exit 0 without Python's flush-at-exit complaint."""
    import os
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


@main.command()
@click.option("--lean", is_flag=True, help="What the lean configuration (probes.lean) attaches here.")
@click.option("--latency", type=click.Choice(["sampled", "always", "off", "full"]), default="sampled",
              show_default=True,
              help="What probes.latency attaches here (sampled: counts, callbacks timed in windows; "
                   "always: every call timed; off: counts only; full: every probe).")
@_errors
def doctor(lean, latency):
    """Explain what can attach on this kernel, and how. Exit status 0 when
    per-notifier outcomes can be counted here, 3 when not.

    \b
    Examples:
      mnmon doctor
      mnmon doctor --lean
      mnmon doctor --latency off
    """
    from monitor.cli import doctor as doc
    from monitor.kernel import facts as kernel
    from monitor.attach import callback_watch as watch
    from monitor.attach.session import inspect_host, start_monitor
    from monitor.read import cgroups

    def attach():
        _check_permissions()
        mon = start_monitor(lean=lean, latency=latency)
        try:
            return mon.all_statuses(), watch.counting_lines(mon.callbacks, mon.coverage.walked, mon.started_at)
        finally:
            mon.close()
    facts, plan = inspect_host(lean=lean, latency=latency)
    lines, ok = doc.report(facts, plan, kernel.tracefs(mount=False), attach, cgroups.locate())
    click.echo("\n".join(lines))
    sys.exit(0 if ok else EXIT_ATTACH)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@_errors
def notifiers(as_json):
    """List the notifier callbacks this kernel has (from vmlinux and module BTF).

    Callbacks of modules without BTF (out-of-tree drivers) are found when they
    register or first invalidate, by `serve`, `sample`, `watch` and `doctor`
    (which says, per callback, how it was found and since when it is counted).

    \b
    Examples:
      mnmon notifiers
      mnmon notifiers --json
    """
    from monitor.attach.discovery import BTFScanner
    from monitor.kernel.symbols import Symbols
    scanner = BTFScanner()
    if not scanner.available():
        _die("no /sys/kernel/btf/vmlinux: this kernel has no BTF to find callbacks in", EXIT_ATTACH)
    syms = Symbols.load()
    rows = [(cb.symbol, cb.module, cb.kind_name, cb.symbol in syms) for cb in scanner.scan()]
    # /proc/kallsyms shows zero addresses without CAP_SYSLOG: nothing is "in" it then.
    hidden = not len(syms)
    if hidden:
        click.echo("note: /proc/kallsyms hides addresses from this user (needs root or CAP_SYSLOG): "
                   "whether a callback is inlined cannot be told", err=True)
    if as_json:
        click.echo(json.dumps([{"notifier": s, "module": m, "kind": k, "in_kallsyms": None if hidden else p}
                               for s, m, k, p in rows]))
        return
    if not rows:
        click.echo("no notifier callbacks in BTF (no notifier driver loaded)")
    for s, m, k, p in sorted(rows, key=lambda r: (r[1], r[0])):
        note = "" if p or hidden else " (not in kallsyms: inlined?)"
        click.echo(f"{s:<48} {m:<16} {k:<9}{note}")


@main.group("config")
def config_group():
    """Configuration files."""


@config_group.command("check")
# Not click.Path(dir_okay=False): its refusal is a usage screen; config.check says it in one line.
@click.argument("file")
@_errors
def config_check(file):
    """Validate a config file (and the web config file it names).

    \b
    Example:
      mnmon config check /etc/mnmon/config.yaml
    """
    from monitor.settings import config
    config.check(file, known_probes())
    click.echo(f"{file}: ok")
