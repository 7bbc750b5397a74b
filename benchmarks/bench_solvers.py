"""Solver wall time to reach 99% of the best known objective on each default instance.

Method (per solver, seed 0, the task's default instance):
1. Best-so-far trace with timestamps: the solver runs through `isacbench.runner.execute`
   (budget, re-evaluation, feasibility check) with the runner's `BudgetedProblem` replaced by a
   subclass that also timestamps every evaluation, so the runner's best-so-far trace gets times.
   Time to target = the first timestamp at which the best feasible objective reaches 99% of the
   best known objective. A solver that returns a decision it never evaluated (rule baselines) or
   that charges its structure evaluations in bulk (polyblock, convex: one `evaluate` at the end)
   reaches the target when it returns, if its re-evaluated result does: its total wall time.
2. Increasing budgets for the bulk solvers (polyblock, convex): the evaluation budget doubles
   up to the solver's budget until the run's result reaches the target; the time is that run's
   wall time (so it also shows how their result improves with budget).
Budgets (full run): those of each task's `quick` benchmark profile (Task.profiles()). The best
known objective is the best feasible objective over all runs of this benchmark (for sg-nulling,
exhaustive search makes it the optimum; sg-cluster's exhaustive grid of 72,600 points is too slow
for this run). ent-usr: per-frame solvers on the first
frame problem of the first evaluation episode (the frame problem is a static Problem).
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from unittest import mock

from isacbench import registry, runner
from isacbench.api import Budget, BudgetedProblem
from isacbench.tasks.ent_usr import EntUsrTask
from isacbench.tasks.sg_cluster import analytic as CA
from isacbench.tasks.sg_nulling import analytic as NA
from isacbench.tasks.sg_nulling import problem as NP

from .common import Section

TARGET_FRACTION = 0.99

SIZES = {  # evaluation budget by solver; None = the budget of the task's `quick` benchmark profile
    "tiny": dict(nulling={"random": 40, "optuna": 4}, cluster={"random": 20, "polyblock": 40},
                 ent={"random": 4, "ccn-mrt": None}, bulk_steps=1),
    "quick": dict(nulling={"exhaustive": None, "prop3-search": None, "random": 300, "optuna": 40},
                  cluster={"approx-search": None, "non-cooperative": None, "random": 150, "optuna": 30,
                           "polyblock": 500},
                  ent={"random": 20, "optuna": 15, "polyblock": 50, "random-mrt": None, "ccn-mrt": None,
                       "cfn-mrt": None},
                  bulk_steps=2),
    "full": dict(nulling={s: None for s in ("exhaustive", "prop3-search", "random", "optuna")},
                 cluster={s: None for s in ("approx-search", "non-cooperative", "time-sharing", "random", "optuna",
                                            "polyblock", "convex")},  # exhaustive: 72,600 points, ~4 min
                 ent={"random": 100, "optuna": 60, "polyblock": 200, "random-mrt": None, "ccn-mrt": None,
                      "cfn-mrt": None},
                 bulk_steps=5),
}
BULK = ("polyblock", "convex")


class TimedProblem(BudgetedProblem):
    """BudgetedProblem that also records, after each `evaluate` call, the elapsed time (`times`)
    and the best feasible objective so far (`bests`); bulk `charge`s add no timestamps."""

    last: "TimedProblem | None" = None

    def __init__(self, problem, budget, clock=time.perf_counter):
        super().__init__(problem, budget, clock)
        self.times: list[float] = []
        self.bests: list[float] = []
        TimedProblem.last = self

    def evaluate(self, x):
        ev = super().evaluate(x)
        self.times.append(self.elapsed)
        self.bests.append(self.best.objective if self.best else -math.inf)
        return ev


@contextmanager
def timed_runner():
    """Make the runner (`solve_problem`) build TimedProblems (restored on exit)."""
    with mock.patch.object(runner, "BudgetedProblem", TimedProblem):
        yield


@dataclass
class Run:
    solver: str
    budget: str
    objective: float  # re-evaluated (-inf when infeasible)
    wall_s: float
    times: list[float] = field(default_factory=list)
    bests: list[float] = field(default_factory=list)
    evaluations: int = 0

    def time_to(self, target: float) -> float | None:
        for t, b in zip(self.times, self.bests):
            if b >= target:
                return t
        return self.wall_s if self.objective >= target else None


def cold_caches() -> None:
    """Clear the module-level memo caches of the analytic evaluators, so that no solver profits
    from tables an earlier solver filled (each run starts as a fresh process would)."""
    for mod in (NA, NP, CA):
        for obj in vars(mod).values():
            if callable(getattr(obj, "cache_clear", None)):
                obj.cache_clear()


def run_static(task, solver_name: str, budget: Budget, seed: int = 0) -> Run:
    solver = registry.load("solver", solver_name)()
    cold_caches()
    with timed_runner():
        start = time.perf_counter()
        solved = runner.execute(task, solver, budget, seed)
        wall = time.perf_counter() - start
    return _timed_run(solver_name, budget, solved, wall)


def run_frame(prob, solver_name: str, budget: Budget, seed: int = 0) -> Run:
    """A per-frame solver on one ent-usr frame problem, as the runner's per-frame loop solves it."""
    solver = registry.load("solver", solver_name)()
    with timed_runner():
        start = time.perf_counter()
        solved = runner.solve_problem(prob, solver, budget, runner.solver_rng(seed))
        wall = time.perf_counter() - start
    return _timed_run(solver_name, budget, solved, wall)


