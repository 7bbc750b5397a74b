"""sg-nulling task contract: config errors, the problem's evaluate (P1, P2, DoF violations, Monte
Carlo metrics), solvers (exhaustive vs direct enumeration, prop3-search) and the figures."""
import csv

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from isacbench.api import BudgetedProblem, Budget, UserError
from isacbench.registry import load
from isacbench.runner import solve_problem
from isacbench.tasks.sg_nulling import SgNullingTask
from isacbench.tasks.sg_nulling.problem import analytic_metrics, feasible_points

TASK = SgNullingTask()
PROBLEM = TASK.problem()


@pytest.mark.parametrize("config,words", [
    ({"Mtx": 4}, ["unknown", "'Mtx'", "allowed"]),
    ({"Mt": 1}, ["Mt=1", ">= 2"]),
    ({"rho": 1.5}, ["rho=1.5", "<= 1"]),
    ({"alpha": 2.0}, ["alpha=2.0", "> 2"]),
    ({"problem": "P3"}, ["problem='P3'", "P1", "P2"]),
    ({"evaluator": "exact"}, ["evaluator='exact'", "analytic"]),
    ({"rate_sense_min": -1}, ["rate_sense_min=-1"]),
])
def test_bad_config_raises_one_line_user_error(config, words):
    with pytest.raises(UserError) as e:
        SgNullingTask(config)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_registry_and_default_budget_fit_exhaustive():
    assert load("task", "sg-nulling") is SgNullingTask
    assert load("solver", "prop3-search").supports(SgNullingTask)
    assert TASK.default_budget.evaluations == PROBLEM.space.grid_size() == 19**3 * 10


def test_decision_outside_the_box_is_a_user_error():
    with pytest.raises(UserError, match="'J'"):
        PROBLEM.evaluate({"K": 1, "L": 1, "J": 11, "Q": 1})


def test_dof_violation_is_reported_not_clipped():
    ev = PROBLEM.evaluate({"K": 10, "L": 2, "J": 1, "Q": 1})  # 20 + 0 + 1 = 21 > 20
    assert not ev.feasible and ev.violations == {"dof": 1.0} and ev.objective == 0.0
    ev = PROBLEM.evaluate({"K": 5, "L": 1, "J": 10, "Q": 3})  # 5 + 20 + 1 = 26
    assert ev.violations == {"dof": 6.0}


@settings(max_examples=60, deadline=None)
@given(K=st.integers(1, 19), L=st.integers(1, 19), J=st.integers(1, 10), Q=st.integers(1, 19))
def test_p1_evaluation_invariants(K, L, J, Q):
    ev = PROBLEM.evaluate({"K": K, "L": L, "J": J, "Q": Q})
    assert ev.feasible == (K * L + J * (Q - 1) + 1 <= 20)
    if ev.feasible:
        m = ev.metrics
        assert ev.objective == pytest.approx(0.5 * m["ase_comm"] + 0.5 * m["ase_sense"])  # eq. (15)
        assert m["ase_comm"] == pytest.approx(K * m["rate_comm"]) and m["ase_sense"] == pytest.approx(J * m["rate_sense"])
        assert ev.objective > 0


def test_p2_constraints_and_cluster_floors():
    task = SgNullingTask({"problem": "P2", "rate_sense_min": 2.0, "ase_sense_min": 10.0, "Q_min": 2})
    p = task.problem()
    ev = p.evaluate({"K": 12, "L": 1, "J": 1, "Q": 1})
    assert not ev.feasible and ev.objective == pytest.approx(ev.metrics["ase_comm"])
    assert set(ev.violations) == {"rate_sense_min", "ase_sense_min", "Q_min"}
    assert ev.violations["rate_sense_min"] == pytest.approx(2.0 - ev.metrics["rate_sense"])
    ev = p.evaluate({"K": 1, "L": 1, "J": 5, "Q": 3})  # R_s(1, 3) = 2.05, T_s = 10.3
    assert ev.feasible, ev.violations


