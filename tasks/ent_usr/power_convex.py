"""Per-frame power allocation of one ent-usr block (a CCN or CFN, `power.Block`) as a
`ConvexProgram` in the power levels lv (users then targets), for the `convex` solver.

True objective (eq. 42-45), for fixed topology, beams and sensing weights:
    f(lv) = (sum_k U^C(r_k(lv)) + sum_t U^R_t(lv)) / S,  s.t.  load @ lv <= 1 (eq. 16-17), 0 <= lv <= cap,
with r_k = sum_i W_ki log(1 + SINR_ik) (eq. 24-26) and U^R from the Bayesian FIM
J_t(lv) = J_pred,t + sum_s lv_s F_ts (eq. 28-36), affine in lv because Gamma (eq. 32) is.

Concave minorant at an anchor lv0 (every piece <= the true one, equal at lv0 where the utilities
are not clipped at 0):
  * rate (SCA of the DC form): log(1 + SINR) = log(S + I) - log(I) with S + I and I affine in lv;
    log(I) <= log(I0) + I / I0 - 1 (concavity), so the rate keeps its concave log(S + I) and
    loses only a linear term;
  * U^C = clip(x, 0, 1) >= min(x, 1) (eq. 44), concave;
  * errors (eq. 37-38): e_pos(lv) = tr(P^T J_t(lv)^{-1} P) = matrix_frac(P, J_t(lv)), convex in lv
    (P = the two position / velocity columns of I_4); log10(e) <= log10(e0) + (e / e0 - 1) / ln 10,
    so the normalized utility of eq. 45, (log10 U_max - log10 e) / span, is bounded below by a
    concave function of lv; the min of eq. 45 keeps concavity.
Numerics: SINR terms are divided by the noise power; each target's BFIM is congruence-scaled by
D = diag(J(start))^{-1/2} (J^{-1} = D (D J D)^{-1} D) and its errors are in units of their values
at the start point, so the SDP's data are O(1) there.
"""
from __future__ import annotations

from typing import Callable

import cvxpy as cp
import numpy as np

from isacbench.api import ConvexProgram

from . import sensing, signaling
from .config import Params
from .power import LV_MAX, Block, subbands

POS, VEL = np.eye(4)[:, :2], np.eye(4)[:, 2:]


