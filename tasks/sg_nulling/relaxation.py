"""Continuous relaxation of P1 / P2 (eq. 16, 19) for successive convex approximation, one branch
per number of nulled neighbours Q.

For a fixed Q, z = (ln K, ln L, ln J) is real. The DoF constraint (eq. 16a),
KL + J(Q-1) + 1 <= M_t, reads log(e^{z_K + z_L} + (Q-1) e^{z_J}) <= log(M_t - 1): convex, kept
exactly. The objective is the analytic model at real (K, L, J): R_c of eq. (22) is defined for real
arguments (Y of Theorem 1, MISR gain through log-Gamma), and R_s(K, Q) (eqs. 10-14, tabulated per
integer K) is interpolated linearly in K. The surrogate at an anchor z0 is the first-order model
f(z0) + grad f(z0)^T (z - z0) (forward differences, 3 evaluations), so the SCA solver adds a trust
region. P2's constraints (eq. 19a: R_s >= R_s^th, R_c >= R_c^th, T_s >= T_s^th) enter as an exact
penalty, f - mu sum_j max(0, 1 - c_j / th_j), in the true value and, linearized, in the surrogate;
the floors L >= L^th and Q >= Q^th are bounds.

Rounding and repair: the 8 floor / ceil neighbours of (K, L, J), each repaired to DoF feasibility by
decrementing the variable with the largest term (J (Q-1) or the larger of K, L) while the DoF
constraint is violated; the solver evaluates them with the true problem (analytic or Monte Carlo).
"""
from __future__ import annotations

import itertools

import cvxpy as cp
import numpy as np

from isacbench.api import ConvexProgram

from . import analytic
from .config import SgNullingConfig
from .problem import sensing_rates

FD_STEP = 1e-6  # forward-difference step in z = ln(K, L, J)
PENALTY = 100.0  # mu of the exact penalty, times (1 + |f(start)|)


