"""Checkpoints in safetensors: model and Adam tensors, plus JSON metadata (no pickle anywhere).

Layout inside reporter.artifact_dir: `mappo/checkpoint.safetensors` (the runner logs the
folder as MLflow artifacts, so `resume=RUN_ID` downloads artifact path `mappo`).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from isacbench.api import UserError

FOLDER = "mappo"
FILE = "checkpoint.safetensors"


def save(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict) -> None:
    """Write atomically (temp file + rename) so an interrupted save never leaves a torn file."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"optim.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": list(g["params"])}
              for g in opt["param_groups"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta), "param_groups": json.dumps(groups)})
    tmp.replace(path)


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer in place; return the metadata."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"solver mappo resume: checkpoint {path} does not fit this task/config "
                        f"({str(e).splitlines()[0]})") from None
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    groups = json.loads(header["param_groups"])
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})  # casts to the params' device
    return json.loads(header["meta"])


def locate(resume: str, tracking_uri: str | None = None) -> Path:
    """A checkpoint file from a path (file or folder) or an MLflow run id in the store `tracking_uri`
    (the run's own store, `Reporter.tracking_uri`; None: as the CLI resolves it without a flag,
    $MLFLOW_TRACKING_URI, else the local sqlite store)."""
    p = Path(resume)
    for cand in (p, p / FILE, p / FOLDER / FILE):
        if cand.is_file():
            return cand
    import mlflow.artifacts

    from isacbench.tracking import resolve_uri

    dst = tempfile.mkdtemp(prefix="mappo-resume-")
    try:
        local = mlflow.artifacts.download_artifacts(run_id=resume, artifact_path=FOLDER, dst_path=dst,
                                                    tracking_uri=resolve_uri(tracking_uri))
    except Exception as e:  # noqa: BLE001 - any MLflow failure means the run id cannot be resumed
        raise UserError(f"solver mappo resume={resume!r}: not a checkpoint file and no MLflow run with a "
                        f"'{FOLDER}/{FILE}' artifact ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    cand = Path(local) / FILE
    if not cand.is_file():
        raise UserError(f"solver mappo resume={resume!r}: MLflow run has no '{FOLDER}/{FILE}' artifact")
    return cand