class PowerBlockProgram(ConvexProgram):
    """One block's power program in its levels (users, then targets) and its concave minorant."""

    minorant = True

    def __init__(self, p: Params, block: Block, signaling_total: float, start: np.ndarray,
                 to_decision: Callable[[np.ndarray], dict]):
        self.p, self.b, self.S = p, block, signaling_total
        self.label = block.label
        self.low = np.zeros(block.dim)
        self.high = block.caps
        self.start = np.clip(start, self.low, self.high)
        self._to_decision = to_decision
        nu = len(block.users)
        # rate terms (i, k) on used subbands (eq. 26 weights > 0)
        self.i_idx, self.k_idx = np.nonzero(block.weight.T > 0)
        rows = block.gain[self.i_idx, self.k_idx]  # G_ik. of eq. 24, (n_terms, U)
        own = rows[np.arange(len(rows)), self.k_idx]
        interf = rows.copy()
        interf[np.arange(len(rows)), self.k_idx] = 0.0
        self.a_int = (np.concatenate([interf, np.zeros((len(rows), len(block.targets)))], axis=1)
                      + block.err[self.i_idx, self.k_idx]) / block.noise  # I / sigma - 1 per unit lv
        self.a_sig = self.a_int.copy()
        self.a_sig[np.arange(len(rows)), self.k_idx] += own / block.noise  # (S + I) / sigma - 1
        self.w = np.zeros((nu, len(self.i_idx)))
        self.w[self.k_idx, np.arange(len(self.i_idx))] = block.weight[self.k_idx, self.i_idx]
        # FIM per unit level of every service (eq. 28-34), congruence-scaled per target
        s = block.sense
        if len(block.targets):
            basis = sum(sensing.fim(np.broadcast_to(s["tau"], (block.dim,) + s["tau"].shape),
                                    np.broadcast_to(s["f"], (block.dim,) + s["f"].shape),
                                    np.broadcast_to(s["u"], (block.dim,) + s["u"].shape),
                                    s["u"][None] * coef.transpose(2, 1, 0),
                                    np.broadcast_to(sums, (block.dim,) + sums.shape))
                        for coef, sums in subbands(s))  # (S, T, 4, 4), summed per beampattern (power.subbands)
            self.fim_basis, self.j_pred = basis, s["J_pred"]
            j0 = self.j_pred + np.einsum("s,stij->tij", self.start, basis)
            self.scale = 1.0 / np.sqrt(np.einsum("tii->ti", j0))  # (T, 4): unit diagonal at the start (SDP)
            self.e_unit = self._errors(self.start[None])[0]  # (2, T) errors at the start: the SDP's units
        self.err_log_max = np.log10(p.err_max)
        self.err_span = np.log10(p.err_max) - np.log10(p.err_min)

    # ---------------------------------------------------------------- true objective
    def utilities(self, lv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, U) communication and (n, T) sensing utilities of eq. 44-45 at levels lv (n, U+T)."""
        b = self.b
        rate = np.einsum("ki,nik->nk", b.weight, np.log1p(b.sinr(lv)))  # eq. 24-26
        if not len(b.targets):
            return signaling.comm_utility(rate, self.p), np.zeros((len(lv), 0))
        e_pos, e_vel = self._errors(lv).transpose(1, 0, 2)
        return signaling.comm_utility(rate, self.p), signaling.sense_utility(e_pos, e_vel, self.p)

    def _errors(self, lv: np.ndarray) -> np.ndarray:
        """(n, 2, T) position and velocity errors (eq. 37-38) of the BFIM J_pred + sum_s lv_s F_s (eq. 36)."""
        return np.stack(sensing.errors(self.j_pred[None] + np.einsum("ns,stij->ntij", lv, self.fim_basis)), axis=1)

    def objective(self, lv: np.ndarray) -> np.ndarray:
        lv = np.atleast_2d(np.asarray(lv, float))
        uc, ur = self.utilities(lv)
        ok = ((lv @ self.b.load.T).max(axis=1, initial=0.0) <= 1.0 + 1e-9) & np.all(lv >= 0, axis=1) \
            & np.all(lv <= LV_MAX, axis=1)
        return np.where(ok, (uc.sum(axis=1) + ur.sum(axis=1)) / self.S, -np.inf)  # eq. 42-43

    # ---------------------------------------------------------------- surrogate
    def surrogate(self, x: cp.Variable):
        p, b = self.p, self.b
        n_terms, n_t = len(self.i_idx), len(b.targets)
        inv_i0 = cp.Parameter(n_terms, nonneg=True)
        log_i0 = cp.Parameter(n_terms)
        pieces = []
        if n_terms:
            log_sinr = cp.log(1 + self.a_sig @ x) - log_i0 - cp.multiply(inv_i0, 1 + self.a_int @ x) + 1
            rate = self.w @ log_sinr
            pieces.append(cp.sum(cp.minimum((rate - p.rate_min) / (p.rate_max - p.rate_min), 1.0)))
        if n_t:
            inv_e0 = cp.Parameter((2, n_t), nonneg=True)
            log_e0 = cp.Parameter((2, n_t))
            outer = self.scale[:, :, None] * self.scale[:, None, :]  # D J D: unit diagonal at the start
            flat = (self.fim_basis * outer[None]).reshape(b.dim, n_t, 16)
            errs = [[], []]
            for t in range(n_t):
                J = cp.reshape(flat[:, t].T @ x, (4, 4), order="C") + self.j_pred[t] * outer[t]
                J = (J + J.T) / 2
                for row, P in enumerate((POS, VEL)):  # e / e_unit = tr(P^T J^{-1} P) / e_unit
                    errs[row].append(cp.matrix_frac(P * self.scale[t][:, None] / np.sqrt(self.e_unit[row, t]), J))
            util = []
            for row in range(2):
                e = cp.hstack(errs[row])  # in units of e_unit
                log10_e = (np.log(self.e_unit[row]) + log_e0[row] + cp.multiply(inv_e0[row], e) - 1) / np.log(10)
                util.append((self.err_log_max - log10_e) / self.err_span)
            pieces.append(cp.sum(cp.minimum(util[0], util[1], 1.0)))
        objective = sum(pieces) / self.S if pieces else cp.Constant(0.0)
        constraints = [b.load @ x <= 1.0] if b.load.size else []

        def anchor(lv0: np.ndarray) -> int:
            i0 = 1.0 + self.a_int @ lv0
            inv_i0.value, log_i0.value = 1.0 / i0, np.log(i0)
            if n_t:
                e0 = self._errors(lv0[None])[0] / self.e_unit
                inv_e0.value, log_e0.value = 1.0 / e0, np.log(e0)
            return 0  # closed forms: no evaluations of f

        return objective, constraints, anchor

    def to_decisions(self, lv: np.ndarray) -> list[dict]:
        return [self._to_decision(np.clip(lv, self.low, self.high))]
