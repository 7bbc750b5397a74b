"""Baselines of the sg-cluster task (Meng et al., Secs. IV-B, V and VI):
`approx-search` (Sec. IV-B eta* cluster size + Prop. 3 pruned power search),
`time-sharing` (between the communication-only and sensing-only corner points) and
`non-cooperative` (L = N = 1)."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from isacbench.api import Budget, BudgetedProblem, BudgetExhausted, Config, Solution, Solver, UserError

from . import analytic as A
from .problem import SgClusterProblem
from .tradeoff import best_time_sharing

TASKS = frozenset({"sg-cluster"})


def _inner(problem: BudgetedProblem, solver: str) -> SgClusterProblem:
    if not isinstance(problem.inner, SgClusterProblem):
        raise UserError(f"solver {solver!r} needs an sg-cluster problem")
    return problem.inner


def _decision(problem: SgClusterProblem, L: int, N: int, pc: float, ps: float) -> dict:
    if problem.cfg.problem == "P1":
        return {"L": L}
    return {"L": L, "N": N, "p_c": float(pc), "p_s": float(ps)}


def _sensing_only_N(problem: SgClusterProblem) -> int:
    """N~*: argmin over N of the CRLB with acceptance (Fig. 5), at any p^s (CRLB is ~ 1/p^s)."""
    cfg = problem.cfg
    crlb = [problem.crlb_vec(N, np.array([cfg.Pt]))[0][0] for N in range(1, cfg.N_max + 1)]
    return int(np.argmin(crlb)) + 1


class ApproxSearchConfig(Config):
    power_points: int = Field(21, ge=2, le=1001, description="grid of p^s/P^t values searched per L")


class ApproxSearch(Solver):
    name = "approx-search"
    description = ("paper's approximate search: L~* from eta* (eqs. 37-38), N* = min(N~*, (C - R_c)/e), "
                   "p^c grid pruned by Prop. 3")
    Config = ApproxSearchConfig
    tasks: ClassVar[frozenset[str]] = TASKS

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        prob = _inner(problem, self.name)
        cfg = prob.cfg
        L_star = A.approx_optimal_L(cfg.alpha, cfg.lambda_u / cfg.lambda_b, cfg.psi, cfg.L_max)
        pruned = 0
        try:
            if cfg.problem == "P1":
                for L in range(L_star, 0, -1):  # the largest L <= L~* meeting the backhaul
                    if problem.evaluate({"L": L}).feasible:
                        break
                return Solution(info={"L_star": L_star})
            N_tilde = _sensing_only_N(prob)
            front: list[tuple[float, float]] = []  # (rate, crlb) of evaluated points
            ps_grid = np.linspace(0.0, cfg.Pt, self.config.power_points)
            for L in range(1, L_star + 1):
                skip_below = -1.0
                for ps in ps_grid:  # ascending p^s = descending p^c
                    if ps <= skip_below:
                        pruned += 1
                        continue
                    pc = cfg.Pt - ps
                    rate = float(prob.rate_vec(L, np.array([pc]))[0][0])
                    N = min(N_tilde, int(np.floor((cfg.C_backhaul - rate) / cfg.e_backhaul))
                            if cfg.e_backhaul > 0 else cfg.N_max)
                    if N < 1:
                        continue
                    m = problem.evaluate(_decision(prob, L, N, pc, ps)).metrics
                    dominating = [c for r, c in front if c < m["crlb"] and m["rate"] <= r]
                    if dominating and ps > 0:  # Prop. 3: skip p^s in [ps, ps * crlb'/crlb]
                        skip_below = ps * m["crlb"] / min(dominating)
                    front.append((m["rate"], m["crlb"]))
        except BudgetExhausted:
            pass
        return Solution(info={"L_star": L_star, "pruned": pruned})


class PowerGridConfig(Config):
    power_points: int = Field(21, ge=2, le=1001, description="grid of p^c/P^t values for L = N = 1")


class NonCooperative(Solver):
    name = "non-cooperative"
    description = "no cooperation: L = N = 1, best power split on a grid (P1: L = 1)"
    Config = PowerGridConfig
    tasks: ClassVar[frozenset[str]] = TASKS

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        prob = _inner(problem, self.name)
        cfg = prob.cfg
        if cfg.problem == "P1":
            problem.evaluate({"L": 1})
        else:
            for pc in np.linspace(0.0, cfg.Pt, self.config.power_points):
                if problem.exhausted:
                    break
                problem.evaluate(_decision(prob, 1, 1, pc, cfg.Pt - pc))
        return Solution()


class TimeSharing(Solver):
    name = "time-sharing"
    description = ("time sharing between the communication-only corner (p^s = 0, best L, N = 1) and the "
                   "sensing-only corner (p^c = 0, L = 1, best N); returns the better corner")
    tasks: ClassVar[frozenset[str]] = TASKS

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        """A mix is not a point of the decision space, so the result is the better corner (the best
        point evaluated); the best time-shared T^ISAC (rate averaged, Fisher information added over
        time) is in info["time_sharing"] = {"tau": ..., "t_isac": ...}."""
        prob = _inner(problem, self.name)
        cfg = prob.cfg
        corners, info = {}, {}
        try:
            comm = [problem.evaluate(_decision(prob, L, 1, cfg.Pt, 0.0)) for L in range(1, cfg.L_max + 1)]
            ic = max((i for i, ev in enumerate(comm) if ev.feasible), key=lambda i: comm[i].metrics["rate"], default=0)
            corners["communication"] = _decision(prob, ic + 1, 1, cfg.Pt, 0.0)
            if cfg.problem != "P1":
                sens = [problem.evaluate(_decision(prob, 1, N, 0.0, cfg.Pt)) for N in range(1, cfg.N_max + 1)]
                js = min((i for i, ev in enumerate(sens) if ev.feasible), key=lambda i: sens[i].metrics["crlb"],
                         default=0)
                corners["sensing"] = _decision(prob, 1, js + 1, 0.0, cfg.Pt)
                tau, value = best_time_sharing(comm[ic].metrics["rate"], sens[js].metrics["crlb"], cfg.rho)
                info["time_sharing"] = {"tau": tau, "t_isac": value}
        except BudgetExhausted:
            pass
        return Solution(info={"corners": corners, **info})
