"""Convex (SCA with cvxpy) on synthetic monotonic programs, cross-checked against polyblock."""
from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isacbench.api import (Budget, BudgetedProblem, BudgetExhausted, Evaluation, MonotonicProgram, Problem, Real,
                           Space, UserError)
from isacbench.solvers.convex import (Convex, ConvexConfig, LinearizedProgram, ScaResult, SubproblemFailed,
                                      SurrogateStep, sca, sca_program)
from isacbench.solvers.polyblock import polyblock
from isacbench.solvers.structured import Meter
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
    progs = prob.structure().monotonic
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


def quadratic_program(counted: list) -> MonotonicProgram:
    """max y1 + 2 y2 s.t. y1^2 + y2^2 <= 1 over [0, 2]^2; `counted` records how many points each call
    of f and g saw."""
    def f(y):
        counted.append(("f", len(y)))
        return y @ np.array([1.0, 2.0])

    def g(y):
        counted.append(("g", len(y)))
        return (y ** 2).sum(axis=1) - 1.0

    return MonotonicProgram(low=np.zeros(2), high=np.full(2, 2.0), objective=f, constraint=g,
                            to_decision=lambda y: {"y": y})


def test_linearized_program_is_the_slp_step():
    """The monotonic program as a ConvexProgram in the unit box: the anchor's forward differences
    give grad f and grad g (2 d evaluations), the surrogate is the DPP LP of the linearized
    constraint, and the true objective costs g everywhere and f only where g <= 0."""
    counted = []
    prog = quadratic_program(counted)
    meter = Meter()
    u0 = np.array([0.1, 0.2])  # y0 = (0.2, 0.4): f = 1.0, g = -0.8
    lin = LinearizedProgram(prog, meter, (u0, 1.0, -0.8), fd_step=1e-6)
    u = cp.Variable(2)
    objective, constraints, anchor = lin.surrogate(u)
    assert cp.Problem(cp.Maximize(objective), constraints).is_dcp(dpp=True)
    assert anchor(u0) == 4 and counted == [("f", 2), ("g", 2)]
    grad_f, grad_g, rhs = sorted(objective.parameters() + constraints[0].parameters(), key=lambda p: p.id)
    np.testing.assert_allclose(grad_f.value, [2.0, 4.0], rtol=1e-6)  # d/du = (high - low) d/dy
    np.testing.assert_allclose(grad_g.value, [0.8, 1.6], rtol=1e-5)  # 2 y (high - low)
    assert rhs.value == pytest.approx(grad_g.value @ u0 + 0.8 - 1e-7 * (1 + 2.4), abs=1e-12)
    counted.clear()
    np.testing.assert_array_equal(lin.objective(np.array([[0.1, 0.2], [1.0, 1.0]])), [1.0, -np.inf])
    assert counted == [("g", 2), ("f", 1)] and meter.count == 1  # f's evaluation, charged by the program


def test_sca_program_runs_the_slp_to_the_optimum():
    """sca_program on a LinearizedProgram (concave f, linear g: water-filling) from the box's corner."""
    w, counted = np.array([1.0, 2.0]), []
    inner = simplex_program(w, 1.0)
    prog = MonotonicProgram(inner.low, inner.high, lambda y: counted.append(len(y)) or inner.objective(y),
                            lambda y: counted.append(len(y)) or inner.constraint(y), inner.to_decision)
    meter, res = Meter(), ScaResult()
    lin = LinearizedProgram(prog, meter, (np.zeros(2), 0.0, -1.0), fd_step=1e-6)
    u, fx = sca_program(lin, ConvexConfig(), meter, res, value=0.0)
    opt = waterfill(w, 1.0)
    assert opt * (1 - 1e-5) <= fx <= opt and inner.constraint(lin.point(u)[None])[0] <= 0
    # one evaluation per point of f or g: the loop charges g and the anchors, the program f
    assert meter.count == sum(counted) and res.subproblems >= 2 and res.stop == "done"
    with pytest.raises(BudgetExhausted):
        Meter(cap=3).charge(4)


def test_failed_subproblem_is_a_clear_error():
    # g(center) = 10 > 0 with a flat linearization: the subproblem is infeasible
    prog = MonotonicProgram(low=np.zeros(2), high=np.ones(2), objective=lambda y: y.sum(axis=1),
                            constraint=lambda y: np.full(len(y), 10.0), to_decision=lambda y: {})
    center = np.full(2, 0.5)
    step = SurrogateStep(LinearizedProgram(prog, Meter(), (center, 1.0, 10.0), 1e-6), "CLARABEL")
    step.anchor(center)
    with pytest.raises(SubproblemFailed, match="infeasible"):
        step.solve(center, 0.1)


def test_problem_without_structure_and_bad_config():
    class Plain(Problem):
        space = Space((Real("x", 0, 1),))

        def evaluate(self, x):
            return Evaluation(objective=x["x"])

    with pytest.raises(UserError, match="monotonic"):
        Convex().solve(BudgetedProblem(Plain(), Budget(evaluations=10)), Budget(evaluations=10),
                       np.random.default_rng(0))
    with pytest.raises(UserError, match="solver"):
        Convex({"solver": "MOSEK"})
