"""Uniform random search over a problem's space: the floor every solver must beat."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from isacbench.api import Budget, BudgetedProblem, Solution, Solver, UserError


class RandomSearch(Solver):
    name = "random"
    description = "uniform random search in the decision space"
    kinds: ClassVar[frozenset[str]] = frozenset({"static", "sequential"})

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        if budget.evaluations is None and budget.seconds is None:
            raise UserError("solver 'random' needs an evaluation or time budget")
        while not problem.exhausted:
            problem.evaluate(problem.space.sample(rng))
        return Solution()  # the runner keeps the best feasible sample
