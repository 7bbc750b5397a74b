"""A tiny static task used by the core tests (loaded as `toy:ToyTask`, no packaging needed).

maximize  -(x - 3)^2 - 4 (y - 0.5)^2 + bonus[c]   s.t.  x + y <= 3.5
with x in 0..5 (integer), y in [0, 1] (real), c in {a, b}; optimum x=3, y=0.5, c=b.
"""
from pydantic import Field

from isacbench.api import (Budget, Categorical, Evaluation, Integer, Problem, Profile, Real, Solution, Solver, Space,
                           Task, TaskConfig)

BONUS = {"a": 0.0, "b": 0.25}


class ToyConfig(TaskConfig):
    capacity: float = Field(3.5, ge=0.0, le=10.0, description="right-hand side of x + y <= capacity")


class ToyProblem(Problem):
    def __init__(self, capacity: float):
        self.capacity = capacity
        self.space = Space((Integer("x", 0, 5), Real("y", 0.0, 1.0), Categorical("c", ("a", "b"))))

    def evaluate(self, x):
        excess = x["x"] + x["y"] - self.capacity
        value = -(x["x"] - 3) ** 2 - 4 * (x["y"] - 0.5) ** 2 + BONUS[x["c"]]
        return Evaluation(objective=value, feasible=excess <= 0, violations={"capacity": max(excess, 0.0)},
                          metrics={"slack": self.capacity - x["x"] - x["y"]})


class ToyTask(Task):
    name = "toy"
    description = "quadratic toy problem for tests"
    Config = ToyConfig
    default_budget = Budget(evaluations=50)
    leaderboard_metrics = ("slack",)

    def problem(self):
        return ToyProblem(self.config.capacity)


class SettingToyTask(ToyTask):
    """The toy task whose `capacity` is a task setting (restricts the decision; outside the instance id)."""
    setting_keys = ("capacity",)


class BrokenSolver(Solver):
    """A solver with a bug: the runner must record its run as FAILED, never as a result."""
    name = "broken"

    def solve(self, problem, budget, rng):
        problem.evaluate(problem.space.sample(rng))
        raise ZeroDivisionError("solver bug")


class OtherTaskSolver(Solver):
    """Supports only a task named 'other': pairing it with toy must be refused."""
    name = "other-only"
    tasks = frozenset({"other"})

    def solve(self, problem, budget, rng):
        return Solution(decision=problem.space.sample(rng))


class NanBoundSolver(Solver):
    """Returns a random point with bound NaN: a bound that proves nothing, so none is recorded."""
    name = "nan-bound"

    def solve(self, problem, budget, rng):
        return Solution(decision=problem.space.sample(rng), bound=float("nan"))


class FlakySolver(Solver):
    """Fails while $TOY_FAIL is set (to test that sweeps rerun FAILED runs); sleeps $TOY_SLEEP seconds."""
    name = "flaky"

    def solve(self, problem, budget, rng):
        import os
        import time

        time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
        if os.environ.get("TOY_FAIL"):
            raise RuntimeError("flaky failure")
        return Solution(decision=problem.space.sample(rng))


ToyTask.profiles = classmethod(lambda cls: {
    "quick": Profile(budget=Budget(evaluations=50), budgets={"exhaustive": Budget(evaluations=200)},
                     solvers=("random", "exhaustive"), seeds=(0, 1, 2)),
    "paper": Profile(instances=({}, {"capacity": 2.0}), budget=Budget(evaluations=100),
                     solvers=("random",), seeds=(0, 1)),
})


class NanProblem(ToyProblem):
    def evaluate(self, x):
        ev = super().evaluate(x)
        ev.objective = float("nan")
        return ev


class NanTask(ToyTask):
    """A task with a bug: every objective is nan, so none of its runs may be FINISHED."""
    name = "toy-nan"

    def problem(self):
        return NanProblem(self.config.capacity)
