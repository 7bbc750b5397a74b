"""topology-search (solvers/topology_search.py) on ent-usr frame problems: the declared discrete part
(`EntUsrFrameProblem.discrete`), block keys, and the search against exhaustive enumeration."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from isacbench.api import Budget, BudgetedProblem, DiscreteSearch, Integer, Space
from isacbench.runner import solve_problem
from isacbench.solvers.convex import Convex
from isacbench.solvers.topology_search import TopologySearch
from isacbench.tasks.ent_usr import EntUsrTask

TINY = dict(M=4, K=1, Q=1, R=2, B=4, frames_per_episode=1, eval_episodes=1)


def frame(config: dict, env: int = 0):
    task = EntUsrTask(config)
    return task.frame_problems(task.evaluation_env())[env]


def test_completion_at_zero_split_offset_is_the_rule_and_bounds_hold():
    pr = frame(TINY)
    p, ds, rng = pr.p, pr.discrete(), np.random.default_rng(0)
    for _ in range(20):
        z = ds.space.sample(rng)
        x = ds.complete(z)
        assert pr.space.check(x) == x  # inside the frame problem's space
        fed = np.array([[z[f"fed_{m}_{j}"] for j in range(p.K + p.Q)] for m in range(p.M)], bool)
        grp = np.array([z[f"grp_{m}"] for m in range(p.M)])
        assert ds.complete({**z, **{f"off_{m}": 0 for m in range(p.M)}}) == pr.rule(fed, grp)
    # the starts are the all-local and all-federated rule layouts
    rules = [pr.rule(np.full((p.M, p.K + p.Q), f), pr.contiguous_groups()) for f in (False, True)]
    assert [ds.complete(z) for z in ds.starts] == rules


def test_restricted_topology_fixes_the_discrete_part():
    pr = frame({**TINY, "topology": "ccn-only"})
    ds = pr.discrete()
    for v in ds.space.variables:
        if not v.name.startswith("grp_"):
            assert v.low == v.high
    assert len(ds.starts) == 1
    for n in ds.neighbours(ds.starts[0]):  # only regroupings remain
        assert {k for k in n if n[k] != ds.starts[0][k]} <= {f"grp_{m}" for m in range(pr.p.M)}


def test_block_keys_follow_the_blocks_topology():
    pr = frame(TINY)
    p, ds = pr.p, pr.discrete()
    local = ds.starts[0]
    keys = lambda z: dict(pr.structure(ds.complete(z)).convex_blocks.keys)  # noqa: E731
    base = keys(local)
    assert keys({**local, "grp_0": 1 - local["grp_0"]}) == base  # nothing federated: the grouping changes nothing
    moved = keys({**local, "fed_0_0": 1})  # CCN 0 federates its user: ccn0 changes, a CFN block appears
    assert moved["ccn0"] != base["ccn0"] and all(moved[f"ccn{m}"] == base[f"ccn{m}"] for m in range(1, p.M))
    assert any(k.startswith("cfn") for k in moved)


def test_budgeted_problem_passes_the_structure_point_through():
    pr = frame(TINY)
    z = {**pr.discrete().starts[0], "fed_1_1": 1}
    bp = BudgetedProblem(pr, Budget(evaluations=10))
    assert bp.structure(pr.discrete().complete(z)).convex_blocks.keys == \
        pr.structure(pr.discrete().complete(z)).convex_blocks.keys


def test_search_reaches_the_exhaustive_optimum_of_the_topology_on_a_tiny_instance():
    """M = 4 CCNs, K = Q = 1, R = 2, rule split (off = 0): all 2^8 classifications x 2^4 groupings
    (2048 topologies up to the CFN labels) evaluated with the rule; the oracle (starts, climb on
    polished values, iterated local search) must end at or above the best of them, and at or above
    `convex` (SCA power on the better rule layout)."""
    pr = frame(TINY)
    p, full = pr.p, pr.discrete()
    space = Space(tuple(v if not v.name.startswith("off_") else Integer(v.name, 0, 0) for v in full.space.variables))
    narrowed = DiscreteSearch(space, full.complete, full.starts,
                              lambda z: [n for n in full.neighbours(z) if all(n[f"off_{m}"] == 0 for m in range(p.M))])
    pr.discrete = lambda: narrowed  # the same problem, searched over the rule split only
    best = -np.inf
    names = [v.name for v in space.variables if not v.name.startswith(("off_", "grp_0"))]
    for bits in itertools.product((0, 1), repeat=len(names)):  # grp_0 = 0: CFN labels are interchangeable
        z = {**dict(zip(names, bits)), "grp_0": 0, **{f"off_{m}": 0 for m in range(p.M)}}
        ev = pr.evaluate(full.complete(z))
        if ev.feasible:
            best = max(best, ev.objective)
    oracle = solve_problem(pr, TopologySearch(), Budget(evaluations=1500), np.random.default_rng(0))
    convex = solve_problem(pr, Convex(), Budget(evaluations=1000), np.random.default_rng(0))
    assert oracle.evaluation.feasible
    assert oracle.evaluation.objective >= best - 1e-9
    assert oracle.evaluation.objective >= convex.evaluation.objective - 1e-9


def test_oracle_beats_convex_on_a_paper_frame():
    """Paper instance (Table I), first frame of evaluation episode 1: convex keeps the better rule
    layout (all-local); the oracle finds a federated user in a one-CCN CFN (measured +3.6 %)."""
    pr = frame({}, env=1)
    oracle = solve_problem(pr, TopologySearch(), EntUsrTask.budget_for("topology-search"), np.random.default_rng(0))
    convex = solve_problem(pr, Convex(), EntUsrTask.budget_for("convex"), np.random.default_rng(0))
    assert oracle.evaluation.objective > 1.02 * convex.evaluation.objective
    m = oracle.evaluation.metrics
    assert m["fed_user_share"] + m["fed_target_share"] > 0


def test_unsupported_problem_is_one_clear_error():
    from isacbench.api import UserError
    task = EntUsrTask(TINY)
    pr = task.frame_problems(task.evaluation_env())[0]
    pr.discrete = lambda: None
    with pytest.raises(UserError, match="declares its discrete part"):
        TopologySearch().solve(BudgetedProblem(pr, Budget(evaluations=10)), Budget(evaluations=10),
                               np.random.default_rng(0))


# ------------------------------------------------------------------ scenarios (`-c scenario=NAME`)
def test_scenarios_fill_in_values_and_explicit_keys_take_precedence():
    from isacbench.tasks.ent_usr.config import SCENARIOS
    assert EntUsrTask({}).config.scenario == "paper" and SCENARIOS["paper"] == {}
    for name, values in SCENARIOS.items():
        cfg = EntUsrTask({"scenario": name}).config
        assert {k: getattr(cfg, k) for k in values} == values
    large = EntUsrTask({"scenario": "large", "M": 4}).config  # documented precedence: explicit keys win
    assert large.M == 4 and large.R == SCENARIOS["large"]["R"] and large.area_m == SCENARIOS["large"]["area_m"]


@pytest.mark.parametrize("args, message", [
    (["run", "--task", "ent-usr", "--solver", "ccn-mrt", "-c", "scenario=nope", "--no-track"],
     "task ent-usr config scenario='nope': Input should be 'paper'"),
    (["reproduce", "ent-usr", "--figure", "nope"], "task 'ent-usr' has no figure nope; available: 4, topology-map"),
])
def test_unknown_scenario_or_figure_is_one_line_exit_2(tmp_path, args, message):
    from conftest import cli
    p = cli(args, tmp_path)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1 and message in lines[0], p.stderr


# ------------------------------------------------------------------ topology map
def test_topology_map_on_a_tiny_grid(tmp_path):
    import csv
    from isacbench.tasks.ent_usr.figures import topology_map
    task = EntUsrTask(TINY)
    paths = topology_map(task, {"overhead_base": (0.7, 10.0), "area_m": (600.0,)}, episodes=1)(tmp_path)
    assert [p.name for p in paths] == ["topology_map.png", "topology_map.csv"] and paths[0].stat().st_size > 0
    rows = list(csv.DictReader(open(paths[1])))
    assert [float(r["overhead_base"]) for r in rows] == [0.7, 10.0]
    for r in rows:
        usr = {k: float(r[f"usr_{k}"]) for k in ("all-local", "ENT", "all-federated")}
        assert r["winner"] == max(usr, key=usr.get)
        fixed = max(usr["all-local"], usr["all-federated"])
        assert float(r["margin_pct"]) == pytest.approx(100 * (usr["ENT"] / fixed - 1))
        assert 0 <= float(r["coop_share"]) <= 1
        assert usr["ENT"] >= usr["all-local"] - 1e-9  # the oracle polishes the all-local start fully
    assert "topology-map" in task.figures()
