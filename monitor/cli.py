"""mnmon's command line. Every error ends here as one line and an exit status:
0 ok, 1 runtime failure, 2 bad input (flags, config), 3 cannot attach or not privileged."""
import functools
import json
import logging
import signal
import sys
import time

import click

from monitor import __version__
from monitor.config import ConfigError, parse_duration

EXIT_FAIL, EXIT_INPUT, EXIT_ATTACH = 1, 2, 3


def _errors(fn):
    """Turn mnmon's errors into one line on stderr and an exit status."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        from monitor.headers import HeadersError
        from monitor.probes import MonitorError
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


def _duration(ctx, param, value):
    try:
        return parse_duration(value)
    except ValueError as e:         # ConfigError is one too
        raise click.BadParameter(str(e)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mnmon")
def main():
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


@main.command()
@click.option("--config.file", "config_file", metavar="FILE",
              help="YAML settings (default: /etc/mnmon/config.yaml if it exists).")
@click.option("--web.listen-address", "web_listen_address", metavar="[HOST]:PORT",
              help="Where to listen (default :7668).")
@click.option("--web.telemetry-path", "web_telemetry_path", metavar="PATH", help="Metrics path (default /metrics).")
@click.option("--web.config.file", "web_config_file", metavar="FILE",
              help="TLS and basic auth, in the Prometheus exporter-toolkit layout.")
@click.option("--strict/--no-strict", "probes_strict", default=None,
              help="Exit non-zero if any probe cannot attach (default: degrade and report).")
@click.option("--probes.disable", "probes_disable", metavar="NAMES", help="Comma-separated probes not to attach.")
@click.option("--discovery.interval", "discovery_interval", metavar="DURATION",
              help="How often to look for new notifier callbacks (default 5s).")
@click.option("--watchdog/--no-watchdog", default=None, help="Ping systemd's watchdog (default: when it asks).")
@click.option("--log.level", "log_level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
@_errors
def serve(config_file, log_level, **flags):
    """Serve Prometheus metrics, reading the BPF maps at each scrape.

    \b
    Examples:
      mnmon serve
      mnmon serve --web.listen-address 127.0.0.1:7668 --strict
      mnmon serve --config.file /etc/mnmon/config.yaml --web.config.file /etc/mnmon/web.yaml
    systemd: Type=notify; SIGHUP reloads the config, SIGTERM detaches (deploy/systemd/).
    """
    from monitor import config, serve as daemon
    settings = config.load(config_file).with_overrides(**flags)
    log = logging.getLogger("mnmon")
    daemon.setup_logging(log_level.upper(), sys.stderr, None)
    sys.exit(daemon.run(settings, _attach_for_serve, log))


def _attach_for_serve(settings):
    from monitor import collector, serve as daemon
    from monitor.probes import MonitorError, start_monitor
    mon = start_monitor(disable=settings.disable)
    log = logging.getLogger("mnmon")
    missing = [st for st in mon.statuses.values() if not st.attached and st.reason != "disabled by configuration"]
    for st in mon.statuses.values():
        if st.attached:
            log.info("probe %s: attached (%s)", st.probe, st.method)
        else:
            log.warning("probe %s: not attached: %s", st.probe, st.reason)
    if settings.strict and missing:
        mon.close()
        raise MonitorError("--strict: not attached: " + ", ".join(f"{st.probe} ({st.reason})" for st in missing))
    return daemon.Attached(collector.registry_for(mon), mon.close, mon.refresh)


@main.command()
@click.option("--duration", default="10s", callback=_duration, metavar="DURATION", show_default=True,
              help="How long to count (e.g. 500ms, 10s, 1m).")
@click.option("--json", "as_json", is_flag=True, help="The same series as /metrics, as JSON.")
@click.option("--no-histograms", is_flag=True, help="Leave out the log2 latency histograms.")
@_errors
def sample(duration, as_json, no_histograms):
    """Attach, count for a while, print what happened.

    \b
    Examples:
      mnmon sample                       10 s, a table per notifier with p50/p99 latency
      mnmon sample --duration 1m --json  the same series /metrics would show
    """
    from monitor import collector, render
    from monitor.probes import start_monitor
    mon = start_monitor()
    click.echo(f"attached; sampling for {duration:g} s", err=True)
    try:
        t0 = time.monotonic()
        end = t0 + duration
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            mon.refresh()           # callbacks registered meanwhile get attached
        snap = collector.complete(mon.snapshot(), time.monotonic())
    finally:
        mon.close()
    click.echo(render.to_json(snap) if as_json else render.table(snap, histograms=not no_histograms))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_errors
def watch(as_json):
    """One line per rare event as it happens: a non-blockable notifier failure,
    an OOM victim, a reap attempt, the reaper giving up. Ctrl-C stops.

    \b
    Examples:
      mnmon watch
      mnmon watch --json | jq 'select(.event == "reaper_gave_up")'
    """
    from monitor.probes import start_monitor
    mon = start_monitor()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))

    def show(ev):
        d = ev.describe(mon.symbols.resolve)
        if as_json:
            click.echo(json.dumps(d))
        else:
            ts = time.strftime("%H:%M:%S")
            click.echo(f"{ts} {d.pop('event'):<16} " + " ".join(f"{k}={v}" for k, v in d.items() if k != "ts_ns"))
        sys.stdout.flush()
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


@main.command()
@_errors
def doctor():
    """Explain what can attach on this kernel, and how. Exit status 0 when
    per-notifier outcomes can be counted here, 3 when not.

    \b
    Example:
      mnmon doctor
    """
    from monitor import doctor as doc, kernel
    from monitor.probes import MonitorError, ProbeStatus, inspect_host, start_monitor
    facts, plan = inspect_host()
    click.echo("\n".join(doc.facts_lines(facts, "root or CAP_BPF+CAP_PERFMON" if facts.privileged else "none")))
    click.echo(doc.tracefs_line(kernel.tracefs(mount=False)))
    click.echo("")
    attempted = False
    # What the plan would try, shown when nothing could be tried.
    planned = [ProbeStatus(p.probe, p.methods[0] if p.methods else "", bool(p.methods), p.reason)
               for p in plan.probes]
    if facts.privileged and facts.headers != "none":
        try:
            mon = start_monitor()
            statuses, attempted = list(mon.statuses.values()), True
            mon.close()
        except MonitorError as e:
            click.echo(f"attach failed: {e}")
            statuses = planned
    else:
        statuses = planned
        click.echo("not privileged or no headers: showing the plan only (run as root to try it)\n")
    click.echo("\n".join(doc.probe_lines(statuses, plan.callbacks, attempted)))
    ok = attempted and doc.core_ok(statuses, plan.callbacks)
    click.echo("\n" + ("per-notifier outcomes: countable here" if ok else
                       "per-notifier outcomes: NOT countable here; OOM tracepoint counters only"
                       if any(s.attached for s in statuses if s.probe.startswith("oom:")) and attempted
                       else "per-notifier outcomes: NOT countable here"))
    sys.exit(0 if ok else EXIT_ATTACH)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@_errors
def notifiers(as_json):
    """List the notifier callbacks this kernel has (from vmlinux and module BTF).

    Callbacks of modules without BTF (out-of-tree drivers) are found only when
    they register, by `serve`, `sample` and `watch`.

    \b
    Examples:
      mnmon notifiers
      mnmon notifiers --json
    """
    from monitor.discovery import BTFScanner
    from monitor.symbols import Symbols
    scanner = BTFScanner()
    if not scanner.available():
        _die("no /sys/kernel/btf/vmlinux: this kernel has no BTF to find callbacks in", EXIT_ATTACH)
    syms = Symbols.load()
    rows = [(cb.symbol, cb.module, cb.kind_name, cb.symbol in syms) for cb in scanner.scan()]
    if as_json:
        click.echo(json.dumps([{"notifier": s, "module": m, "kind": k, "in_kallsyms": p} for s, m, k, p in rows]))
        return
    if not rows:
        click.echo("no notifier callbacks in BTF (no notifier driver loaded)")
    for s, m, k, p in sorted(rows, key=lambda r: (r[1], r[0])):
        click.echo(f"{s:<48} {m:<16} {k:<9}{'' if p else ' (not in kallsyms: inlined?)'}")


@main.group("config")
def config_group():
    """Configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@_errors
def config_check(file):
    """Validate a config file (and the web config file it names).

    \b
    Example:
      mnmon config check /etc/mnmon/config.yaml
    """
    from monitor import config
    config.check(file)
    click.echo(f"{file}: ok")