class RelaxedBranch(ConvexProgram):
    """The relaxed problem for one Q (see the module docstring)."""

    minorant = False

    def __init__(self, cfg: SgNullingConfig, Q: int):
        self.cfg, self.Q, self.label = cfg, Q, f"Q={Q}"
        self.rates = sensing_rates(cfg.sensing_gain, cfg.alpha, cfg.beta, cfg.lambda_b, cfg.Mt - 1)
        floor_l = cfg.L_min if cfg.problem == "P2" else 1
        self.low = np.log([1.0, floor_l, 1.0])
        self.high = np.log([cfg.Mt - 1.0, cfg.Mt - 1.0, float(cfg.J_max)])
        self.start = self.low.copy()  # K = J = 1, L = its floor: DoF-feasible iff the branch is non-empty
        self.thresholds = {k: v for k, v in (("rate_sense", cfg.rate_sense_min), ("rate_comm", cfg.rate_comm_min),
                                             ("ase_sense", cfg.ase_sense_min)) if cfg.problem == "P2" and v}
        self.mu = 0.0
        if self.thresholds:
            self.mu = PENALTY * (1.0 + abs(float(self._value(self.metrics(self.start[None]))[0])))

    @property
    def empty(self) -> bool:
        return self.dof_excess(np.exp(self.start)) > 0

    def dof_excess(self, kl_j: np.ndarray) -> float:
        K, L, J = kl_j
        return K * L + J * (self.Q - 1) + 1 - self.cfg.Mt  # eq. 16a

    # ---------------------------------------------------------------- continuous model
    def metrics(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Analytic metrics (eqs. 3, 6, 8, 13-15) at real K, L, J = e^z (n, 3), R_s interpolated in K."""
        cfg = self.cfg
        K, L, J = np.exp(z).T
        lo = np.clip(np.floor(K), 1, cfg.Mt - 2).astype(int)
        frac = K - lo
        rs = (1 - frac) * self.rates(lo, self.Q) + frac * self.rates(lo + 1, self.Q)
        rc = analytic.rate_comm(K, L, J, self.Q, cfg.Mt, cfg.alpha)
        tc, ts = cfg.lambda_b * K * rc, analytic.ase_sense(J, rs, cfg.lambda_b)
        return {"rate_comm": rc, "rate_sense": rs, "ase_comm": tc, "ase_sense": ts,
                "ase_weighted": cfg.rho * tc + (1 - cfg.rho) * ts}

    def _value(self, m: dict[str, np.ndarray]) -> np.ndarray:
        """The objective of P1 (eq. 15) or P2 (T_c), minus the P2 penalty."""
        f = m["ase_weighted"] if self.cfg.problem == "P1" else m["ase_comm"]
        shortfall = sum(np.maximum(0.0, 1.0 - m[k] / th) for k, th in self.thresholds.items())
        return f - self.mu * shortfall

    def objective(self, z: np.ndarray) -> np.ndarray:
        z = np.atleast_2d(z)
        K, L, J = np.exp(z).T
        ok = (K * L + J * (self.Q - 1) + 1 <= self.cfg.Mt * (1 + 1e-12)) & np.all(
            (z >= self.low - 1e-12) & (z <= self.high + 1e-12), axis=1)
        out = np.full(len(z), -np.inf)
        if ok.any():
            out[ok] = self._value(self.metrics(z[ok]))
        return out

    # ---------------------------------------------------------------- surrogate
    def surrogate(self, z: cp.Variable):
        offset, grad = cp.Parameter(), cp.Parameter(3)  # f(z0) - grad^T z0 (DPP: no parameter products)
        names = list(self.thresholds)
        c_off, cgrad = cp.Parameter(len(names)), cp.Parameter((len(names), 3))
        kl = z[0] + z[1]
        dof = cp.log_sum_exp(cp.hstack([kl, z[2] + np.log(self.Q - 1)])) if self.Q > 1 else kl
        objective = grad @ z + offset
        if names:  # linearized P2 constraints, relative shortfalls, exact penalty
            th = np.array([self.thresholds[k] for k in names])
            lin = cgrad @ z + c_off
            objective = objective - self.mu * cp.sum(cp.pos(1.0 - cp.multiply(1.0 / th, lin)))

        def anchor(z0: np.ndarray) -> int:
            pts = np.vstack([z0, z0 + FD_STEP * np.eye(3)])
            pts[1:] = np.where(pts[1:] <= self.high, pts[1:], z0 - FD_STEP * np.eye(3))  # stay in the box
            m = self.metrics(pts)
            step = np.diag(pts[1:] - z0)
            f = m["ase_weighted"] if self.cfg.problem == "P1" else m["ase_comm"]
            grad.value = (f[1:] - f[0]) / step
            offset.value = float(f[0] - grad.value @ z0)
            if names:
                c = np.array([m[k] for k in names])  # (n_c, 4)
                cgrad.value = (c[:, 1:] - c[:, :1]) / step
                c_off.value = c[:, 0] - cgrad.value @ z0
            return 3  # finite-difference evaluations

        return objective, [dof <= np.log(self.cfg.Mt - 1.0)], anchor

    # ---------------------------------------------------------------- rounding
    def to_decisions(self, z: np.ndarray) -> list[dict]:
        cfg = self.cfg
        real = np.exp(np.clip(z, self.low, self.high))
        lo, hi = np.rint(np.exp(self.low)).astype(int), np.rint(np.exp(self.high)).astype(int)
        out = []
        for corner in itertools.product(*[(np.floor(v), np.ceil(v)) for v in real]):
            K, L, J = (int(np.clip(v, a, b)) for v, a, b in zip(corner, lo, hi))
            while K * L + J * (self.Q - 1) + 1 > cfg.Mt:  # repair (eq. 16a)
                if J > lo[2] and J * (self.Q - 1) >= max(K, L):
                    J -= 1
                elif L >= K and L > lo[1]:
                    L -= 1
                elif K > lo[0]:
                    K -= 1
                else:
                    break
            x = {"K": K, "L": L, "J": J, "Q": self.Q}
            if K * L + J * (self.Q - 1) + 1 <= cfg.Mt and x not in out:
                out.append(x)
        return out


def branches(cfg: SgNullingConfig) -> list[RelaxedBranch]:
    """The non-empty branches Q = Q_floor .. M_t - 1 (P2: Q >= Q^th)."""
    first = cfg.Q_min if cfg.problem == "P2" else 1
    return [b for b in (RelaxedBranch(cfg, q) for q in range(first, cfg.Mt)) if not b.empty]
