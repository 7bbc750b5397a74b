import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
os.environ.setdefault("MPLBACKEND", "Agg")


def cli(args, cwd, env=None, timeout=600, prefix=()):
    """Run `isacbench ARGS` as a user would (a subprocess), with the tests folder importable;
    `prefix`: a command that runs it (e.g. setpriv with fewer privileges)."""
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), "MLFLOW_TRACKING_URI": "", **(env or {})}
    if not full_env["MLFLOW_TRACKING_URI"]:
        del full_env["MLFLOW_TRACKING_URI"]
    return subprocess.run([*prefix, sys.executable, "-c", "from isacbench.cli import main; main()", *map(str, args)],
                          cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory (its ./mlflow.db is the default store)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def interruptible() -> None:
    """`preexec_fn` of a subprocess that a test interrupts: SIGINT at its default in the child, so that
    Python turns it into KeyboardInterrupt even where the test runner was started in the background of
    a shell without job control (which ignores SIGINT, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
