"""Convex (SCA with cvxpy) on synthetic monotonic programs, cross-checked against polyblock."""
from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isacbench.api import Budget, BudgetedProblem, Evaluation, Problem, Real, Space, UserError
from isacbench.solvers.convex import Convex, ConvexConfig, LinearizedStep, SubproblemFailed, sca
from isacbench.solvers.polyblock import polyblock
from test_polyblock import InterferenceChannel, simplex_program, waterfill


@pytest.mark.parametrize("d,total", [(1, 3.0), (2, 4.0), (3, 2.5), (6, 5.0)])
def test_concave_program_reaches_the_global_optimum(d, total):
    """Concave f and linear g: every KKT point is optimal, so SCA must reach water-filling."""
    w = np.linspace(1.0, 2.0, d)
    res = sca([simplex_program(w, total)], ConvexConfig())
    opt = waterfill(w, total)
    assert res.best <= opt + 1e-12
    assert res.best >= opt * (1 - 1e-5)
    assert res.best_y.sum() <= total
    assert set(res.statuses) <= {cp.OPTIMAL, cp.OPTIMAL_INACCURATE}


def test_branches_best_first_and_skipped_by_bound():
    w = np.array([1.0, 1.5])
    progs = [simplex_program(w, t, f"t={t}") for t in (0.2, 6.0, 0.1)]
    res = sca(progs, ConvexConfig())
    assert res.best_branch == 1
    assert res.best == pytest.approx(waterfill(w, 6.0), rel=1e-5)
    assert res.branches_skipped == 2 and res.branches_solved == 1  # f(high) of t=0.2, 0.1 is below


gains = st.lists(st.floats(0.05, 2.0), min_size=4, max_size=4).map(lambda v: np.array(v).reshape(2, 2))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=gains, diag=st.floats(0.5, 4.0))
def test_sca_never_exceeds_the_polyblock_bound(g, diag):
    prob = InterferenceChannel(g + np.diag([diag, diag]), noise=0.5, pmax=2.0)
    progs = prob.structure()["monotonic"]
    res = sca(progs, ConvexConfig())
    pb = polyblock(progs, rel_eps=1e-4)
    assert res.best <= pb.bound + 1e-9
    x = progs[0].to_decision(res.best_y)
    assert prob.evaluate(x).objective == pytest.approx(res.best, rel=1e-6)  # a real, feasible point


def test_solver_charges_budget_and_reports_status():
    G = np.array([[1.0, 0.6, 0.2], [0.3, 1.4, 0.5], [0.4, 0.2, 0.9]])
    prob = InterferenceChannel(G, noise=0.3, pmax=1.0)
    for n in (5, 60, 5000):
        bp = BudgetedProblem(prob, Budget(evaluations=n))
        sol = Convex().solve(bp, Budget(evaluations=n), np.random.default_rng(0))
        assert bp.evaluations <= n
        assert sol.info["stop"] == ("budget" if n < 100 else "done")
        if n == 5:  # four structure evaluations cannot finish the first bisection: nothing proven
            assert sol.info["feasible_found"] is False and sol.info["infeasible"] is False
        else:
            assert sol.info["verified_feasible"]
        assert sol.info["solver"] == "CLARABEL"
    assert sol.info["statuses"].get(cp.OPTIMAL, 0) >= 1
    assert bp.evaluations == sol.info["structure_evaluations"] + 1


def test_dpp_problem_is_compiled_once_per_dimension():
    a, b = LinearizedStep.of(3, "CLARABEL"), LinearizedStep.of(3, "CLARABEL")
    assert a is b and a.problem.is_dcp(dpp=True)
    assert LinearizedStep.of(4, "CLARABEL") is not a


def test_failed_subproblem_is_a_clear_error():
    step = LinearizedStep.of(2, "CLARABEL")
    # g(center) = 10 > 0 with a flat linearization: the subproblem is infeasible
    with pytest.raises(SubproblemFailed, match="infeasible"):
        step.solve("CLARABEL", np.ones(2), np.zeros(2), 10.0, np.full(2, 0.5), 0.1)


def test_problem_without_structure_and_bad_config():
    class Plain(Problem):
        space = Space((Real("x", 0, 1),))

        def evaluate(self, x):
            return Evaluation(objective=x["x"])

    with pytest.raises(UserError, match="monotonic"):
        Convex().solve(Plain(), Budget(evaluations=10), np.random.default_rng(0))
    with pytest.raises(UserError, match="solver"):
        Convex({"solver": "MOSEK"})
