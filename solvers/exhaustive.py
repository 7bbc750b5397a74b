"""Exhaustive enumeration of a discrete space (reals on an equispaced grid)."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from isacbench.api import Budget, BudgetedProblem, Config, Solution, Solver, UserError


class ExhaustiveConfig(Config):
    max_points: int = Field(200_000, ge=1, description="refuse spaces with more grid points than this")
    real_points: int = Field(11, ge=2, description="grid points per real variable")


class Exhaustive(Solver):
    name = "exhaustive"
    description = "enumerates every point of a discrete space (reals on a grid); exact on discrete problems"
    Config = ExhaustiveConfig
    kinds: ClassVar[frozenset[str]] = frozenset({"static", "sequential"})

    def solve(self, problem: BudgetedProblem, budget: Budget, rng: np.random.Generator) -> Solution:
        size = problem.space.grid_size(self.config.real_points)
        if size > self.config.max_points:
            raise UserError(f"exhaustive: the space has {size} grid points, more than max_points="
                            f"{self.config.max_points}; raise it with --solver-config max_points=N")
        if budget.evaluations is not None and size > budget.evaluations:
            raise UserError(f"exhaustive: the space has {size} grid points but the evaluation budget is "
                            f"{budget.evaluations}; raise it with --budget-evals {size}")
        for x in problem.space.grid(self.config.real_points):
            problem.evaluate(x)
        exact = problem.space.is_discrete and problem.best is not None
        # the runner keeps the best feasible grid point
        return Solution(bound=problem.best.objective if exact else None, info={"grid_points": size, "exact": exact})
