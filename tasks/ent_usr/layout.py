"""Network layout (Sec. VI): M cells on a sqrt(M) x sqrt(M) grid over the square area, A APs per
cell on a circle around the cell centre (host AP first), users and targets uniform in their cell.
The base layout is fixed per instance; every episode perturbs all nodes by up to +-perturb."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Params


@dataclass(frozen=True)
class Layout:
    centers: np.ndarray  # (M, 2) cell centres [m]
    ap: np.ndarray  # (MA, 2)
    users: np.ndarray  # (MK, 2)
    targets: np.ndarray  # (MQ, 2) initial target positions


def cell_centers(p: Params) -> np.ndarray:
    """Row-major grid: cell m sits at column m % g, row m // g."""
    m = np.arange(p.M)
    return np.stack([(m % p.grid + 0.5) * p.cell, (m // p.grid + 0.5) * p.cell], axis=-1)


def base_layout(p: Params, rng: np.random.Generator) -> Layout:
    centers = cell_centers(p)
    ang = np.pi / 2 + 2 * np.pi * np.arange(p.A) / p.A
    offs = p.ap_radius_m * np.stack([np.cos(ang), np.sin(ang)], axis=-1) if p.A > 1 else np.zeros((1, 2))
    ap = (centers[:, None, :] + offs[None]).reshape(p.MA, 2)
    half = 0.45 * p.cell  # keep nodes 5% of a cell side away from its border

    def uniform(n):
        return (centers[:, None, :] + rng.uniform(-half, half, size=(p.M, n, 2))).reshape(p.M * n, 2)

    return Layout(centers=centers, ap=ap, users=uniform(p.K), targets=uniform(p.Q))


def perturb(x: np.ndarray, p: Params, batch: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) -> (batch, n, 2): each coordinate moved by U[-perturb, +perturb] (Sec. VI)."""
    return x[None] + rng.uniform(-p.perturb_m, p.perturb_m, size=(batch, *x.shape))
