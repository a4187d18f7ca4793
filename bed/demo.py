"""`make demo`: mnmon sampling a real kernel while the KVM and A/B OOM scenarios run.

Runs inside the guest the bed boots, so it works on any machine, including one
whose own kernel refuses kprobes and fentry.
"""
import subprocess
import sys
import time

from bed import scenarios


def main():
    # --timing: every call of the scenarios timed, not the default's windows of them
    print("demo: starting `mnmon sample --duration 30s --timing` (bcc compiles first; ~30 s under emulation)",
          flush=True)
    sample = subprocess.Popen([sys.executable, "-m", "monitor", "sample", "--duration", "30s", "--timing"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in sample.stderr:
        if line.startswith("attached"):
            break
        sys.stderr.write(line)
    else:
        sys.exit(f"demo: mnmon sample exited {sample.wait()} before attaching")
    print("demo: KVM guest memory churned 300 times with madvise(MADV_DONTNEED)", flush=True)
    scenarios.run_kvm(iterations=300)
    print("demo: A/B under OOM: A never fails, B fails when non-blockable; a thread parked", flush=True)
    # sample looks for new callbacks every second: give it two before the victim starts.
    child = scenarios.run_oom(lists=[("A", "never_fail"), ("B", "fail_nonblock")],
                              on_ready=lambda info: time.sleep(2.5))
    print(f"demo: victim pid {child.pid} killed (exit {child.returncode}); waiting for the sample\n", flush=True)
    out, err = sample.communicate()
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(sample.returncode)


if __name__ == "__main__":
    main()