def _timed_run(solver_name: str, budget: Budget, solved: runner.Solved, wall: float) -> Run:
    ev, tp = solved.evaluation, TimedProblem.last
    return Run(solver_name, budget.label(), ev.objective if ev.feasible else -math.inf, wall,
               list(tp.times), list(tp.bests), solved.evaluations)


class Doubling:
    """A bulk solver run with budgets cap / 2^steps, ..., cap / 2, cap (ascending), each run only
    while the previous one misses the target (`advance`)."""

    def __init__(self, task, solver: str, cap: int, steps: int):
        self.task, self.solver = task, solver
        self.budgets = sorted({max(2, round(cap / 2 ** k)) for k in range(steps, -1, -1)})
        self.tries: list[Run] = []

    def advance(self, target: float) -> bool:
        """Run the next budget if no try reaches target yet; False when nothing was run."""
        if any(t.objective >= target for t in self.tries) or len(self.tries) == len(self.budgets):
            return False
        self.tries.append(run_static(self.task, self.solver, Budget(evaluations=self.budgets[len(self.tries)])))
        return True

    def row(self, target: float) -> tuple[Run, float | None, str]:
        hit = next((t for t in self.tries if t.objective >= target), None)
        tries = "; ".join(f"{t.budget.split('=')[-1]} evals: {t.objective:.4g} in {t.wall_s:.2f} s" for t in self.tries)
        return (hit or self.tries[-1]), (hit.wall_s if hit else None), f"doubling budgets ({tries})"


def solve_instance(task, plan: dict, steps: int) -> tuple[list[Run], dict[str, Doubling], float]:
    """Run every solver of `plan`; bulk solvers by doubling until 99% of the best known (which may
    rise as they improve). Returns (direct runs, doublings, best known objective)."""
    profile = task.profiles()["quick"]
    budgets = {s: Budget(evaluations=b) if b is not None else profile.budget_for(s) for s, b in plan.items()}
    runs = [run_static(task, s, b) for s, b in budgets.items() if s not in BULK]
    dbl = {s: Doubling(task, s, b.evaluations, steps) for s, b in budgets.items() if s in BULK}

    def best() -> float:
        return max([r.objective for r in runs] + [t.objective for d in dbl.values() for t in d.tries])

    while any([d.advance(TARGET_FRACTION * best()) for d in dbl.values()]):
        pass
    return runs, dbl, best()


def _table(sec: Section, title: str, runs: list[Run], dbl: dict[str, Doubling], best: float):
    target = TARGET_FRACTION * best
    sec.lines += ["", f"**{title}**: best known objective {best:.6g}, target (99%) {target:.6g}", "",
                  "| solver | budget | evaluations | objective | wall s | time to 99% [s] | method |",
                  "|---|---|---|---|---|---|---|"]
    rows = []
    for r in runs:
        ttt = r.time_to(target)
        rows.append((r, ttt, "timestamped trace" if ttt is not None and ttt < r.wall_s else "returned result"))
    rows += [d.row(target) for d in dbl.values()]
    for r, ttt, method in rows:
        sec.lines.append(f"| {r.solver} | {r.budget} | {r.evaluations} | {r.objective:.6g} | {r.wall_s:.2f} | "
                         + (f"{ttt:.3f}" if ttt is not None else "not reached") + f" | {method} |")
        if ttt is not None:
            sec.figure(f"{title}: {r.solver} time to 99%", ttt, "s", f"{method}; objective {r.objective:.6g}")


def run(scale: str = "full") -> Section:
    cfg = SIZES[scale]
    sec = Section("solvers")
    sec.lines.append(__doc__.split("\n\n", 1)[1].strip())
    nulling, cluster, ent = registry.load("task", "sg-nulling")(), registry.load("task", "sg-cluster")(), EntUsrTask()
    for title, task, plan in (("sg-nulling P1 (default)", nulling, cfg["nulling"]),
                              ("sg-cluster P2 (default)", cluster, cfg["cluster"])):
        runs, dbl, best = solve_instance(task, plan, cfg["bulk_steps"])
        _table(sec, title, runs, dbl, best)
    env = ent.evaluation_env()
    prob = ent.frame_problems(env)[0]
    runs = [run_frame(prob, s, Budget(evaluations=b if b is not None else 1)) for s, b in cfg["ent"].items()]
    _table(sec, "ent-usr frame problem (episode 0, frame 0)", runs, {}, max(r.objective for r in runs))
    return sec
