"""The per-frame metrics of ent-usr, named once: every frame's `end_frame` (environment) and every
frame problem's `Evaluation.metrics` report exactly `METRICS`, each per environment (B,).

  usr               USR[n] = U[n] / S[n] (eq. 42), the objective
  utility           U[n]: communication plus sensing utility (eq. 43-45)
  signaling         S[n]: normalized signaling overhead (eq. 39-41, 46)
  utility_comm      sum of the users' normalized communication utilities (eq. 44)
  utility_sense     sum of the targets' normalized sensing utilities (eq. 45)
  fed_user_share    share of users classified federated, |K^F| / MK (eq. 57)
  fed_target_share  share of targets classified federated, |Q^F| / MQ (eq. 58)
  coop_share        share of all services (users and targets) served cooperatively: federated
                    services of a CCN whose CFN S_r groups two or more CCNs (eq. 65); a federated
                    service of a CFN with one member is served by its own cell's APs only
"""
from __future__ import annotations

import numpy as np

from .config import Params
from .model import Decision

USR_PARTS = ("utility", "signaling", "utility_comm", "utility_sense")
TOPOLOGY_SHARES = ("fed_user_share", "fed_target_share", "coop_share")
METRICS = ("usr",) + USR_PARTS + TOPOLOGY_SHARES


def frame_metrics(p: Params, out: dict, d: Decision) -> dict[str, np.ndarray]:
    """`METRICS` of one frame, each (B,): `out` is `model.evaluate`'s result for decision `d`."""
    b = d.group.shape[0]
    size = np.sum(d.group[..., None] == np.arange(p.R), axis=1)  # (B, R): |S_r| (eq. 65)
    shared = np.take_along_axis(size, d.group, axis=1) >= 2  # (B, M): CCN m's CFN has >= 2 CCNs
    fed = np.concatenate([d.fed_users.reshape(b, p.M, p.K), d.fed_targets.reshape(b, p.M, p.Q)], axis=-1)
    shares = {"fed_user_share": d.fed_users.mean(axis=-1), "fed_target_share": d.fed_targets.mean(axis=-1),
              "coop_share": (fed & shared[..., None]).mean(axis=(1, 2))}
    values = {**{k: out[k] for k in ("usr",) + USR_PARTS}, **shares}
    return {k: np.asarray(values[k], dtype=float) for k in METRICS}
