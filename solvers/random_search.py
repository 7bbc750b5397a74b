"""Uniform random search over a problem's space: the floor every solver must beat."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from isacbench.api import Budget, BudgetExhausted, Problem, Solution, Solver, UserError, best_or_sample


class RandomSearch(Solver):
    name = "random"
    description = "uniform random search in the decision space"
    kinds: ClassVar[frozenset[str]] = frozenset({"static", "sequential"})

    def solve(self, problem: Problem, budget: Budget, rng: np.random.Generator) -> Solution:
        if budget.evaluations is None and budget.seconds is None:
            raise UserError("solver 'random' needs an evaluation or time budget")
        best, best_x = -np.inf, None
        try:
            while not getattr(problem, "exhausted", False):
                x = problem.space.sample(rng)
                ev = problem.evaluate(x)
                if ev.feasible and ev.objective > best:
                    best, best_x = ev.objective, x
        except BudgetExhausted:
            pass
        return Solution(decision=best_x if best_x is not None else best_or_sample(problem, rng))
