"""Run one (task, instance, solver, seed): budget, timing, re-evaluation, feasibility, tracking."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np

from . import episodes, registry
from .api import (Budget, BudgetedProblem, BudgetExhausted, Evaluation, LearningSolver, Problem, Reporter,
                  SequentialTask, Solver, Task, UserError, variant_label)
from .tracking import TAG, Tracker, instance_id, pid_alive, plain_entries

BOUND_TOLERANCE = 1e-9
TRAINING_SHARE = 0.9  # of a learning solver's progress scale; its evaluation episodes are the rest


@dataclass
class RunResult:
    task: str
    solver: str
    seed: int
    objective: float
    feasible: bool
    violations: dict[str, float]
    metrics: dict[str, float]
    decision: dict
    evaluations: int
    wall_s: float
    budget: dict
    instance: str
    bound: float | None = None
    run_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        keys = ("objective", "feasible", "violations", "metrics", "decision", "evaluations", "wall_s", "run_id",
                "bound", "task", "solver", "seed", "instance", "budget")
        d = asdict(self)
        return {k: d[k] for k in keys}


@dataclass
class RunSpec:
    """What to run: everything is validated by `prepare` before any run is recorded."""

    task: str
    solver: str
    seed: int = 0
    task_config: Mapping[str, Any] = field(default_factory=dict)
    solver_config: Mapping[str, Any] = field(default_factory=dict)
    budget: Budget | None = None


def prepare(spec: RunSpec, tracking_uri: str | None = None) -> tuple[Task, Solver, Budget]:
    """`build`, then the solver's own checks (`Solver.check`) against the store `tracking_uri`:
    every user error is raised (UserError) before anything is recorded."""
    task, solver, budget = build(spec)
    solver.check(task, budget, tracking_uri)
    return task, solver, budget


def build(spec: RunSpec) -> tuple[Task, Solver, Budget]:
    """Load and validate task, solver, configs, pairing and budget (raises UserError)."""
    task_cls = registry.load("task", spec.task)
    solver_cls = registry.load("solver", spec.solver)
    registry.check_pair(task_cls, solver_cls)
    task = task_cls(spec.task_config)
    solver = solver_cls(spec.solver_config)
    budget = spec.budget or task.budget_for(solver.name)
    if spec.seed < 0:
        raise UserError(f"seed {spec.seed} is negative; seeds are integers >= 0")
    return task, solver, budget


def solver_rng(seed: int) -> np.random.Generator:
    """The solver's generator, derived from the run seed through a SeedSequence."""
    return np.random.default_rng(np.random.SeedSequence(seed))


@dataclass
class Solved:
    """One problem solved and checked: the re-evaluated decision, evaluations spent, the checked
    bound, the best-so-far trace and the solver's report."""

    evaluation: Evaluation
    decision: dict
    evaluations: int
    bound: float | None
    trace: list[float]
    info: dict


def solve_problem(problem: Problem, solver: Solver, budget: Budget, rng: np.random.Generator) -> Solved:
    """Solve one static problem within `budget`: the solver gets a BudgetedProblem; a solver that
    runs out of budget, or returns no decision, gets the best feasible point it evaluated; the
    decision is checked against the space, re-evaluated (never trusting the solver's score), a
    claimed upper bound below its own feasible value is rejected, and a NaN or +inf one dropped."""
    budgeted = BudgetedProblem(problem, budget)
    try:
        solution = solver.solve(budgeted, budget, rng)
        decision, bound, info = solution.decision, solution.bound, dict(solution.info)
    except BudgetExhausted:
        decision, bound, info = None, None, {"stop": "exceeded budget"}
    if bound is not None and (math.isnan(bound) or bound == math.inf):  # proves nothing: no bound
        bound = None
    if decision is None:
        decision = dict(budgeted.best.decision) if budgeted.best else problem.space.sample(rng)
    if not isinstance(decision, Mapping):
        raise RuntimeError(f"solver {solver.name!r} returned no decision (got {decision!r})")
    try:
        decision = problem.space.check(decision)
    except UserError as e:
        raise RuntimeError(f"solver {solver.name!r} returned an invalid decision: {e}") from None
    evaluation = problem.evaluate(decision)
    if (bound is not None and evaluation.feasible
            and evaluation.objective > bound + BOUND_TOLERANCE * max(1.0, abs(bound))):
        raise RuntimeError(f"solver {solver.name!r} claimed upper bound {bound} below the value "
                           f"{evaluation.objective} of its own feasible point")
    return Solved(evaluation, decision, budgeted.evaluations, bound, budgeted.trace, info)


