"""Coverage-guided fuzzing, bounded in time, of the request head parser and both YAML
readers (tests/host/fuzz_targets.py), from the seeds kept in tests/host/fuzz_corpus/.
An input that breaks an invariant fails the test and is written to the test's directory;
add it to the seeds once fixed, so every later run starts from it."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (tests/requirements.txt)")

HERE = Path(__file__).resolve().parent
SECONDS = 4


@pytest.mark.parametrize("target", ["head", "config", "web"])
def test_fuzz(target, tmp_path):
    new = tmp_path / "new"              # what libFuzzer finds goes here, not into the repository
    new.mkdir()
    seeds = HERE / "fuzz_corpus" / target
    assert any(seeds.iterdir()), seeds
    p = subprocess.run([sys.executable, str(HERE / "fuzz_targets.py"), target, str(new), str(seeds),
                        f"-max_total_time={SECONDS}", "-max_len=4096", f"-artifact_prefix={tmp_path}/"],
                       cwd=HERE.parents[1], capture_output=True, text=True, timeout=SECONDS + 60)
    report = "\n".join(line for line in p.stderr.splitlines() if line.strip())
    assert p.returncode == 0, report[-3000:]
    runs = [line for line in report.splitlines() if line.startswith("Done ")]
    assert runs, report[-2000:]
    from tests.host.test_robustness import FIGURES
    FIGURES.setdefault("atheris", []).append(f"{target}: {runs[0][5:]}")
