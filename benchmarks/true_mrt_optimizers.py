"""`python -m benchmarks.true_mrt_optimizers [SCENARIO ...]`: the per-frame optimizers at true-MRT beams
(`-S beam=mrt`) against their codebook versions and the rule layouts, on the first frame of the 4
evaluation episodes (instance_seed 0) of each scenario (default: paper cooperative).

Per frame: the two rule layouts (ccn-mrt: all local; cfn-mrt: all federated, contiguous CFNs; MRT,
equal power), `convex` (SCA power on the better rule layout) and `topology-search` (topology and
power), each at codebook MRT and at true MRT, through `runner.solve_problem` at the task's solver
budgets (`EntUsrTask.budget_for`), solver seed 0. Prints one row per frame and the means (USR, eq. 42).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from isacbench.runner import solve_problem
from isacbench.solvers.convex import Convex
from isacbench.solvers.topology_search import TopologySearch
from isacbench.tasks.ent_usr import EntUsrTask

COLUMNS = [f"{name}[{beam}]" for name in ("ccn-rule", "cfn-rule", "convex", "topology-search")
           for beam in ("codebook", "mrt")]


def frame_values(pr) -> dict[str, float]:
    p = pr.p
    out = {}
    for beam in ("codebook", "mrt"):
        for name, fed in (("ccn-rule", False), ("cfn-rule", True)):
            x = pr.rule(np.full((p.M, p.K + p.Q), fed), pr.contiguous_groups(), beam=beam)
            out[f"{name}[{beam}]"] = pr.evaluate(x).objective
        for name, solver in (("convex", Convex), ("topology-search", TopologySearch)):
            tic = time.process_time()
            sol = solve_problem(pr, solver({"beam": beam}), EntUsrTask.budget_for(name), np.random.default_rng(0))
            assert sol.evaluation.feasible and sol.decision.get("true_mrt", 0.0) == (beam == "mrt")
            out[f"{name}[{beam}]"] = sol.evaluation.objective
            out[f"{name}[{beam}] cpu"] = time.process_time() - tic
            out[f"{name}[{beam}] coop"] = sol.evaluation.metrics.get("coop_share", float("nan"))
    return out


def main(scenarios: list[str]) -> None:
    for scenario in scenarios:
        task = EntUsrTask({"scenario": scenario, "frames_per_episode": 1})
        rows = [frame_values(pr) for pr in task.frame_problems(task.evaluation_env())]
        print(f"\n## scenario={scenario}: first frame of {len(rows)} evaluation episodes, USR")
        print("| frame | " + " | ".join(COLUMNS) + " |")
        print("|---" * (len(COLUMNS) + 1) + "|")
        for i, r in enumerate(rows):
            print(f"| {i} | " + " | ".join(f"{r[c]:.4f}" for c in COLUMNS) + " |")
        print("| mean | " + " | ".join(f"{np.mean([r[c] for r in rows]):.4f}" for c in COLUMNS) + " |")
        for c in COLUMNS[4:]:
            print(f"{c}: CPU s per frame {np.mean([r[c + ' cpu'] for r in rows]):.1f}, "
                  f"coop_share {[round(r[c + ' coop'], 3) for r in rows]}")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:] or ["paper", "cooperative"])
