"""The ENT paper's non-learning baselines (Sec. VI), acting on ent-usr frame problems:
MRT beams and equal power per service, with a fixed topology rule.
Under a restricted topology setting the rule's classification is the setting's
(`EntUsrFrameProblem.rule`), e.g. random-mrt with topology=ccn-only keeps every service local.

Beams (solver config `beam`, `-S beam=mrt|codebook`):
  mrt      true MRT (mrt.py): w = h_hat / ||h_hat|| per user, AP and subband, v(theta) at the
           predicted bearing for a target; the paper's Random-MRT ("maximum-ratio transmission
           beamforming with equal power allocation"), so `random-mrt`'s default.
  codebook codebook MRT: the Theta angle (eq. 61) of largest estimated gain, co-phased (eq. 62b /
           67b), for a target the Theta angle nearest its bearing; the beam set of the agents.
`ccn-mrt` and `cfn-mrt` keep `codebook` as default: the paper's CCN-only / CFN-only are learned
schemes (the task's `topology` setting with MAPPO), and these two rules are this benchmark's anchors
for solvers restricted to the codebook: MAPPO's initial policy (relative beam class 0) and the power
programs of convex / polyblock / topology-search are exactly ccn-mrt's codebook beams, so their gains
over ccn-mrt are gains of power and topology, not of beam resolution. `ccn-mrt[beam=mrt]` and
`cfn-mrt[beam=mrt]` are the true-MRT variants (docs/models/ent-usr.md measures the difference)."""
from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from isacbench.api import Budget, BudgetedProblem, Config, Problem, Solution, Solver, UserError

from .frame_problem import EntUsrFrameProblem


def frame_problem(problem: Problem, solver: str) -> EntUsrFrameProblem:
    """The ent-usr frame problem a solver received (unwrapped from the runner's BudgetedProblem)."""
    inner = problem.inner if isinstance(problem, BudgetedProblem) else problem
    if not isinstance(inner, EntUsrFrameProblem):
        raise UserError(f"solver {solver!r} acts on ent-usr frame problems only")
    return inner


BEAM_HELP = ("mrt: true MRT, w = h_hat/||h_hat|| per user, AP and subband (targets: v(theta) at the predicted "
             "bearing); codebook: the Theta angle of largest estimated gain (the agents' beam set)")


class MRTRuleConfig(Config):
    beam: Literal["codebook", "mrt"] = Field("codebook", description=BEAM_HELP)


class RandomMRTConfig(Config):
    beam: Literal["codebook", "mrt"] = Field("mrt", description=BEAM_HELP)


class _MRTRule(Solver):
    Config = MRTRuleConfig
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
        return Solution(decision=prob.rule(fed, group, beam=self.config.beam))


class RandomMRT(_MRTRule):
    name = "random-mrt"
    description = ("Random-MRT (ENT paper): random local/federated classification, random CFN grouping, "
                   "true MRT (beam=codebook: codebook MRT), equal power")
    Config = RandomMRTConfig

    def topology(self, prob: EntUsrFrameProblem, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = prob.p
        fed = rng.integers(0, 2, size=(p.M, p.K + p.Q)).astype(bool)
        return fed, rng.integers(0, p.R, size=p.M)


class CcnMRT(_MRTRule):
    name = "ccn-mrt"
    description = ("CCN-only with MRT: every service local, each CCN on its own subband, codebook MRT "
                   "(beam=mrt: true MRT), equal power")


class CfnMRT(_MRTRule):
    name = "cfn-mrt"
    description = ("CFN-only with MRT: every service federated, CCNs grouped into R contiguous CFNs, codebook MRT "
                   "(beam=mrt: true MRT), equal power")
    federated = True
