"""`mnmon` and `python -m monitor`."""
import signal


def run():
    # Until `serve` takes SIGHUP over, a reload sent at start (systemd's ExecReload during
    # the BPF compile) must not kill the process: SIGHUP's default action is to terminate.
    # Set here, before the CLI's imports (tens of ms, more while .pyc files are written).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from monitor.cli.commands import main
    main(prog_name="mnmon")


if __name__ == "__main__":
    run()
