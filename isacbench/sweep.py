"""Sweeps: tasks x solvers x seeds under a task's benchmark profile.

Workers (a local process pool, or Ray) only compute; the parent process records
every finished run to MLflow, so the store has one writer, and a run is marked
FINISHED only after all its results are logged. A sweep is one MLflow parent run
per task; re-running it skips (task, instance, solver, seed, budget) combinations
already FINISHED and reruns the rest (FAILED, KILLED, missing).
"""
from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from . import registry
from .api import UserError
from .config_args import parse_pairs
from .runner import Completed, RunSpec, build, compute, fail, prepare, record, run_tags, start_run
from .tracking import TAG, Tracker, environment_tags

Key = tuple[str, str, str, int, str]
RAY_CONNECT_TIMEOUT = 5.0  # seconds


@dataclass
class SweepReport:
    done: list[Completed] = field(default_factory=list)
    skipped: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)


def plan(tasks: Iterable[str], solvers: Iterable[str] | None, seeds: Iterable[int] | None,
         profile: str, tracking_uri: str | None = None) -> list[RunSpec]:
    """Expand a sweep into validated run specs (raises UserError before anything runs); the
    solvers' checks read the store `tracking_uri` (see `runner.prepare`)."""
    specs = []
    for task_name in tasks:
        task_cls = registry.load("task", task_name)
        profiles = task_cls.profiles()
        if profile not in profiles:
            raise UserError(f"task {task_cls.name!r} has no profile {profile!r}; available: {', '.join(profiles)}")
        prof = profiles[profile]
        names = list(solvers) if solvers else list(prof.solvers or
                                                    [n for n, s in registry.load_all("solver")[0].items()
                                                     if s.supports(task_cls)])
        for entry in names:
            solver, settings = parse_variant(entry)
            registry.check_pair(task_cls, registry.load("solver", solver))
            # a variant's task settings (e.g. ent-usr's topology) go to the task, the rest to the solver
            task_settings = {k: v for k, v in settings.items() if k in task_cls.setting_keys}
            solver_config = {k: v for k, v in settings.items() if k not in task_cls.setting_keys}
            for instance in prof.instances:
                for seed in (list(seeds) if seeds is not None else prof.seeds_for(entry)):
                    specs.append(RunSpec(task_name, solver, seed, {**instance, **task_settings}, solver_config,
                                         prof.budget_for(entry) if entry in prof.budgets else prof.budget_for(solver)))
    for spec in specs:
        prepare(spec, tracking_uri)
    return specs


def parse_variant(entry: str) -> tuple[str, dict]:
    """'mappo[topology=ccn-only,lr=1e-4]' -> ('mappo', {'topology': 'ccn-only', 'lr': 1e-4}): the
    variant's settings, solver config keys and task `setting_keys` together."""
    name, sep, rest = entry.partition("[")
    if not sep:
        return entry, {}
    if not rest.endswith("]"):
        raise UserError(f"solver variant {entry!r} is not of the form name[key=value,...]")
    return name, parse_pairs(filter(None, rest[:-1].split(",")), f"solver variant {entry!r}:")


def task_name(spec: RunSpec) -> str:
    """The registered name of the spec's task (without building the task)."""
    return registry.load("task", spec.task).name


def key(spec: RunSpec) -> Key:
    task, solver, budget = build(spec)
    _, tags = run_tags(spec, task, solver, budget)
    return task.name, tags[TAG + "instance"], tags[TAG + "variant"], spec.seed, budget.label()


def finished_keys(tracker: Tracker, task: str) -> set[Key]:
    keys = set()
    for r in tracker.runs(task, "attributes.status = 'FINISHED'"):
        t = r.data.tags
        if TAG + "seed" in t:  # not a sweep's parent run
            keys.add((t[TAG + "task"], t[TAG + "instance"], t.get(TAG + "variant", t[TAG + "solver"]),
                      int(t[TAG + "seed"]), t[TAG + "budget"]))
    return keys


def _compute_job(spec: RunSpec, tracking_uri: str | None) -> Completed:
    return compute(spec, tracking_uri=tracking_uri)


