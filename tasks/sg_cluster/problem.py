"""The sg-cluster decision problems: P1 (eq. 34), P2 (eq. 41) and the rate/CRLB region (eq. 39)."""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping

import numpy as np

from isacbench.api import Evaluation, Integer, MonotonicProgram, Problem, Real, Space, Structure

from . import analytic as A
from . import montecarlo as mc
from .config import SgClusterConfig


class SgClusterProblem(Problem):
    """Decision: L (communication cluster), N (sensing cluster), p_c, p_s [W] with p_c + p_s <= P^t
    (eq. 34a). P1 decides L only (p^c = p1_pc_ratio P^t, p^s = P^t - p^c, N = p1_N).
    Objective: P1 rate; P2 and region T^ISAC (eq. 40); region also returns
    objectives (rate, -root_crlb), both maximized."""

    def __init__(self, cfg: SgClusterConfig):
        self.cfg = cfg
        L = Integer("L", 1, cfg.L_max)
        if cfg.problem == "P1":
            self.space = Space((L,))
        else:
            self.space = Space((L, Integer("N", 1, cfg.N_max), Real("p_c", 0.0, cfg.Pt), Real("p_s", 0.0, cfg.Pt)))
        if cfg.problem == "region":
            self.objective_names = ("rate", "neg_root_crlb")
        self._rate = lru_cache(maxsize=None)(self._rate_one)
        self._sense = lru_cache(maxsize=None)(self._sense_one)

    # ------------------------------------------------------------------ decisions
    def full_decision(self, x: Mapping) -> tuple[int, int, float, float]:
        x = self.space.check(x)
        if self.cfg.problem == "P1":
            pc = self.cfg.p1_pc_ratio * self.cfg.Pt
            return x["L"], self.cfg.p1_N, pc, self.cfg.Pt - pc
        return x["L"], x["N"], float(x["p_c"]), float(x["p_s"])

    # ------------------------------------------------------------------ vectorized metric pieces
    def rate_vec(self, L: int, pc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rate [bits/s/Hz] and its standard error for p^c values `pc` [W]."""
        ratio = np.clip(np.asarray(pc, float) / self.cfg.Pt, 0.0, 1.0)
        if self.cfg.evaluator == "analytic":
            return self._rate(L)(ratio), np.zeros_like(ratio)
        st = self._rate(L).rate(ratio)
        return st.mean, st.se

    def crlb_vec(self, N: int, ps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected CRLB [m^2] and its standard error for p^s values `ps` [W]."""
        ps = np.atleast_1d(np.asarray(ps, float))
        if self.cfg.evaluator == "analytic":
            zeta2 = self.cfg.zeta2_per_watt() * ps
            return A.crlb_eq21(N, zeta2, self.cfg.lambda_b_m2, self.cfg.beta, self.kappa_s(N)), np.zeros_like(ps)
        sample = self._sense(N)
        out = [sample.crlb(p) for p in ps]
        return np.array([o.mean for o in out]), np.array([o.se for o in out])

    def kappa_s(self, N: int) -> float:
        return float(A.kappa_s(N, self.cfg.lambda_s / self.cfg.lambda_b, self.cfg.psi)[0])

    def kappa_c(self, L: int) -> float:
        return float(A.kappa_c(L, self.cfg.lambda_u / self.cfg.lambda_b, self.cfg.psi)[0]) if L > 1 else 1.0

    def _rate_one(self, L: int):
        c = self.cfg
        if c.evaluator == "analytic":
            kc = self.kappa_c(L)
            return lambda ratio: A.rate_nats(L, ratio, c.Mt, c.alpha, kc) / A.LN2
        rng = np.random.default_rng(np.random.SeedSequence([c.instance_seed, 0]))  # same networks for every L
        return mc.simulate_rate(c, L, c.mc_samples, rng)

    def _sense_one(self, N: int):
        c = self.cfg
        rng = np.random.default_rng(np.random.SeedSequence([c.instance_seed, 1]))
        return mc.simulate_sensing(c, N, c.mc_samples, rng)

    # ------------------------------------------------------------------ evaluation
    def metrics(self, L: int, N: int, pc: float, ps: float) -> dict[str, float]:
        c = self.cfg
        rate, rate_se = self.rate_vec(L, np.array([pc]))
        crlb, crlb_se = self.crlb_vec(N, np.array([ps]))
        m = {"rate": float(rate[0]), "crlb": float(crlb[0]), "root_crlb": float(np.sqrt(crlb[0])),
             "t_isac": float(A.t_isac(rate[0], crlb[0], c.rho))}
        if c.evaluator == "analytic":
            m.update(gdop=float(A.gdop_prop1(N)), kappa_c=self.kappa_c(L), kappa_s=self.kappa_s(N))
        else:
            rs, ss = self._rate(L), self._sense(N)
            g = mc.McStat.of(ss.gdop)
            m.update(rate_se=float(rate_se[0]), crlb_se=float(crlb_se[0]), gdop=float(g.mean), gdop_se=float(g.se))
            for name, arr in (("kappa_c", rs.kappa_c), ("kappa_s", ss.kappa_s)):
                st = mc.McStat.of(arr) if arr is not None else mc.McStat(np.float64(1.0), np.float64(0.0))
                m[name], m[name + "_se"] = float(st.mean), float(st.se)
        return m

    def evaluate(self, x: Mapping) -> Evaluation:
        c = self.cfg
        L, N, pc, ps = self.full_decision(x)
        m = self.metrics(L, N, pc, ps)
        violations = {}
        backhaul = m["rate"] + c.e_backhaul * N - c.C_backhaul  # eq. 34c
        if backhaul > 0:
            violations["backhaul"] = float(backhaul)
        if pc + ps > c.Pt * (1 + 1e-12):  # eq. 34a
            violations["power"] = float(pc + ps - c.Pt)
        objective = m["rate"] if c.problem == "P1" else m["t_isac"]
        objectives = (m["rate"], -m["root_crlb"]) if c.problem == "region" else None
        return Evaluation(objective=objective, feasible=not violations, violations=violations,
                          metrics=m, objectives=objectives)

    # ------------------------------------------------------------------ monotonic structure (P2)
    def structure(self, at=None) -> Structure:  # `at` ignored: the structure depends on no decision
        """P2 / region scalar objective as monotonic programs, one per (L, N) with a feasible
        backhaul at p_c = 0 and N <= argmin_N CRLB (larger N are dominated): y = (p_c, p_s);
        f = rho R(L, p_c) + (1-rho) CRLB(N, p_s)^-1/2 and g = max(p_c + p_s - P^t, R(L, p_c) + e N - C)
        (eq. 34a, 34c, 41) are increasing in y. P1: none."""
        c = self.cfg
        if c.problem == "P1":
            return Structure()
        n_hi = c.N_max
        if c.evaluator == "analytic":  # N beyond argmin_N CRLB is dominated: worse CRLB, more backhaul
            n_hi = 1 + int(np.argmin([self.crlb_vec(N, np.array([c.Pt]))[0][0] for N in range(1, c.N_max + 1)]))
        progs = []
        for L in range(1, c.L_max + 1):
            for N in range(1, n_hi + 1):
                if c.e_backhaul * N > c.C_backhaul:
                    continue
                progs.append(MonotonicProgram(
                    low=np.zeros(2), high=np.full(2, c.Pt),
                    objective=lambda y, L=L, N=N: A.t_isac(self.rate_vec(L, y[:, 0])[0],
                                                            self.crlb_vec(N, y[:, 1])[0], c.rho),
                    constraint=lambda y, L=L, N=N: np.maximum(
                        y[:, 0] + y[:, 1] - c.Pt, self.rate_vec(L, y[:, 0])[0] + c.e_backhaul * N - c.C_backhaul),
                    to_decision=lambda y, L=L, N=N: {"L": L, "N": N, "p_c": float(y[0]), "p_s": float(y[1])},
                    label=f"L={L},N={N}"))
        return Structure(monotonic=progs)
