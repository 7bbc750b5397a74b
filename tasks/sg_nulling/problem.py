"""The static decision problem: choose (K, L, J, Q) for P1 (eq. 16) or P2 (eq. 19)."""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping

import numpy as np

from isacbench.api import Evaluation, Integer, Problem, Space, Structure

from . import analytic, montecarlo
from .config import SgNullingConfig

VARIABLES = ("K", "L", "J", "Q")


@lru_cache(maxsize=32)
def sensing_rates(c: float, alpha: float, beta: float, lambda_b: float, Q_max: int) -> analytic.SensingRates:
    """Shared, lazily filled R_s(K, Q) tables (one per set of sensing constants)."""
    return analytic.SensingRates(c, alpha, beta, lambda_b, Q_max)


def space(cfg: SgNullingConfig) -> Space:
    """The integer box: K, L, Q in 1..M_t-1 (eq. 16a with the other variables >= 1), J in 1..J_max (16b)."""
    return Space((Integer("K", 1, cfg.Mt - 1), Integer("L", 1, cfg.Mt - 1),
                  Integer("J", 1, cfg.J_max), Integer("Q", 1, cfg.Mt - 1)))


def dof_excess(K, L, J, Q, Mt: int):
    """KL + J(Q-1) + 1 - M_t: positive where the DoF constraint (eq. 16a / 19b) is violated."""
    return np.asarray(K) * np.asarray(L) + np.asarray(J) * (np.asarray(Q) - 1) + 1 - Mt


def analytic_metrics(cfg: SgNullingConfig, K, L, J, Q) -> dict[str, np.ndarray]:
    """Rates and ASEs of DoF-feasible decisions (arrays broadcast): eqs. (3), (6), (8), (13), (14), (15)."""
    K, L, J, Q = np.broadcast_arrays(*(np.asarray(v, dtype=int) for v in (K, L, J, Q)))
    rc = analytic.rate_comm(K, L, J, Q, cfg.Mt, cfg.alpha)
    rs = sensing_rates(cfg.sensing_gain, cfg.alpha, cfg.beta, cfg.lambda_b, cfg.Mt - 1)(K, Q)
    tc = cfg.lambda_b * K * rc
    ts = analytic.ase_sense(J, rs, cfg.lambda_b)
    return {"ase_comm": tc, "ase_sense": ts, "rate_comm": rc, "rate_sense": rs,
            "ase_weighted": cfg.rho * tc + (1 - cfg.rho) * ts}


def p2_violations(cfg: SgNullingConfig, m: Mapping[str, float], L: int, Q: int) -> dict[str, float]:
    """Shortfalls of the P2 constraints (eq. 19a and the cluster floors of Fig. 5); empty if met."""
    v = {}
    for key, metric in (("rate_sense_min", "rate_sense"), ("rate_comm_min", "rate_comm"),
                        ("ase_sense_min", "ase_sense")):
        th = getattr(cfg, key)
        if th is not None and m[metric] < th:
            v[key] = float(th - m[metric])
    if L < cfg.L_min:
        v["L_min"] = float(cfg.L_min - L)
    if Q < cfg.Q_min:
        v["Q_min"] = float(cfg.Q_min - Q)
    return v


class SgNullingProblem(Problem):
    """evaluate({K, L, J, Q}): P1 maximizes T^ASE = rho T_c + (1 - rho) T_s (eq. 15-16); P2 maximizes
    T_c under eq. (19a). DoF-infeasible points (eq. 16a) get objective 0 (a lower bound of every
    feasible objective: the formulas are undefined there), feasible=False, violations={'dof': excess}."""

    def __init__(self, cfg: SgNullingConfig):
        self.config = cfg
        self.space = space(cfg)

    def metrics(self, K: int, L: int, J: int, Q: int) -> dict[str, float]:
        cfg = self.config
        if cfg.evaluator == "analytic":
            return {k: float(v) for k, v in analytic_metrics(cfg, K, L, J, Q).items()}
        m = montecarlo.evaluate(cfg.instance_seed, K, L, J, Q, cfg.Mt, cfg.alpha, cfg.beta, cfg.lambda_b,
                                cfg.sensing_gain, cfg.mc_samples, cfg.mc_explicit)
        m["ase_weighted"] = cfg.rho * m["ase_comm"] + (1 - cfg.rho) * m["ase_sense"]
        m["ase_weighted_se"] = float(np.hypot(cfg.rho * m["ase_comm_se"], (1 - cfg.rho) * m["ase_sense_se"]))
        return m

    def evaluate(self, x: Mapping) -> Evaluation:
        x = self.space.check(x)
        K, L, J, Q = (x[n] for n in VARIABLES)
        excess = int(dof_excess(K, L, J, Q, self.config.Mt))
        if excess > 0:
            return Evaluation(objective=0.0, feasible=False, violations={"dof": float(excess)})
        m = self.metrics(K, L, J, Q)
        if self.config.problem == "P1":
            return Evaluation(objective=m["ase_weighted"], metrics=m)
        v = p2_violations(self.config, m, L, Q)
        return Evaluation(objective=m["ase_comm"], feasible=not v, violations=v, metrics=m)

    def structure(self, at=None) -> Structure:  # `at` ignored: the structure depends on no decision
        """The continuous relaxation per Q as convex programs, for SCA with rounding and repair
        (relaxation.py)."""
        from .relaxation import branches
        return Structure(convex=branches(self.config))


def feasible_points(cfg: SgNullingConfig) -> dict[str, np.ndarray]:
    """Every DoF-feasible (K, L, J, Q) of the box (eq. 16a-b), as flat integer arrays."""
    m = cfg.Mt - 1
    K, L, J, Q = np.meshgrid(np.arange(1, m + 1), np.arange(1, m + 1), np.arange(1, cfg.J_max + 1),
                             np.arange(1, m + 1), indexing="ij")
    ok = dof_excess(K, L, J, Q, cfg.Mt) <= 0
    return {"K": K[ok], "L": L[ok], "J": J[ok], "Q": Q[ok]}
