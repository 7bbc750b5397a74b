"""The paper's method for sg-nulling (Sec. IV, Prop. 3): relax K, find the optimal user ratio
v* = K / (M_t - J(Q-1) + 1) of eq. (18) by bisection for each L, round K, and search (J, Q, L).

For each (J, Q, L) the candidates are floor and ceil of K* = v*(L) (M_t - J(Q-1) + 1), clipped to the
DoF constraint KL + J(Q-1) + 1 <= M_t (eq. 16a); every candidate is evaluated with the problem's own
evaluator and the runner keeps the best feasible one. L = 1 comes first (Prop. 1), so a small budget
still covers the likely optimum. The K rule ignores the K-dependence of T_s^ASE (as the paper does).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from isacbench.api import Budget, BudgetedProblem, Solution, Solver, UserError

from .analytic import v_star
from .problem import SgNullingProblem


def candidates(Mt: int, J_max: int, alpha: float) -> list[dict]:
    """The (K, L, J, Q) points the method evaluates, L-major (L = 1 first), duplicates removed."""
    out, seen = [], set()
    for L in range(1, Mt):
        v = v_star(L, alpha)
        for J in range(1, J_max + 1):
            for Q in range(1, Mt):
                n = Mt - J * (Q - 1) + 1  # N of eq. (17)
                k_max = (n - 2) // L  # KL <= N - 2  <=>  eq. (16a)
                if k_max < 1:
                    continue
                for K in {int(np.clip(np.floor(v * n), 1, k_max)), int(np.clip(np.ceil(v * n), 1, k_max))}:
                    x = (K, L, J, Q)
                    if x not in seen:
                        seen.add(x)
                        out.append(dict(zip(("K", "L", "J", "Q"), x)))
    return out


class Prop3Search(Solver):
    name = "prop3-search"
    description = "the paper's method: bisection on v for the relaxed K (eq. 18), rounding, search over J, Q, L"
    tasks: ClassVar[frozenset[str] | None] = frozenset({"sg-nulling"})

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        if not isinstance(problem.inner, SgNullingProblem):
            raise UserError("solver 'prop3-search' needs an sg-nulling problem")
        cfg = problem.inner.config
        pts = candidates(cfg.Mt, cfg.J_max, cfg.alpha)
        for x in pts:
            if problem.exhausted:
                break
            problem.evaluate(x)
        return Solution(info={"candidates": len(pts), "evaluated": problem.evaluations,
                              "v_star_L1": v_star(1, cfg.alpha)})
