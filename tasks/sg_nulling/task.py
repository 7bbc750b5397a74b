"""The sg-nulling task: coordinated beamforming with S&C interference nulling, area spectral efficiency."""
from __future__ import annotations

from typing import Callable

from isacbench.api import Budget, Profile, Task

from .config import SgNullingConfig
from .problem import SgNullingProblem, space

_DEFAULT_BOX = space(SgNullingConfig()).grid_size()  # 19^3 * 10: exhaustive fits the default budget


class SgNullingTask(Task):
    name = "sg-nulling"
    description = ("networked ISAC coordinated beamforming: users K, targets J, communication / sensing "
                   "nulling clusters L / Q maximizing area spectral efficiency (Meng & Masouros)")
    Config = SgNullingConfig
    default_budget = Budget(evaluations=_DEFAULT_BOX)
    # SCA on 19 relaxed branches + rounding: ~500-700 evaluations reach the exhaustive optimum (measured)
    solver_budgets = {"convex": Budget(evaluations=2000)}
    leaderboard_metrics = ("ase_comm", "ase_sense")

    @classmethod
    def profiles(cls) -> dict[str, Profile]:
        """Black-box solvers get 300 evaluations; exact / structured ones the whole box, convex 2000."""
        exact = {**cls.solver_budgets, **{s: Budget(evaluations=_DEFAULT_BOX) for s in ("exhaustive", "prop3-search")}}
        return {"quick": Profile(instances=({}, {"rho": 0.8}), budget=Budget(evaluations=300), budgets=exact),
                "paper": Profile(instances=({}, {"rho": 0.2}, {"rho": 0.8}), budget=Budget(evaluations=1000),
                                 budgets=exact, seeds=tuple(range(10)))}

    def problem(self) -> SgNullingProblem:
        return SgNullingProblem(self.config)

    def figures(self) -> dict[int, Callable[..., list]]:
        from .figures import FIGURES

        return {n: (lambda out_dir, progress, _f=f: _f(self.config, out_dir, progress)) for n, f in FIGURES.items()}
