"""Signaling overhead (eq. 39-41, 46), normalized utilities (eq. 43-45), USR (eq. 42), reward (eq. 75)."""
from __future__ import annotations

import numpy as np

from .config import Params


def overhead(p: Params, n_fed_users: np.ndarray, n_fed_targets: np.ndarray, group: np.ndarray) -> dict:
    """Per-frame CSI-exchange overheads, batched over the leading axis.

    n_fed_users, n_fed_targets: (B, M) |K_m^F|, |Q_m^F|; group: (B, M) CFN index of each CCN.
      O^{L,(1)}_m = (A-1) K N_tx                                       (eq. 39)
      O^{L,(2)}_m = |K_m^F| A N_tx + 20 |Q_m^F|                         (eq. 40)
      O^F_r = sum_{i in S_r} (|K_r^F| |S_r| - |K_i^F|) ((A-1) N_tx + A N_tx)   (eq. 41)
      S = (sum_m (O_bar_m + O^{L,(1)}_m + O^{L,(2)}_m) + sum_r O^F_r) / o   (eq. 46)"""
    onehot = group[..., None] == np.arange(p.R)  # (B, M, R)
    size = onehot.sum(axis=1)  # |S_r|
    users_r = np.einsum("bm,bmr->br", n_fed_users, onehot)  # |K_r^F|
    o1 = np.full(n_fed_users.shape, float((p.A - 1) * p.K * p.N))
    o2 = n_fed_users * p.A * p.N + 20.0 * n_fed_targets
    per_i = np.einsum("bmr,br->bm", onehot, users_r * size) - n_fed_users  # |K_r^F||S_r| - |K_i^F|, i in S_r
    of = np.einsum("bm,bmr->br", per_i, onehot) * ((p.A - 1) * p.N + p.A * p.N)
    total = (np.sum(p.O_bar + o1 + o2, axis=1) + of.sum(axis=1)) / p.o
    return {"O_L1": o1, "O_L2": o2, "O_F": of, "signaling": total}


def comm_utility(rate: np.ndarray, p: Params) -> np.ndarray:
    """U_bar^C = (min[(U - U_min)/(U_max - U_min), 1])^+ (eq. 44)."""
    return np.clip((rate - p.rate_min) / (p.rate_max - p.rate_min), 0.0, 1.0)


def sense_utility(err_pos: np.ndarray, err_vel: np.ndarray, p: Params) -> np.ndarray:
    """U_bar^R = (min[U_bar^RP, U_bar^RV, 1])^+ with U_bar^RX = (log10 U_max - log10 U)/(log10 U_max -
    log10 U_min) (eq. 45). Eq. 45 writes min[(RP, RV), 1]; we read it as the minimum of both
    normalized errors and 1: a sensing service is only as good as its worse requirement."""
    span = np.log10(p.err_max) - np.log10(p.err_min)
    up = (np.log10(p.err_max) - np.log10(np.maximum(err_pos, 1e-300))) / span
    uv = (np.log10(p.err_max) - np.log10(np.maximum(err_vel, 1e-300))) / span
    return np.clip(np.minimum(up, uv), 0.0, 1.0)


def usr(utility: np.ndarray, signaling: np.ndarray) -> np.ndarray:
    """USR[n] = U[n] / S[n] (eq. 42)."""
    return utility / signaling


def reward(utility: np.ndarray, signaling: np.ndarray, floor: float) -> np.ndarray:
    """r_n = log U[n] - log S[n] (eq. 75); U is floored so that a frame with zero utility gives a
    finite (very negative) reward."""
    return np.log(np.maximum(utility, floor)) - np.log(signaling)
