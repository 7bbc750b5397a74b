"""MLflow tracking: store selection, run naming, params, tags, metrics, artifacts.

One MLflow experiment per task (`isacbench/<task>`), one run per (task, instance,
solver, seed). The default store is a SQLite file in the working directory.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import platform
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlparse

from .api import UserError

DEFAULT_DB = "mlflow.db"
TAG = "isacbench."
#: experiments open in MLflow 3's classic runs view ("Machine learning"), not its GenAI view
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


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

    def __init__(self, uri: str | None = None, write: bool = True):
        """Open the store at `uri` (see `resolve_uri`); `write`: runs will be recorded (a read-only
        store is refused at once). Every store failure is one UserError line."""
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        # on a server, MLflow prints "View run ... at: URL" to stdout after every run (an extra
        # request per run, and lines that would break `--json` output)
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # after import: mlflow sets its own level
        logging.getLogger("alembic").setLevel(logging.WARNING)

        self.uri = resolve_uri(uri)
        _check_reachable(self.uri)
        _check_local(self.uri, write)
        try:
            with _schema_lock(self.uri):
                self.client = MlflowClient(tracking_uri=self.uri)
                self.client.search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - any store failure is the user's URI
            schemes = [s for s in getattr(e, "supported_uri_schemes", ()) if s not in ("", "file")]
            reason = (f"its scheme is not one of {', '.join(schemes)}" if schemes
                      else str(e).strip().splitlines()[0][:300])
            raise UserError(f"tracking URI {self.uri!r} is not usable: {reason}") from None

    def experiment(self, task: str) -> str:
        """Id of the task's experiment, created on first use (before any worker starts)."""
        name = experiment_name(task)
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            for key, value in EXPERIMENT_KIND.items():  # experiments created by older versions
                if key not in exp.tags:
                    self.client.set_experiment_tag(exp.experiment_id, key, value)
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            location = (Path(self.uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
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

    def orphans(self) -> list[Any]:
        """RUNNING runs (of any experiment) whose owner (`owner`) is a process of this host that is
        gone: killed (kill -9, out of memory) before it could finish them."""
        exps = [e.experiment_id for e in self.client.search_experiments()]
        me = owner()
        mine = " and ".join(["attributes.status = 'RUNNING'"] + [f"tags.`{k}` = '{me[k]}'" for k in
                                                                  (TAG + "host", TAG + "pid_namespace")])
        return [r for r in (self.client.search_runs(exps, mine) if exps else [])
                if not pid_alive(int(r.data.tags[TAG + "pid"]))]


def owner() -> dict[str, str]:
    """Tags naming the process that records a run: host, process id and pid namespace (containers
    that share a host name see different processes)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "none"
    return {TAG + "host": socket.gethostname(), TAG + "pid": str(os.getpid()), TAG + "pid_namespace": namespace}


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host exists (a zombie is gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): kill said it exists
        return True


def cpu_model() -> str:
    """The CPU model ('model name' of /proc/cpuinfo, else what `platform` knows): floating-point
    results of the same seed can differ between CPU models (README, Reproducibility)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///PATH` URI (None for other URIs)."""
    return Path(uri[len("sqlite:///"):].partition("?")[0]) if uri.startswith("sqlite:///") else None


def _check_local(uri: str, write: bool) -> None:
    """A plain path is no store (MLflow's file store is retired); a SQLite store that runs are
    recorded to must be writable, and so must its folder (SQLite writes a journal next to it)."""
    if urlparse(uri).scheme in ("", "file"):
        raise UserError(f"tracking URI {uri!r} is a plain path, not a store; "
                        f"give sqlite:///PATH/mlflow.db or http(s)://HOST:PORT")
    path = _sqlite_path(uri)
    if not (write and path):
        return
    blocked = [p for p in (path, path.parent) if p.exists() and not os.access(p, os.W_OK)]
    if blocked:
        raise UserError(f"tracking store {path} is read-only ({blocked[0]} is not writable); "
                        f"give a writable one with --tracking-uri sqlite:///PATH/mlflow.db")


@contextmanager
def _schema_lock(uri: str) -> Iterator[None]:
    """An exclusive lock on a SQLite store's folder while MLflow opens the store: the first client
    of a new store creates its tables, and two processes doing it at once collide."""
    path = _sqlite_path(uri)
    try:
        fd = os.open(path.parent, os.O_RDONLY) if path else None
    except OSError:  # no such folder: MLflow says so
        fd = None
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


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
    """Versions and provenance recorded on every run, and its owner (host and process id)."""
    import numpy

    from . import __version__

    tags = {TAG + "version": __version__, TAG + "python": platform.python_version(),
            TAG + "numpy": numpy.__version__, TAG + "platform": platform.platform(), TAG + "cpu": cpu_model(),
            TAG + "git_commit": _git_commit(), **owner()}
    try:
        import torch

        tags[TAG + "torch"] = torch.__version__
        tags[TAG + "device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        tags[TAG + "torch"] = "not installed"
        tags[TAG + "device"] = "cpu"
    return tags


@functools.lru_cache(maxsize=None)
def _git_commit() -> str:
    """HEAD of the checkout isacbench runs from, asked once per process (a sweep records many runs)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
