"""sg-cluster: cooperative ISAC cluster sizes and power split (Meng et al., rate / CRLB)."""
from __future__ import annotations

from typing import Callable, ClassVar

from isacbench.api import Budget, Profile, Task

from .config import SgClusterConfig
from .problem import SgClusterProblem


class SgClusterTask(Task):
    name = "sg-cluster"
    description = ("stochastic geometry: cooperative communication / sensing cluster sizes (L, N) and "
                   "power split (p_c, p_s) under a backhaul limit; rate (Theorem 2) and CRLB (Prop. 2)")
    Config: ClassVar[type[SgClusterConfig]] = SgClusterConfig
    default_budget = Budget(evaluations=5000)  # polyblock certifies P2 within 1e-4 with ~12k (docs)
    leaderboard_metrics = ("rate", "root_crlb", "t_isac")

    @classmethod
    def profiles(cls) -> dict[str, Profile]:
        """P2 at the paper's parameters. Black-box and baseline solvers get 500 evaluations; polyblock
        and convex what they need to finish their 280 branches; exhaustive a 5-point power grid
        (20 x 30 x 5 x 5 points)."""
        grid = "exhaustive[real_points=5]"
        budgets = {grid: Budget(evaluations=15000), "polyblock": Budget(evaluations=20000),
                   "convex": Budget(evaluations=20000)}
        solvers = ("approx-search", "convex", grid, "non-cooperative", "optuna", "polyblock", "random",
                   "time-sharing")
        return {"quick": Profile(budget=Budget(evaluations=500), budgets=budgets, solvers=solvers),
                "paper": Profile(instances=({}, {"lambda_u": 3.0}), budget=Budget(evaluations=2000),
                                 budgets=budgets, solvers=solvers, seeds=tuple(range(10)))}

    def problem(self) -> SgClusterProblem:
        return SgClusterProblem(self.config)

    def figures(self) -> dict[int, Callable[..., list]]:
        from functools import partial

        from .figures import FIGURES
        return {n: partial(fn, cfg=self.config) for n, fn in FIGURES.items()}


__all__ = ["SgClusterTask", "SgClusterConfig", "SgClusterProblem"]
