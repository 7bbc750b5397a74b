"""sg-cluster: cooperative ISAC cluster sizes and power split (Meng et al., rate / CRLB)."""
from __future__ import annotations

from typing import Callable, ClassVar

from isacbench.api import Budget, Task

from .config import SgClusterConfig
from .problem import SgClusterProblem


class SgClusterTask(Task):
    name = "sg-cluster"
    description = ("stochastic geometry: cooperative communication / sensing cluster sizes (L, N) and "
                   "power split (p_c, p_s) under a backhaul limit; rate (Theorem 2) and CRLB (Prop. 2)")
    Config: ClassVar[type[SgClusterConfig]] = SgClusterConfig
    default_budget = Budget(evaluations=5000)  # polyblock certifies P2 within 1e-4 with ~12k (docs)

    def problem(self) -> SgClusterProblem:
        return SgClusterProblem(self.config)

    def figures(self) -> dict[int, Callable[..., list]]:
        from functools import partial

        from .figures import FIGURES
        return {n: partial(fn, cfg=self.config) for n, fn in FIGURES.items()}


__all__ = ["SgClusterTask", "SgClusterConfig", "SgClusterProblem"]
