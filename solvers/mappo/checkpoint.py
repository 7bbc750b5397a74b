"""Checkpoints in safetensors: model and Adam tensors, plus JSON metadata (no pickle anywhere).

Layout inside reporter.artifact_dir: `mappo/checkpoint.safetensors`, for ippo and happo too (the runner logs the
folder as MLflow artifacts, so `resume=RUN_ID` downloads artifact path `mappo`). Every checkpoint
holds the sha256 of its tensors and metadata, and the hyperparameters and environment it was
trained for: `verify` checks them (and the budget) before a resumed run starts, `load` the checksum.
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from isacbench.api import UserError

FOLDER = "mappo"
FILE = "checkpoint.safetensors"


def signature(env) -> dict:
    """The environment a checkpoint's networks were built for: its state, frames and roles."""
    def head(h) -> str:
        return f"{h.name} {h.size}x" + (f"{h.classes} classes" if h.kind == "categorical" else
                                        f"[{h.low:g}, {h.high:g}]" if h.kind == "continuous" else h.kind)

    return {"state_dim": env.state_dim, "frames_per_episode": env.frames_per_episode,
            **{f"role {r}": f"{spec.n_agents} agents, observations of {spec.obs_dim}, actions "
                            + ", ".join(map(head, spec.heads)) for r, spec in env.roles.items()}}


def _digest(tensors: dict[str, torch.Tensor], header: dict[str, str]) -> str:
    h = hashlib.sha256(header["meta"].encode() + b"\0" + header["param_groups"].encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\0{name}:{t.dtype}:{tuple(t.shape)}\0".encode() + t.numpy().tobytes())
    return h.hexdigest()


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
    header = {"meta": json.dumps(meta), "param_groups": json.dumps(groups)}
    save_file(tensors, str(tmp), metadata={**header, "sha256": _digest(tensors, header)})
    tmp.replace(path)


def read(source: str, path: Path, solver: str) -> tuple[dict[str, torch.Tensor], dict, list]:
    """Tensors, metadata and optimizer groups of an intact checkpoint (`source`: the resume value of
    `solver`); a damaged file or a wrong checksum is a UserError."""
    said = f"solver {solver} resume={source!r}: the checkpoint {path.name}"
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        intact = _digest(tensors, header) == header.get("sha256")
        meta, groups = json.loads(header["meta"]), json.loads(header["param_groups"])
    except Exception as e:  # noqa: BLE001 - any failure to parse is a damaged file
        raise UserError(f"{said} is damaged or not a checkpoint of isacbench's MAPPO family ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'})") from None
    if "sha256" not in header:
        raise UserError(f"{said} has no checksum (written before isacbench verified checkpoints), so it "
                        f"cannot be verified; train anew")
    if not intact:
        raise UserError(f"{said} is damaged: its sha256 checksum does not match its contents")
    return tensors, meta, groups


def same_algorithm(source: str, meta: dict, algorithm: str) -> dict:
    """The checkpoint's hyperparameters (with `algorithm`: mappo for checkpoints from before ippo and
    happo); a UserError when another algorithm (mappo / ippo / happo) trained it."""
    trained = {"algorithm": "mappo", **meta["hyper"]}
    if trained["algorithm"] != algorithm:
        raise UserError(f"solver {algorithm} resume={source!r}: the checkpoint was trained by {trained['algorithm']}, "
                        f"not {algorithm}; resume it with --solver {trained['algorithm']}")
    return trained


def verify(source: str, path: Path, hyper, env, total_frames: int | None) -> None:
    """Before a resumed run starts: the checkpoint is intact (`read`), was trained with these
    hyperparameters (all but `frames`, a default budget) on this environment (`signature`), and
    holds no more frames than the budget `total_frames` (None: a time budget). The algorithm
    (`Hyper.algorithm`: mappo / ippo / happo) is checked first, with its own error."""
    _, meta, _ = read(source, path, hyper.algorithm)
    said = f"solver {hyper.algorithm} resume={source!r}:"
    trained = same_algorithm(source, meta, hyper.algorithm)
    for what, theirs, ours, hint in (
            ("with other hyperparameters", trained, json.loads(json.dumps(dataclasses.asdict(hyper))),
             "solver config"),
            ("on another environment", meta["env"], signature(env), "task and task config")):
        diff = sorted(k for k in {**theirs, **ours} if k != "frames" and theirs.get(k) != ours.get(k))
        if diff:
            raise UserError(f"{said} the checkpoint was trained {what} ("
                            + "; ".join(f"{k}: {theirs.get(k)!r} in the checkpoint, {ours.get(k)!r} here"
                                        for k in diff) + f"); resume with the same {hint}")
    if total_frames is not None and meta["frames"] > total_frames:
        raise UserError(f"{said} the checkpoint holds {meta['frames']:,} frames, more than the budget of "
                        f"{total_frames:,} frames; resume with --budget-frames {meta['frames']} or more")


def load(source: str, path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer in place from an intact checkpoint (`read`); return the metadata."""
    tensors, meta, groups = read(source, path, model.algorithm)
    same_algorithm(source, meta, model.algorithm)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"solver {model.algorithm} resume={source!r}: the checkpoint does not fit this task/config "
                        f"({str(e).splitlines()[0]})") from None
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})  # casts to the params' device
    return meta


def locate(resume: str, tracking_uri: str | None = None, solver: str = "mappo") -> Path:
    """A checkpoint file for `solver` from a path (file or folder) or an MLflow run id in the store `tracking_uri`
    (the run's own store, `Reporter.tracking_uri`; None: as the CLI resolves it without a flag,
    $MLFLOW_TRACKING_URI, else the local sqlite store)."""
    p = Path(resume)
    for cand in (p, p / FILE, p / FOLDER / FILE):
        if cand.is_file():
            return cand
    import mlflow.artifacts

    from isacbench.tracking import resolve_uri

    dst = tempfile.mkdtemp(prefix=f"isacbench-{os.getpid()}-resume-")  # `runner.reap` removes it after a kill
    atexit.register(shutil.rmtree, dst, True)
    try:
        local = mlflow.artifacts.download_artifacts(run_id=resume, artifact_path=FOLDER, dst_path=dst,
                                                    tracking_uri=resolve_uri(tracking_uri))
    except Exception as e:  # noqa: BLE001 - any MLflow failure means the run id cannot be resumed
        raise UserError(f"solver {solver} resume={resume!r}: not a checkpoint file and no MLflow run with a "
                        f"'{FOLDER}/{FILE}' artifact ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    cand = Path(local) / FILE
    if not cand.is_file():
        raise UserError(f"solver {solver} resume={resume!r}: MLflow run has no '{FOLDER}/{FILE}' artifact")
    return cand
