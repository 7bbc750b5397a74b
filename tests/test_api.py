"""Core contracts: spaces, budgets, config validation, runner re-evaluation."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from toy import ToyProblem, ToyTask

from isacbench.api import (Budget, BudgetedProblem, BudgetExhausted, Categorical, Integer, Real, Solution, Solver,
                           Space, UserError)
from isacbench.runner import RunSpec, execute, run


@st.composite
def spaces(draw):
    variables = []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["int", "real", "cat"]))
        if kind == "int":
            lo = draw(st.integers(-5, 5))
            variables.append(Integer(f"v{i}", lo, lo + draw(st.integers(0, 4))))
        elif kind == "real":
            lo = draw(st.floats(-10, 10))
            variables.append(Real(f"v{i}", lo, lo + draw(st.floats(0.1, 5))))
        else:
            variables.append(Categorical(f"v{i}", tuple(draw(st.lists(st.text(min_size=1, max_size=3),
                                                                     min_size=1, max_size=3, unique=True)))))
    return Space(tuple(variables))


@given(spaces(), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_samples_lie_in_the_space_and_survive_check(space, seed):
    x = space.sample(np.random.default_rng(seed))
    assert space.check(x) == x
    assert all(v.contains(x[v.name]) for v in space.variables)


@given(spaces())
@settings(max_examples=40, deadline=None)
def test_grid_enumerates_exactly_grid_size_distinct_points(space):
    points = list(space.grid(real_points=3))
    assert len(points) == space.grid_size(real_points=3)
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    assert all(space.check(p) == p for p in points)


def test_check_names_the_offending_variable():
    space = ToyProblem(3.5).space
    with pytest.raises(UserError, match="'x'=9 is outside integers 0..5"):
        space.check({"x": 9, "y": 0.5, "c": "a"})
    with pytest.raises(UserError, match="unknown decision variable 'z'"):
        space.check({"x": 1, "y": 0.5, "c": "a", "z": 1})
    with pytest.raises(UserError, match="'y' is missing"):
        space.check({"x": 1, "c": "a"})
    with pytest.raises(UserError, match="cannot parse 'abc'"):
        space.check({"x": "abc", "y": 0.5, "c": "a"})


def test_budgeted_problem_counts_and_stops():
    bp = BudgetedProblem(ToyProblem(3.5), Budget(evaluations=3))
    rng = np.random.default_rng(0)
    values = [bp.evaluate(bp.space.sample(rng)) for _ in range(3)]
    assert bp.exhausted and bp.evaluations == 3
    with pytest.raises(BudgetExhausted):
        bp.evaluate(bp.space.sample(rng))
    feasible = [v.objective for v in values if v.feasible]
    assert bp.trace[-1] == max(feasible)
    assert all(a <= b or math.isnan(a) for a, b in zip(bp.trace, bp.trace[1:]))


@pytest.mark.parametrize("config, message", [
    ({"capacity": 11}, "capacity=11: Input should be less than or equal to 10"),
    ({"capacity": "lots"}, "capacity='lots': Input should be a valid number"),
    ({"cap": 1}, "unknown task toy config key 'cap'; allowed: instance_seed, capacity"),
    ({"instance_seed": -1}, "instance_seed=-1"),
])
def test_config_errors_name_key_value_and_range(config, message):
    with pytest.raises(UserError, match=message):
        ToyTask(config)


class LyingSolver(Solver):
    """Claims a bound below its own feasible point and reports no score of its own."""
    name = "liar"

    def solve(self, problem, budget, rng):
        return Solution(decision={"x": 3, "y": 0.5, "c": "b"}, bound=0.0)


def test_runner_reevaluates_and_rejects_a_false_bound():
    with pytest.raises(RuntimeError, match="claimed upper bound 0.0 below"):
        execute(ToyTask(), LyingSolver(), Budget(evaluations=5), seed=0)


def test_runner_result_comes_from_the_problem_not_the_solver():
    result = run(RunSpec("toy:ToyTask", "exhaustive", budget=Budget(evaluations=200)))
    assert result.decision == {"x": 3, "y": 0.5, "c": "b"}
    assert result.objective == ToyProblem(3.5).evaluate(result.decision).objective == 0.25
    assert result.evaluations == 6 * 11 * 2


def test_exhaustive_refuses_oversized_spaces():
    with pytest.raises(UserError, match="132 grid points, more than max_points=100"):
        run(RunSpec("toy:ToyTask", "exhaustive", solver_config={"max_points": 100}, budget=Budget(evaluations=500)))


def test_same_seed_same_numbers_different_seed_different_numbers():
    a, b, c = (run(RunSpec("toy:ToyTask", "random", seed=s)) for s in (7, 7, 8))
    assert (a.decision, a.objective) == (b.decision, b.objective)
    assert a.decision != c.decision


def test_variant_names_non_default_settings_only():
    from isacbench.registry import load
    from isacbench.sweep import parse_variant

    optuna = load("solver", "optuna")
    assert optuna().variant == "optuna"
    assert optuna({"sampler": "cmaes", "storage": "sqlite:///x.db"}).variant == "optuna[sampler=cmaes]"
    name, config = parse_variant("optuna[sampler=random,n_startup_trials=5]")
    assert (name, config) == ("optuna", {"sampler": "random", "n_startup_trials": 5})
    with pytest.raises(UserError, match="not of the form"):
        parse_variant("optuna[sampler=random")
    with pytest.raises(UserError, match="solver variant 'optuna\\[sampler\\]': 'sampler' is not KEY=VALUE"):
        parse_variant("optuna[sampler]")


def test_key_value_pairs_are_json_else_text():
    from isacbench.config_args import parse_pairs

    assert parse_pairs(["a=1", " b = [1, 2]", "c=tpe", "d= x y ", "e=1e-4"], "--config") == {
        "a": 1, "b": [1, 2], "c": "tpe", "d": "x y", "e": 1e-4}
    assert parse_pairs(["K=3", "mode=null"], "--decision", raw=True) == {"K": "3", "mode": "null"}
    for bad in ("novalue", "=1"):
        with pytest.raises(UserError, match=f"--config '{bad}' is not KEY=VALUE"):
            parse_pairs([bad], "--config")


def test_plain_json_data_keeps_scalars_and_leaves_out_arrays():
    from isacbench.tracking import plain, plain_entries

    out = plain({"a": np.float32(0.5), 1: (np.int64(2), None, True), "b": np.array(3.0)})
    assert out == {"a": 0.5, "1": [2, None, True], "b": 3.0} and type(out["a"]) is float
    assert type(out["1"][0]) is int
    assert plain_entries({"ok": [1, "x"], "array": np.zeros(3), "nested": {"o": object()}}) == {"ok": [1, "x"]}
    with pytest.raises(TypeError, match="ndarray is not plain JSON data"):
        plain({"a": np.zeros(2)})


def test_role_spec_samples_every_head_inside_its_domain():
    from isacbench.multiagent import Head, RoleSpec

    spec = RoleSpec("r", 3, 5, (Head("b", "bernoulli", 2), Head("c", "categorical", 4, classes=7),
                                  Head("p", "continuous", 6, low=-1.0, high=2.0)))
    a = spec.sample(8, np.random.default_rng(0))
    assert {k: v.shape for k, v in a.items()} == {"b": (8, 3, 2), "c": (8, 3, 4), "p": (8, 3, 6)}
    assert set(np.unique(a["b"])) == {0, 1} and set(np.unique(a["c"])) == set(range(7))
    assert a["p"].min() >= -1.0 and a["p"].max() <= 2.0 and a["p"].std() > 0.5
