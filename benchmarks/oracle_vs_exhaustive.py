"""`python -m benchmarks.oracle_vs_exhaustive [EPISODES]`: how far the `topology-search` oracle is from
the optimal topology, on a tiny `cooperative` instance where the optimum cooperates.

Instance: M = 4 CCNs, K = Q = 1, R = 2, B = 4 subcarriers, `scenario=cooperative` (overhead_base 10),
first frame of each evaluation episode. Exhaustive: every classification (2^8) x CFN grouping (grp_0 = 0,
the CFN labels being interchangeable: 2^3) at the rule split, each with its convex blocks' power
optimized by the oracle's own full SCA (`_Polish`, blocks cached by key, so 366 block solves cover the
2048 topologies). Oracle: `topology-search` at its default budget (600 evaluations) through
`runner.solve_problem`. The exhaustive side does not search the split offsets, so the oracle may
exceed it. About one CPU minute per frame.
"""
from __future__ import annotations

import itertools
import sys
import time

import numpy as np

from isacbench.api import Budget, BudgetedProblem
from isacbench.runner import solve_problem
from isacbench.solvers.convex import Convex, ConvexConfig
from isacbench.solvers.topology_search import TopologySearch, _Polish
from isacbench.tasks.ent_usr import EntUsrTask

TINY_COOPERATIVE = dict(M=4, K=1, Q=1, R=2, B=4, frames_per_episode=1, scenario="cooperative")


def exhaustive(pr) -> tuple[float, dict]:
    """Best (objective, decision) over all topologies at the rule split, power by full SCA."""
    ds = pr.discrete()
    names = [v.name for v in ds.space.variables if not v.name.startswith(("off_", "grp_0"))]
    polish = _Polish(BudgetedProblem(pr, Budget()), ConvexConfig())
    best, decision = -np.inf, None
    for bits in itertools.product((0, 1), repeat=len(names)):
        x = ds.complete({**dict(zip(names, bits)), "grp_0": 0, **{f"off_{m}": 0 for m in range(pr.p.M)}})
        if pr.evaluate(x).feasible:
            value, polished = polish.run(x, full=True)
            if value > best:
                best, decision = value, polished
    return best, decision


def main(episodes: int = 4) -> None:
    task = EntUsrTask({**TINY_COOPERATIVE, "eval_episodes": episodes})
    gaps = []
    print("| frame | exhaustive | its coop_share | topology-search | its coop_share | gap % | convex | CPU s (exh. / oracle) |")
    print("|---|---|---|---|---|---|---|---|")
    for e, pr in enumerate(task.frame_problems(task.evaluation_env())):
        t0 = time.process_time()
        best, decision = exhaustive(pr)
        t1 = time.process_time()
        oracle = solve_problem(pr, TopologySearch(), Budget(evaluations=600), np.random.default_rng(0)).evaluation
        t2 = time.process_time()
        convex = solve_problem(pr, Convex(), Budget(evaluations=1000), np.random.default_rng(0)).evaluation
        gaps.append(100 * (best - oracle.objective) / abs(best))
        print(f"| {e} | {best:.5f} | {pr.evaluate(decision).metrics['coop_share']:.2f} | {oracle.objective:.5f} | "
              f"{oracle.metrics['coop_share']:.2f} | {gaps[-1]:.2f} | {convex.objective:.5f} | "
              f"{t1 - t0:.0f} / {t2 - t1:.0f} |", flush=True)
    print(f"mean gap {np.mean(gaps):.2f} %, max {np.max(gaps):.2f} %")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
