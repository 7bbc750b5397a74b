"""MLflow tracking: store selection, run naming, params, tags, metrics, artifacts.

One MLflow experiment per task (`isacbench/<task>`), one run per (task, instance,
solver, seed). The default store is a SQLite file in the working directory.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping

from .api import UserError

DEFAULT_DB = "mlflow.db"
TAG = "isacbench."


def resolve_uri(uri: str | None = None) -> str:
    """Explicit URI, else $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def experiment_name(task: str) -> str:
    return f"isacbench/{task}"


def instance_id(task_config: Mapping[str, Any]) -> str:
    """A short, stable hash of a task's resolved config: runs with equal ids share an instance."""
    blob = json.dumps(task_config, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


class Tracker:
    """Thin wrapper over MlflowClient (no global active-run state, safe in worker processes)."""

    def __init__(self, uri: str | None = None):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # after import: mlflow sets its own level
        logging.getLogger("alembic").setLevel(logging.WARNING)

        self.uri = resolve_uri(uri)
        _check_reachable(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        try:
            self.client.search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - any store failure is the user's URI
            raise UserError(f"tracking URI {self.uri!r} is not usable: {str(e).splitlines()[0]}") from None

    def experiment(self, task: str) -> str:
        """Id of the task's experiment, created on first use (before any worker starts)."""
        name = experiment_name(task)
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            location = (Path(self.uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # another process created it first
            return self.client.get_experiment_by_name(name).experiment_id

    def runs(self, task: str, filter_string: str = "") -> Iterator[Any]:
        """Every run of the task's experiment (none if it has none) matching `filter_string`, page by page."""
        exp = self.client.get_experiment_by_name(experiment_name(task))
        token = None
        while exp is not None:
            page = self.client.search_runs([exp.experiment_id], filter_string=filter_string, max_results=1000,
                                           page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def start(self, task: str, solver: str, seed: int, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.experiment(task), run_name=f"{task}.{solver}.seed{seed}",
                                     tags={**environment_tags(), **tags})
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _short(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i:i + 500])

    def log_series(self, run_id: str, name: str, values: list[float], max_points: int = 1000) -> None:
        """A step-indexed curve, thinned to at most `max_points` points (last point kept)."""
        import math
        import time

        from mlflow.entities import Metric

        n = len(values)
        stride = max(1, math.ceil(n / max_points))
        steps = sorted(set(range(0, n, stride)) | ({n - 1} if n else set()))
        ts = int(time.time() * 1000)
        items = [Metric(name, float(values[s]), ts, s + 1) for s in steps if values[s] == values[s]]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i:i + 500])

    def log_json(self, run_id: str, name: str, obj: Any) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / name
            path.write_text(json.dumps(plain(obj), indent=2, sort_keys=True))
            self.client.log_artifact(run_id, str(path))

    def log_files(self, run_id: str, files: Mapping[str, bytes]) -> None:
        """Log artifact files given as relative path -> content."""
        if not files:
            return
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            for rel, content in files.items():
                path = Path(d) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            self.client.log_artifacts(run_id, d)

    def finish(self, run_id: str, status: str = "FINISHED", error: str | None = None) -> None:
        if error:
            self.client.set_tag(run_id, TAG + "error", error[:5000])
        self.client.set_terminated(run_id, status=status)


def _check_reachable(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except requests.RequestException as e:
        raise UserError(f"tracking URI {uri!r} is unreachable ({type(e).__name__}); "
                        f"start an MLflow server there or omit --tracking-uri for the local store") from None


def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s[:6000]


def plain(v: Any) -> Any:
    """v as plain JSON data: numpy scalars as Python ones, tuples as lists, keys as text. Raises
    TypeError on anything else (arrays, objects): those belong in metrics and artifacts."""
    import numpy as np

    if isinstance(v, (np.generic, np.ndarray)) and np.ndim(v) == 0:
        return v.item()
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    raise TypeError(f"{type(v).__name__} is not plain JSON data")


def plain_entries(d: Mapping) -> dict:
    """The entries of d that are plain JSON data (`plain`); the others are left out."""
    out = {}
    for k, v in d.items():
        try:
            out[str(k)] = plain(v)
        except TypeError:
            pass
    return out


def environment_tags() -> dict[str, str]:
    """Versions and provenance recorded on every run."""
    import numpy

    from . import __version__

    tags = {TAG + "version": __version__, TAG + "python": platform.python_version(),
            TAG + "numpy": numpy.__version__, TAG + "platform": platform.platform(),
            TAG + "git_commit": _git_commit()}
    try:
        import torch

        tags[TAG + "torch"] = torch.__version__
        tags[TAG + "device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        tags[TAG + "torch"] = "not installed"
        tags[TAG + "device"] = "cpu"
    return tags


def _git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
