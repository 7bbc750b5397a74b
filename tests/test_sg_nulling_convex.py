"""sg-nulling's continuous relaxation (tasks/sg_nulling/relaxation.py) and the convex solver on it:
the relaxation agrees with the task at integer points, rounding + repair always yields DoF-feasible
decisions, and SCA + rounding reaches the exhaustive optimum with a small fraction of its evaluations."""
from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isacbench.api import Budget
from isacbench.runner import solve_problem
from isacbench.solvers.convex import Convex
from isacbench.solvers.exhaustive import Exhaustive
from isacbench.tasks.sg_nulling.config import SgNullingConfig
from isacbench.tasks.sg_nulling.problem import SgNullingProblem, dof_excess
from isacbench.tasks.sg_nulling.relaxation import RelaxedBranch, branches

P2 = {"problem": "P2", "rate_sense_min": 0.5, "L_min": 2}


@pytest.mark.parametrize("over", [{}, {"rho": 0.8}, {"rho": 0.2}, P2])
def test_convex_reaches_the_exhaustive_optimum(over):
    prob = SgNullingProblem(SgNullingConfig(**over))
    best = solve_problem(prob, Exhaustive(), Budget(), np.random.default_rng(0)).evaluation.objective
    # no decision returned: the runner takes the best rounded candidate the solver evaluated
    sol = solve_problem(prob, Convex(), Budget(evaluations=2000), np.random.default_rng(0))
    assert sol.evaluation.feasible and sol.evaluation.objective == pytest.approx(best, rel=1e-12)
    assert sol.info["verified_objective"] == sol.evaluation.objective
    assert sol.evaluations == sol.info["structure_evaluations"] + sol.info["rounded_candidates"]
    assert sol.evaluations <= 2000 < prob.space.grid_size()
    assert sol.info["statuses"] and set(sol.info["statuses"]) <= {"optimal", "optimal_inaccurate"}
    # the relaxation's value is near the integer optimum (same model, K, L, J real)
    assert abs(sol.info["relaxation_value"] - best) <= 0.01 * best


@settings(max_examples=40, deadline=None)
@given(K=st.integers(1, 19), L=st.integers(1, 19), J=st.integers(1, 10), Q=st.integers(1, 19))
def test_relaxation_equals_the_task_at_integer_points(K, L, J, Q):
    cfg = SgNullingConfig()
    prog = RelaxedBranch(cfg, Q)
    f = prog.objective(np.log([[K, L, J]]))[0]
    if dof_excess(K, L, J, Q, cfg.Mt) > 0:
        assert f == -np.inf
    else:
        assert f == pytest.approx(SgNullingProblem(cfg).evaluate({"K": K, "L": L, "J": J, "Q": Q}).objective,
                                  rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(Q=st.integers(1, 19), u=st.tuples(*[st.floats(0, 1)] * 3))
def test_rounding_and_repair_give_feasible_neighbours(Q, u):
    cfg = SgNullingConfig()
    prog = RelaxedBranch(cfg, Q)
    if prog.empty:
        return
    z = prog.low + np.array(u) * (prog.high - prog.low)
    decisions = prog.to_decisions(z)
    assert decisions
    real = np.exp(z)
    for x in decisions:
        assert SgNullingProblem(cfg).space.check(x) == x and x["Q"] == Q
        assert dof_excess(x["K"], x["L"], x["J"], Q, cfg.Mt) <= 0
        # repair only moves down from a floor / ceil neighbour
        assert all(x[n] <= np.ceil(v) for n, v in zip("KLJ", real))
    # where the floor neighbour is feasible it is one of the candidates
    K, L, J = (int(np.floor(v)) for v in real)
    if dof_excess(K, L, J, Q, cfg.Mt) <= 0:
        assert {"K": K, "L": L, "J": J, "Q": Q} in decisions


def test_dof_constraint_is_modelled_exactly():
    """The cvxpy set {log(e^{zK+zL} + (Q-1) e^{zJ}) <= log(M_t - 1)} is eq. 16a at real K, L, J."""
    cfg = SgNullingConfig()
    rng = np.random.default_rng(1)
    for prog in branches(cfg)[::4]:
        z = cp.Variable(3)
        _, constraints, _ = prog.surrogate(z)
        for _ in range(20):
            point = prog.low + rng.uniform(0, 1, 3) * (prog.high - prog.low)
            z.value = point
            K, L, J = np.exp(point)
            assert constraints[0].value() == (K * L + J * (prog.Q - 1) + 1 <= cfg.Mt + 1e-9) or \
                abs(K * L + J * (prog.Q - 1) + 1 - cfg.Mt) < 1e-6


def test_p2_branches_respect_the_floors():
    cfg = SgNullingConfig(problem="P2", L_min=3, Q_min=2)
    progs = branches(cfg)
    assert [p.Q for p in progs] == list(range(2, cfg.Mt - 2))  # K = J = 1, L = 3: 3 + Q <= M_t
    assert all(np.exp(p.low[1]) == pytest.approx(3) for p in progs)


def test_cli_run_records_the_optimum_and_the_solver_statuses(workdir):
    """`isacbench run --task sg-nulling --solver convex` as a user types it: the task's solver budget
    (2000), the exhaustive optimum, and the subproblem statuses in the run's solution.json."""
    import json

    from conftest import cli
    from mlflow.tracking import MlflowClient

    p = cli(["run", "--task", "sg-nulling", "--solver", "convex", "--json"], workdir)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    prob = SgNullingProblem(SgNullingConfig())
    best = solve_problem(prob, Exhaustive(), Budget(), np.random.default_rng(0)).evaluation.objective
    assert out["objective"] == pytest.approx(best, rel=1e-12) and out["evaluations"] <= 2000
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    path = client.download_artifacts(out["run_id"], "solution.json", str(workdir))
    info = json.load(open(path))["info"]
    assert info["statuses"]["optimal"] > 0 and info["rounded_candidates"] > 0