def execute(task: Task, solver: Solver, budget: Budget, seed: int, reporter: Reporter | None = None) -> Solved:
    """Solve a static task's problem, or play a sequential task's evaluation episodes: train a
    learning solver and play its policy, or solve every frame's problem (`episodes`)."""
    reporter = reporter or Reporter()
    rng = solver_rng(seed)
    if isinstance(task, SequentialTask):
        if isinstance(solver, LearningSolver):  # two phases of one progress scale
            progress = reporter.progress
            training = replace(reporter, progress=lambda f, text: progress(TRAINING_SHARE * f, "training: " + text),
                               evaluate=lambda policy: episodes.policy_means(task, policy))
            policy = solver.train(task.make_env, budget, rng, training)
            return episodes.play_policy(task, policy, lambda f, text: progress(
                TRAINING_SHARE + (1 - TRAINING_SHARE) * f, "evaluation: " + text))
        return episodes.play_per_frame(task, lambda p, b: solve_problem(p, solver, b, rng), budget,
                                       reporter.progress)
    return solve_problem(task.problem(), solver, budget, rng)


@dataclass
class Completed:
    """Everything one run produced (picklable, so a worker process or Ray task can return it)."""

    result: RunResult
    evaluation: Evaluation
    trace: list[float]
    info: dict
    task_config: dict
    solver_config: dict
    step_metrics: list[tuple[dict, int]] = field(default_factory=list)
    artifacts: dict[str, bytes] = field(default_factory=dict)


def run_tags(spec: RunSpec, task: Task, solver: Solver, budget: Budget) -> tuple[dict, dict]:
    """(params, tags) of the MLflow run of `spec`."""
    task_cfg = task.config.model_dump(mode="json")
    solver_cfg = solver.config.model_dump(mode="json")
    params = {"task": task.name, "solver": solver.name, "seed": spec.seed,
              **{f"task.{k}": v for k, v in task_cfg.items()},
              **{f"solver.{k}": v for k, v in solver_cfg.items()},
              **{f"budget.{k}": v for k, v in budget.to_dict().items()}}
    tags = {TAG + "task": task.name, TAG + "solver": solver.name, TAG + "variant": variant(task, solver),
            TAG + "seed": str(spec.seed), TAG + "budget": budget.label(),
            TAG + "instance": instance_id({"task": task.name, **{k: v for k, v in task_cfg.items()
                                                                 if k not in task.setting_keys}})}
    return params, tags


def variant(task: Task, solver: Solver) -> str:
    """The solver's variant label, with the task settings (`Task.setting_keys`) that differ from
    their defaults, e.g. `mappo[topology=ccn-only]`."""
    default = task.Config().model_dump(mode="json")
    settings = {k: v for k, v in task.config.model_dump(mode="json").items()
                if k in task.setting_keys and v != default[k]}
    return variant_label(solver.name, {**solver.settings(), **settings})


def compute(spec: RunSpec, progress: Callable[[float, str], None] | None = None,
            log_metrics: Callable[[dict, int], None] | None = None, run_id: str | None = None,
            tracking_uri: str | None = None) -> Completed:
    """Solve and re-evaluate one spec, without writing to the store. Step metrics go to
    `log_metrics` when given, else they are kept in the result; artifact files are returned as bytes.
    `tracking_uri` is the store the solver may read (`Reporter.tracking_uri`, e.g. resume=RUN_ID)."""
    task, solver, budget = build(spec)
    _, tags = run_tags(spec, task, solver, budget)
    buffered: list[tuple[dict, int]] = []
    with tempfile.TemporaryDirectory(prefix=f"isacbench-{os.getpid()}-{run_id or 'job'}-") as artifacts:
        reporter = Reporter(progress=progress or (lambda f, t: None),
                            log_metrics=log_metrics or (lambda m, s: buffered.append((dict(m), s))),
                            artifact_dir=artifacts, run_id=run_id, tracking_uri=tracking_uri)
        start = time.perf_counter()
        try:
            solved = execute(task, solver, budget, spec.seed, reporter)
        except BaseException as e:
            e.artifacts = _read_files(artifacts)  # checkpoints of an interrupted run stay resumable
            raise
        wall = time.perf_counter() - start
        files = _read_files(artifacts)
    ev = solved.evaluation
    if not math.isfinite(ev.objective):
        raise RuntimeError(f"the objective of {solver.variant!r} on {task.name!r} is {ev.objective}, "
                           f"not a finite number: the run has no result")
    result = RunResult(task=task.name, solver=solver.name, seed=spec.seed, objective=float(ev.objective),
                       feasible=bool(ev.feasible), violations=dict(ev.violations),
                       metrics={k: float(v) for k, v in ev.metrics.items()}, decision=solved.decision,
                       evaluations=int(solved.evaluations), wall_s=wall, budget=budget.to_dict(),
                       instance=tags[TAG + "instance"], bound=solved.bound, run_id=run_id,
                       info=plain_entries({k: v for k, v in solved.info.items() if not k.startswith("curve:")}))
    return Completed(result, ev, solved.trace, solved.info, task.config.model_dump(mode="json"),
                     solver.config.model_dump(mode="json"), buffered, files)