def test_montecarlo_evaluator_through_the_problem():
    p = SgNullingTask({"evaluator": "montecarlo", "mc_samples": 300, "instance_seed": 5}).problem()
    x = {"K": 3, "L": 1, "J": 2, "Q": 2}
    a, b = p.evaluate(x), p.evaluate(x)
    assert a.metrics == b.metrics
    for k in ("ase_comm", "ase_sense", "rate_comm", "rate_sense", "ase_weighted"):
        assert k + "_se" in a.metrics and a.metrics[k + "_se"] > 0
    an = PROBLEM.evaluate(x).metrics
    assert abs(a.metrics["rate_comm"] - an["rate_comm"]) < 4 * a.metrics["rate_comm_se"] + 0.05 * an["rate_comm"]


def _enumerated_optimum(task):
    pts = feasible_points(task.config)
    obj = analytic_metrics(task.config, **pts)["ase_weighted"]
    i = int(np.argmax(obj))
    return {k: int(v[i]) for k, v in pts.items()}, float(obj[i])


def _solve(task, solver, budget):
    return solve_problem(task.problem(), load("solver", solver)(), budget, np.random.default_rng(0))


def test_exhaustive_equals_direct_enumeration_on_default_p1():
    x_best, best = _enumerated_optimum(TASK)
    sol = _solve(TASK, "exhaustive", TASK.default_budget)
    assert sol.decision == x_best == {"K": 12, "L": 1, "J": 10, "Q": 1}
    assert sol.bound == pytest.approx(best) and best == pytest.approx(15.6578, abs=1e-4)


@pytest.mark.parametrize("rho", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_prop3_search_reaches_the_enumerated_optimum(rho):
    task = SgNullingTask({"rho": rho})
    x_best, best = _enumerated_optimum(task)
    sol = _solve(task, "prop3-search", task.default_budget)
    assert sol.evaluation.objective == pytest.approx(best, rel=1e-12)
    assert sol.evaluations == sol.info["candidates"] == sol.info["evaluated"] < 0.02 * task.default_budget.evaluations


def test_prop3_search_under_a_tiny_budget_returns_its_best_feasible_point():
    sol = _solve(TASK, "prop3-search", Budget(evaluations=3))
    assert sol.evaluations == sol.info["evaluated"] == 3 and sol.evaluation.feasible
    # the best of the first three candidates (L = 1, J = 1), measured before the move into the task
    assert sol.decision == {"K": 12, "L": 1, "J": 1, "Q": 1} and sol.evaluation.objective == 9.274044202162857


def test_prop3_search_refuses_another_tasks_problem():
    from isacbench.tasks.sg_cluster import SgClusterTask

    bp = BudgetedProblem(SgClusterTask().problem(), Budget(evaluations=5))
    with pytest.raises(UserError, match="solver 'prop3-search' needs an sg-nulling problem"):
        load("solver", "prop3-search")().solve(bp, bp.budget, np.random.default_rng(0))


def test_figures_are_registered_and_write_png_and_csv(tmp_path):
    figs = SgNullingTask({"mc_samples": 150, "mc_explicit": 2}).figures()
    assert sorted(figs) == [2, 3, 4, 5, 6]
    seen = []
    for n in (4, 5, 6):
        paths = figs[n](tmp_path, lambda f, text: seen.append(f))
        assert sorted(p.suffix for p in paths) == [".csv", ".png"] and all(p.stat().st_size > 0 for p in paths)
    assert all(0 <= f <= 1 for f in seen) and seen[-1] == 1.0
    rows = list(csv.DictReader(open(tmp_path / "fig6.csv")))
    tc = [float(r["y"]) for r in rows if r["series"] == "T_c_ASE"]
    ts = [float(r["y"]) for r in rows if r["series"] == "T_s_ASE"]
    assert np.all(np.diff(tc) >= 0) and np.all(np.diff(ts) <= 0) and tc[-1] > tc[0] and ts[0] > ts[-1]
    rows = [r for r in csv.DictReader(open(tmp_path / "fig4.csv")) if r["series"] == "Mt=20 analysis"]
    y = np.array([float(r["y"]) for r in rows])
    assert 1 < int(rows[int(np.argmax(y))]["x"]) < 6  # sensing ASE rises, then falls with Q
    assert any(r["series"] == "Mt=20 Monte Carlo" for r in csv.DictReader(open(tmp_path / "fig4.csv")))
