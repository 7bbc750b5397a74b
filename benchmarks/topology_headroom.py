"""`python -m benchmarks.topology_headroom [KEY=VALUE ...]`: how much the topology decision is worth on an
instance, per frame: the oracle `topology-search` within each topology setting (ent: free; cfn-only: every
service federated, grouping and power searched; ccn-only: every service local), at true-MRT and codebook-MRT
beams, on the first frame of the 4 evaluation episodes (instance_seed 0), through `runner.solve_problem` at the
task's solver budget, solver seed 0. KEY=VALUE pairs are task config (default: scenario=cooperative).

The ent row's margin over the cfn-only and ccn-only rows is the most a learned ENT can gain over the learned
fixed topologies with beams of that quality (issue 15 item 3: "where the model allows it")."""
from __future__ import annotations

import sys
import time

import numpy as np

from isacbench.runner import solve_problem
from isacbench.solvers.topology_search import TopologySearch
from isacbench.tasks.ent_usr import EntUsrTask

TOPOLOGIES = ("ent", "cfn-only", "ccn-only")


def oracle_values(config: dict, topology: str, beam: str) -> dict[str, list[float]]:
    """Per evaluation episode's first frame: USR, coop_share, fed_user_share and CPU seconds of the oracle."""
    task = EntUsrTask({**config, "frames_per_episode": 1, "topology": topology})
    out: dict[str, list[float]] = {"usr": [], "coop_share": [], "fed_user_share": [], "cpu": []}
    for pr in task.frame_problems(task.evaluation_env()):
        tic = time.process_time()
        sol = solve_problem(pr, TopologySearch({"beam": beam}), EntUsrTask.budget_for("topology-search"),
                            np.random.default_rng(0))
        out["cpu"].append(time.process_time() - tic)
        out["usr"].append(sol.evaluation.objective)
        for k in ("coop_share", "fed_user_share"):
            out[k].append(sol.evaluation.metrics[k])
    return out


def main(args: list[str]) -> None:
    config = dict(a.split("=", 1) for a in args) or {"scenario": "cooperative"}
    print(f"## topology-search within each topology, {config}: first frame of the 4 evaluation episodes")
    print("| beams | topology | USR per frame | mean | ent's margin | coop_share | fed_user_share | CPU s/frame |")
    print("|---|---|---|---|---|---|---|---|")
    for beam in ("mrt", "codebook"):
        rows = {t: oracle_values(config, t, beam) for t in TOPOLOGIES}
        best = np.mean(rows["ent"]["usr"])
        for t, r in rows.items():
            mean = np.mean(r["usr"])
            margin = "" if t == "ent" else f"{100 * (best / mean - 1):+.1f} %"
            print(f"| {beam} | {t} | {' / '.join(f'{v:.4f}' for v in r['usr'])} | {mean:.4f} | {margin} | "
                  f"{np.mean(r['coop_share']):.3f} | {np.mean(r['fed_user_share']):.3f} | {np.mean(r['cpu']):.1f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