def _exit_with_parent(parent: int) -> None:
    """Pool worker initializer: a daemon thread ends the worker once the sweep process `parent` is
    gone (even by kill -9, which no handler of the parent sees), checking once a second."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="isacbench-parent-watch", daemon=True).start()


def local_executor(specs: list[RunSpec], workers: int, tracking_uri: str | None = None
                   ) -> Iterator[tuple[RunSpec, Completed | BaseException]]:
    """Yield (spec, result or error) as runs complete, in a process pool (inline for 1 worker);
    `tracking_uri` is the store the solvers may read (see `runner.compute`)."""
    if workers <= 1:
        for spec in specs:
            try:
                yield spec, _compute_job(spec, tracking_uri)
            except Exception as e:  # noqa: BLE001 - recorded as a FAILED run
                yield spec, e
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_exit_with_parent,
                               initargs=(os.getpid(),))
    try:
        pending: dict[Future, RunSpec] = {pool.submit(_compute_job, s, tracking_uri): s for s in specs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                spec = pending.pop(fut)
                err = fut.exception()
                yield spec, err if err is not None else fut.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def ray_executor(specs: list[RunSpec], workers: int, address: str | None, tracking_uri: str | None = None
                 ) -> Iterator[tuple[RunSpec, Completed | BaseException]]:
    """The same jobs as Ray tasks, on a cluster at `address` or a local Ray instance."""
    ray_connect(address, workers)
    import ray

    remote = ray.remote(num_cpus=1)(_compute_job)
    pending = {remote.remote(s, tracking_uri): s for s in specs}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                spec = pending.pop(ref)
                try:
                    yield spec, ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a failed task is recorded as FAILED
                    yield spec, getattr(e, "cause", None) or e
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def ray_connect(address: str | None, workers: int) -> None:
    """Import Ray and join the cluster at `address` (else start a local instance of `workers` CPUs).
    A cluster that does not answer is one error line within seconds (ray.init itself waits long)."""
    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray: pip install 'isacbench[ray]'") from None
    if ray.is_initialized():
        return
    if address and address not in ("auto", "local"):
        host, sep, port = address.removeprefix("ray://").rpartition(":")
        if not (sep and host and port.isdigit()):
            raise UserError(f"--address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
        try:
            socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT).close()
        except OSError as e:
            raise UserError(f"--address {address!r}: no Ray cluster answers there ({e.strerror or e}); start one "
                            f"with `ray start --head`, or omit --address for a local Ray instance") from None
    kwargs = {"address": address} if address else {"num_cpus": max(workers, 1)}
    try:
        ray.init(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False, **kwargs)
    except ConnectionError as e:
        raise UserError(f"--address {address!r}: {str(e).strip().splitlines()[0]}") from None


def sweep(specs: list[RunSpec], tracker: Tracker, profile: str, executor: str = "local", workers: int = 1,
          address: str | None = None, progress: Callable[[int, int, str], None] | None = None) -> SweepReport:
    """Run the specs not yet FINISHED in the store and record each result as it arrives."""
    report = SweepReport()
    done_keys: set[Key] = set()
    for task in sorted({task_name(s) for s in specs}):
        done_keys |= finished_keys(tracker, task)
    todo = []
    for spec in specs:
        (report.skipped if key(spec) in done_keys else todo).append(spec)
    if executor == "ray" and todo:
        ray_connect(address, workers)  # before the sweep's parent runs are recorded
    parents = {}
    for task in sorted({task_name(s) for s in todo}):
        parents[task] = tracker.client.create_run(
            tracker.experiment(task), run_name=f"sweep.{profile}.{time.strftime('%Y%m%d-%H%M%S')}",
            tags={**environment_tags(), TAG + "sweep": profile, TAG + "executor": executor}).info.run_id
    progress = progress or (lambda i, n, text: None)
    progress(0, len(todo), f"{len(report.skipped)} already finished")
    jobs = (ray_executor(todo, workers, address, tracker.uri) if executor == "ray"
            else local_executor(todo, workers, tracker.uri))
    try:
        for spec, outcome in jobs:
            parent = parents[task_name(spec)]
            run_id = start_run(tracker, spec, parent)
            if isinstance(outcome, BaseException):
                fail(tracker, run_id, outcome)
                report.failed.append((spec, f"{type(outcome).__name__}: {outcome}"))
            else:
                record(tracker, run_id, outcome)
                report.done.append(outcome)
            n = len(report.done) + len(report.failed)
            progress(n, len(todo), f"{spec.solver} seed {spec.seed}: "
                     + ("FAILED" if isinstance(outcome, BaseException) else f"{outcome.result.objective:.5g}"))
    except BaseException:
        for run_id in parents.values():
            tracker.finish(run_id, "KILLED", error="sweep interrupted")
        raise
    for run_id in parents.values():
        tracker.log_metrics(run_id, {"runs_finished": len(report.done), "runs_failed": len(report.failed),
                                     "runs_skipped": len(report.skipped)})
        tracker.finish(run_id, "FAILED" if report.failed else "FINISHED")
    return report
