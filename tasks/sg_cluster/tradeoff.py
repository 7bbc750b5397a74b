"""Rate / CRLB trade-off on a grid (eq. 39 boundary, eq. 41 optimum, time-sharing corners),
vectorized over the power grid with p^s = P^t - p^c (the power constraint is tight at optimum)."""
from __future__ import annotations

import numpy as np

from .problem import SgClusterProblem


def grid(problem: SgClusterProblem, points: int = 41) -> dict[str, np.ndarray]:
    """Every (L, N, p^c) of the grid with rate, CRLB, T^ISAC and backhaul feasibility (flat arrays)."""
    c = problem.cfg
    pc = np.linspace(0.0, c.Pt, points)
    Ls, Ns = np.arange(1, c.L_max + 1), np.arange(1, c.N_max + 1)
    rate = np.stack([problem.rate_vec(int(L), pc)[0] for L in Ls])  # (L, p)
    crlb = np.stack([problem.crlb_vec(int(N), c.Pt - pc)[0] for N in Ns])  # (N, p)
    R = np.broadcast_to(rate[:, None, :], (len(Ls), len(Ns), points))
    C = np.broadcast_to(crlb[None, :, :], R.shape)
    L3, N3, P3 = np.meshgrid(Ls, Ns, pc, indexing="ij")
    with np.errstate(divide="ignore"):
        t = c.rho * R + (1 - c.rho) / np.sqrt(C)
    feas = R + c.e_backhaul * N3 - c.C_backhaul <= 0
    return {k: v.ravel() for k, v in dict(L=L3, N=N3, p_c=P3, rate=R, crlb=C, t_isac=t, feasible=feas).items()}


def pareto(rate: np.ndarray, root_crlb: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated in (max rate, min root CRLB), sorted by rate."""
    order = np.lexsort((root_crlb, -rate))  # rate descending, ties: smaller CRLB first
    keep, best = [], np.inf
    for i in order:
        if root_crlb[i] < best:
            keep.append(i)
            best = root_crlb[i]
    return np.array(keep[::-1], int)


def corners(g: dict[str, np.ndarray]) -> tuple[int, int]:
    """Time-sharing corners: best feasible rate at p^s = 0 and best feasible CRLB at p^c = 0."""
    f = g["feasible"]
    comm = np.where(f & (g["p_c"] == g["p_c"].max()) & (g["N"] == 1))[0]
    sens = np.where(f & (g["p_c"] == 0.0) & (g["L"] == 1))[0]
    return int(comm[np.argmax(g["rate"][comm])]), int(sens[np.argmin(g["crlb"][sens])])


def time_sharing(rate_comm: float, crlb_sens: float, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time sharing: a fraction tau of the time at the communication corner, 1 - tau at the
    sensing corner. Rates average; Fisher information adds over time, so CRLB = crlb_sens/(1-tau)."""
    tau = np.asarray(tau, float)
    with np.errstate(divide="ignore"):
        return tau * rate_comm, crlb_sens / (1 - tau)


def best_time_sharing(rate_comm: float, crlb_sens: float, rho: float) -> tuple[float, float]:
    """(tau*, T^ISAC) maximizing rho tau R + (1-rho) sqrt(1-tau)/sqrt(CRLB_s) (eq. 40; concave in tau)."""
    if rho == 0 or rate_comm <= 0:
        tau = 0.0
    else:
        tau = float(np.clip(1 - ((1 - rho) / (2 * rho * rate_comm * np.sqrt(crlb_sens))) ** 2, 0.0, 1.0))
    r, c = time_sharing(rate_comm, crlb_sens, tau)
    with np.errstate(divide="ignore"):
        return tau, float(rho * r + (1 - rho) / np.sqrt(c))