def start_run(tracker: Tracker, spec: RunSpec, parent_run_id: str | None = None) -> str:
    task, solver, budget = build(spec)
    params, tags = run_tags(spec, task, solver, budget)
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    return tracker.start(task.name, solver.variant, spec.seed, params, tags)


def run(spec: RunSpec, tracker: Tracker | None = None, progress: Callable[[float, str], None] | None = None,
        tracking_uri: str | None = None) -> RunResult:
    """Run one spec; with a tracker, record it as one MLflow run (FAILED on error, never a result).
    The solver reads the tracker's store, else `tracking_uri` (see `compute`)."""
    prepare(spec, tracker.uri if tracker else tracking_uri)
    if tracker is None:
        return compute(spec, progress, tracking_uri=tracking_uri).result
    run_id = start_run(tracker, spec)
    try:
        done = compute(spec, progress, lambda m, s: tracker.log_metrics(run_id, m, s), run_id, tracker.uri)
    except BaseException as e:
        fail(tracker, run_id, e)
        raise
    record(tracker, run_id, done)
    return done.result


def fail(tracker: Tracker, run_id: str, error: BaseException) -> None:
    """Mark a run FAILED (KILLED on Ctrl-C) with the error, keeping its artifact files."""
    tracker.log_files(run_id, getattr(error, "artifacts", {}))
    tracker.finish(run_id, _status(error), error=f"{type(error).__name__}: {error}")


def _status(error: BaseException) -> str:
    return "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"


def reap(tracker: Tracker) -> list[str]:
    """Runs left RUNNING by a process of this host that is gone (kill -9) become KILLED, with the files
    its solver had written (checkpoints) logged from the process's scratch folder (`compute`), and
    the scratch folders of gone processes are removed. Returns one line per run."""
    scratch = Path(tempfile.gettempdir())
    lines = []
    for r in tracker.orphans():
        run_id, pid = r.info.run_id, r.data.tags[TAG + "pid"]
        files = {k: v for d in scratch.glob(f"isacbench-{pid}-{run_id}-*") for k, v in _read_files(d).items()}
        tracker.log_files(run_id, files)
        tracker.finish(run_id, "KILLED", error=f"process {pid} ended (killed) before it finished the run")
        lines.append(f"run {run_id} ({r.info.run_name}) was left RUNNING by process {pid}, which is gone: "
                     f"marked KILLED" + (f"; its files are now its artifacts: {', '.join(files)}" if files else ""))
    for d in scratch.glob("isacbench-*-*-*"):
        pid = d.name.split("-")[1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
    return lines


def record(tracker: Tracker, run_id: str, done: Completed) -> None:
    """Log a completed run's metrics, curves and artifacts, then mark it FINISHED (last)."""
    r, info = done.result, done.info
    r.run_id = run_id
    try:
        for metrics, step in done.step_metrics:
            tracker.log_metrics(run_id, metrics, step)
        metrics = {"objective": r.objective, "feasible": float(r.feasible), "evaluations": r.evaluations,
                   "wall_s": r.wall_s, **r.metrics, **{f"violation.{k}": v for k, v in r.violations.items()}}
        if r.bound is not None:
            metrics["bound"] = r.bound
        if "frames" in info:
            metrics["frames"] = info["frames"]
        if done.evaluation.objectives is not None:
            metrics.update({f"objective.{i}": v for i, v in enumerate(done.evaluation.objectives)})
        tracker.log_metrics(run_id, {k: v for k, v in metrics.items() if _finite(v)})
        if done.trace:
            tracker.log_series(run_id, "best_so_far", done.trace)
        for key, curve in info.items():  # e.g. per-frame values: their own names, never the results'
            if key.startswith("curve:"):
                tracker.log_series(run_id, "curve/" + key[len("curve:"):], list(curve))
        tracker.log_files(run_id, done.artifacts)  # first: checkpoints survive a failure below
        tracker.log_json(run_id, "solution.json", {"decision": r.decision, "evaluation": done.evaluation.to_dict(),
                                                   "bound": r.bound, "evaluations": r.evaluations,
                                                   "info": r.info, "budget": r.budget})
        tracker.log_json(run_id, "config.json", {"task": r.task, "solver": r.solver, "seed": r.seed,
                                                 "task_config": done.task_config,
                                                 "solver_config": done.solver_config,
                                                 "budget": r.budget, "instance": r.instance})
    except BaseException as e:
        tracker.finish(run_id, _status(e), error=f"recording failed: {type(e).__name__}: {e}")
        raise
    tracker.finish(run_id, "FINISHED")


def _read_files(directory: str) -> dict[str, bytes]:
    root = Path(directory)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))
