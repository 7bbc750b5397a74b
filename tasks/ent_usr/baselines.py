"""The ENT paper's non-learning baselines (Sec. VI), acting on ent-usr frame problems:
MRT beams (codebook MRT) and equal power per service, with a fixed topology rule.
Under a restricted topology setting the rule's classification is the setting's
(`EntUsrFrameProblem.rule`), e.g. random-mrt with topology=ccn-only keeps every service local."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from isacbench.api import Budget, BudgetedProblem, Problem, Solution, Solver, UserError

from .frame_problem import EntUsrFrameProblem


def frame_problem(problem: Problem, solver: str) -> EntUsrFrameProblem:
    """The ent-usr frame problem a solver received (unwrapped from the runner's BudgetedProblem)."""
    inner = problem.inner if isinstance(problem, BudgetedProblem) else problem
    if not isinstance(inner, EntUsrFrameProblem):
        raise UserError(f"solver {solver!r} acts on ent-usr frame problems only")
    return inner


class _MRTRule(Solver):
    tasks: ClassVar[frozenset[str]] = frozenset({"ent-usr"})
    kinds: ClassVar[frozenset[str]] = frozenset({"sequential"})

    federated: ClassVar[bool] = False  # the fixed rule: every service local (CCN-only) or federated (CFN-only)

    def topology(self, prob: EntUsrFrameProblem, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(fed (M, K+Q) bool, group (M,) int): the fixed rule, CCNs grouped into R contiguous CFNs."""
        p = prob.p
        return np.full((p.M, p.K + p.Q), self.federated), prob.contiguous_groups()

    def solve(self, problem: Problem, budget: Budget, rng: np.random.Generator) -> Solution:
        prob = frame_problem(problem, self.name)
        fed, group = self.topology(prob, rng)
        return Solution(decision=prob.rule(fed, group))


class RandomMRT(_MRTRule):
    name = "random-mrt"
    description = "Random-MRT (ENT paper): random local/federated classification, random CFN grouping, MRT, equal power"

    def topology(self, prob: EntUsrFrameProblem, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = prob.p
        fed = rng.integers(0, 2, size=(p.M, p.K + p.Q)).astype(bool)
        return fed, rng.integers(0, p.R, size=p.M)


class CcnMRT(_MRTRule):
    name = "ccn-mrt"
    description = "CCN-only with MRT: every service local, each CCN on its own subband, equal power"


class CfnMRT(_MRTRule):
    name = "cfn-mrt"
    description = "CFN-only with MRT: every service federated, CCNs grouped into R contiguous CFNs, equal power"
    federated = True
