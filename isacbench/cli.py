"""The `isacbench` command line (Typer). User mistakes print one line and exit 2."""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import registry
from .api import Budget, SequentialTask, UserError
from .config_args import parse_pairs
from .tracking import plain

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="isacbench: benchmark for network-level integrated sensing and communication optimization.")
out = Console()
err = Console(stderr=True)


class Notes(logging.Handler):
    """What isacbench's loggers say (e.g. a budget used in whole rollouts): a `note:` line each, once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text not in self.seen:
            self.seen.add(text)
            err.print(f"note: {text}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    logging.getLogger("isacbench").addHandler(Notes())
    logging.getLogger("isacbench").propagate = False
    try:
        app(standalone_mode=True)
    except UserError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)


# ------------------------------------------------------------------- parsing
MAX_SEEDS = 10_000  # per command


def parse_seeds(seed: Optional[int], seeds: Optional[str]) -> list[int]:
    """--seed N or --seeds '0-4' / '0,2,5'."""
    if seed is not None and seeds is not None:
        raise UserError("give either --seed or --seeds, not both")
    if seeds is None:
        return [0 if seed is None else seed]
    try:
        ranges = []
        for part in seeds.split(","):
            lo, sep, hi = part.strip().partition("-")
            ranges.append(range(int(lo), (int(hi) if sep else int(lo)) + 1))
    except ValueError:
        raise UserError(f"--seeds {seeds!r} is not a range like 0-4 or a list like 0,2,5") from None
    count = sum(max(0, r.stop - r.start) for r in ranges)
    if count > MAX_SEEDS:
        raise UserError(f"--seeds {seeds!r} names {count:,} seeds; at most {MAX_SEEDS:,} per command")
    out_seeds = [s for r in ranges for s in r]
    if not out_seeds or min(out_seeds) < 0:
        raise UserError(f"--seeds {seeds!r} must name at least one seed, all >= 0")
    return out_seeds


def make_budget(task: str, solver: str, evals: Optional[int], seconds: Optional[float],
                frames: Optional[int]) -> Budget | None:
    for name, v in (("--budget-evals", evals), ("--budget-seconds", seconds), ("--budget-frames", frames)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise UserError(f"{name} {v} must be > 0 and finite")
    if evals is None and seconds is None and frames is None:
        return None
    base = registry.load("task", task).budget_for(registry.load("solver", solver).name)
    return Budget(evaluations=evals if evals is not None else base.evaluations,
                  seconds=seconds if seconds is not None else base.seconds,
                  frames=frames if frames is not None else base.frames)


def out_folder(path: Path) -> None:
    """Create the --out folder (one error line when it cannot be one)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {path}: cannot create the folder ({e.strerror})") from None


class ProgressBar:
    """One overall progress bar, `bar(fraction, status)`, whose fraction never goes back: a live bar on
    a terminal; elsewhere (CI, logs, nohup) a plain line at each 10 % step and at least every 30 s."""

    def __init__(self, description: str):
        self.description, self.done, self.shown = description, 0.0, 0.0
        self.start = self.shown_at = time.monotonic()
        self.live = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                             TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), TimeRemainingColumn(),
                             TextColumn("{task.fields[status]}", markup=False), console=err,
                             disable=not err.is_terminal)
        self.task = self.live.add_task(description, total=1.0, status="")

    def __enter__(self) -> "ProgressBar":
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def __call__(self, fraction: float, status: str) -> None:
        self.done = max(self.done, min(fraction, 1.0))
        self.live.update(self.task, completed=self.done, status=status)
        now = time.monotonic()
        if self.live.disable and (int(10 * self.done) > int(10 * self.shown) or now - self.shown_at >= 30):
            self.shown, self.shown_at = self.done, now
            err.print(f"{self.description}: {self.done:.0%} after {now - self.start:.0f} s: {status}",
                      markup=False, highlight=False, soft_wrap=True)


# ------------------------------------------------------------------ commands
@app.command("list")
def list_cmd() -> None:
    """Tasks and solvers, a line each, and which pairs are supported."""
    (tasks, broken_tasks), (solvers, broken_solvers) = registry.load_all("task"), registry.load_all("solver")
    for title, entries, extra in (("Tasks", tasks, lambda c: c.kind),
                                  ("Solvers", solvers, lambda c: "+".join(sorted(c.kinds)))):
        listing = Table(title=title, box=None, show_header=False, title_justify="left", pad_edge=False)
        listing.add_column("name", style="bold", no_wrap=True, min_width=16)
        listing.add_column("kind", no_wrap=True, min_width=17)
        listing.add_column("description", no_wrap=True, overflow="ellipsis")
        for name, cls in entries.items():
            listing.add_row(name, extra(cls), cls.description)
        out.print(listing)
    table = Table(title="Supported pairs (task x solver)")
    table.add_column("solver")
    for t in tasks:
        table.add_column(t, justify="center")
    for name, s in solvers.items():
        table.add_row(name, *("yes" if s.supports(t) else "-" for t in tasks.values()))
    out.print(table)
    for name, error in {**broken_tasks, **broken_solvers}.items():
        err.print(f"[yellow]warning:[/] {escape(f'{name!r} is registered but cannot be loaded: {error}')}",
                  highlight=False)


@app.command()
def run(task: str = typer.Option(..., "--task", "-t", help="task name or module:Class"),
        solver: str = typer.Option(..., "--solver", "-s", help="solver name or module:Class"),
        seed: Optional[int] = typer.Option(None, "--seed", help="one solver seed (default 0)"),
        seeds: Optional[str] = typer.Option(None, "--seeds", help="seed range like 0-4 or list 0,2,5"),
        config: List[str] = typer.Option([], "--config", "-c", help="task config KEY=VALUE (repeatable)"),
        solver_config: List[str] = typer.Option([], "--solver-config", "-S", help="solver config KEY=VALUE"),
        budget_evals: Optional[int] = typer.Option(None, "--budget-evals", help="evaluation budget"),
        budget_seconds: Optional[float] = typer.Option(None, "--budget-seconds", help="wall-clock budget"),
        budget_frames: Optional[int] = typer.Option(None, "--budget-frames", help="environment frames budget"),
        device: Optional[str] = typer.Option(None, "--device", help="torch device for learning solvers"),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow URI (default: ./mlflow.db)"),
        no_track: bool = typer.Option(False, "--no-track", help="do not record to MLflow"),
        as_json: bool = typer.Option(False, "--json", help="one JSON object per seed on stdout")) -> None:
    """Run a solver on a task for one or more seeds and record each run to MLflow."""
    from .runner import RunSpec, prepare
    from .runner import run as run_one
    from .tracking import Tracker

    seed_list = parse_seeds(seed, seeds)
    scfg = parse_pairs(solver_config, "--solver-config")
    if device is not None:
        if "device" not in registry.load("solver", solver).Config.model_fields:
            raise UserError(f"solver {solver!r} has no device setting; --device applies to learning solvers")
        scfg["device"] = device
    specs = [RunSpec(task, solver, s, parse_pairs(config, "--config"), scfg,
                     make_budget(task, solver, budget_evals, budget_seconds, budget_frames)) for s in seed_list]
    prepare(specs[0], tracking_uri)  # validate everything before anything is recorded
    tracker = None if no_track else Tracker(tracking_uri)
    if tracker:
        report_reaped(tracker)
    results = []
    with ProgressBar(f"{task} x {solver}") as bar:
        for i, spec in enumerate(specs):
            def progress(fraction: float, text: str, _i=i, _seed=spec.seed) -> None:
                bar((_i + min(max(fraction, 0.0), 1.0)) / len(specs), f"seed {_seed}: {text}")

            r = run_one(spec, tracker, progress, tracking_uri)
            bar((i + 1) / len(specs), f"seed {spec.seed}: objective {r.objective:.5g}")
            results.append(r)
            if as_json:
                out.print_json(json.dumps(plain(r.to_json())), indent=None)
    if not as_json:
        _print_results(results)


def report_reaped(tracker) -> None:
    """Runs a killed process left RUNNING in this store are marked KILLED (`runner.reap`): a line each."""
    from .runner import reap

    for line in reap(tracker):
        err.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)


def _print_results(results) -> None:
    table = Table(title=f"{results[0].task} x {results[0].solver}")
    for col in ("seed", "objective", "feasible", "evaluations", "wall s", "bound"):
        table.add_column(col)
    for r in results:
        table.add_row(str(r.seed), f"{r.objective:.6g}", "yes" if r.feasible else "NO", str(r.evaluations),
                      f"{r.wall_s:.2f}", "-" if r.bound is None else f"{r.bound:.6g}")
    out.print(table)
    for r in results:  # in full on a line of their own (a table column would cut them on narrow terminals)
        if r.run_id:
            out.print(f"seed {r.seed}: run id {r.run_id}", highlight=False, soft_wrap=True)
    last = results[-1]
    out.print("decision: " + json.dumps(plain(last.decision)), highlight=False)
    if last.metrics:
        out.print("metrics: " + ", ".join(f"{k}={v:.5g}" for k, v in last.metrics.items()), highlight=False)
    if last.violations and not last.feasible:
        out.print("violations: " + json.dumps(last.violations), highlight=False)


@app.command()
def sweep(task: List[str] = typer.Option(..., "--task", "-t", help="task(s), repeatable"),
          solver: Optional[List[str]] = typer.Option(None, "--solver", "-s",
                                                     help="solver(s); default: the profile's, else all supported"),
          seeds: Optional[str] = typer.Option(None, "--seeds", help="seed range; default: the profile's"),
          profile: str = typer.Option("quick", "--profile", "-p", help="benchmark profile: quick | paper"),
          executor: str = typer.Option("local", "--executor", help="local | ray"),
          workers: int = typer.Option(1, "--workers", "-w", help="parallel workers"),
          address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (ray executor)"),
          tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri")) -> None:
    """Run tasks x solvers x seeds under a profile; resumable (FINISHED runs are skipped)."""
    from . import sweep as sw
    from .tracking import Tracker

    if executor not in ("local", "ray"):
        raise UserError(f"--executor {executor!r} is not one of: local, ray")
    if workers < 1:
        raise UserError(f"--workers {workers} must be >= 1")
    specs = sw.plan(task, solver, parse_seeds(None, seeds) if seeds else None, profile, tracking_uri)
    tracker = Tracker(tracking_uri)
    report_reaped(tracker)
    with ProgressBar(f"sweep {profile}") as bar:
        report = sw.sweep(specs, tracker, profile, executor, workers, address,
                          lambda i, n, text: bar(i / n if n else 1.0, text))
    out.print(f"{len(report.done)} finished, {len(report.skipped)} skipped (already finished), "
              f"{len(report.failed)} failed", highlight=False)
    for spec, error in report.failed:
        err.print(escape(f"FAILED {spec.task} {spec.solver} seed {spec.seed}: {error}"), highlight=False,
                  soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def evaluate(task: str = typer.Option(..., "--task", "-t"),
             config: List[str] = typer.Option([], "--config", "-c", help="task config KEY=VALUE"),
             decision: List[str] = typer.Option([], "--decision", "-d", help="decision KEY=VALUE (repeatable)"),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Evaluate one decision on a static task."""
    task_obj = registry.load("task", task)(parse_pairs(config, "--config"))
    if task_obj.kind != "static":
        raise UserError(f"task {task_obj.name!r} is {task_obj.kind}; evaluate works on static tasks "
                        f"(use `isacbench run` for it)")
    problem = task_obj.problem()
    ev = problem.evaluate(problem.space.check(parse_pairs(decision, "--decision", raw=True)))
    if as_json:
        out.print_json(json.dumps(ev.to_dict()), indent=None)
        return
    out.print(f"objective: {ev.objective:.6g}   feasible: {'yes' if ev.feasible else 'NO'}", highlight=False)
    for k, v in ev.metrics.items():
        out.print(f"  {k:<16} {v:.6g}", highlight=False)
    for k, v in ev.violations.items():
        out.print(f"  violation {k:<6} {v:.6g}", highlight=False)


@app.command()
def leaderboard(task: Optional[List[str]] = typer.Option(None, "--task", "-t", help="task(s); default: all"),
                out_dir: Path = typer.Option(Path("leaderboards"), "--out"),
                tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri")) -> None:
    """Write leaderboards/<task>.md and .csv from the MLflow runs."""
    from . import leaderboard as lb
    from .tracking import Tracker

    out_folder(out_dir)
    tracker = Tracker(tracking_uri, write=False)
    names = task or registry.names("task")
    for name in names:
        cls = registry.load("task", name)
        sweeps = [f"isacbench sweep --task {cls.name} --profile {p} && " for p in lb.sweep_profiles(tracker, cls.name)]
        command = "".join(sweeps) + f"isacbench leaderboard --task {cls.name} --out {out_dir}"
        paths = lb.write(tracker, cls.name, out_dir, cls.leaderboard_metrics, command, cls.leaderboard_curves,
                         lambda why: err.print(escape(f"warning: skipped malformed run {why}"), highlight=False,
                                               soft_wrap=True), oracle=cls.oracle,
                         objective=cls.objective_metric if issubclass(cls, SequentialTask) else None)
        out.print(f"{cls.name}: " + (", ".join(map(str, paths)) if paths else "no finished runs"), highlight=False)


@app.command()
def ui(port: int = typer.Option(5000, "--port"),
       tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri")) -> None:
    """Open the MLflow UI on 127.0.0.1 over the same store."""
    from .tracking import Tracker

    if not 1 <= port <= 65535:
        raise UserError(f"--port {port} is not a TCP port (1-65535)")
    uri = Tracker(tracking_uri, write=False).uri
    if uri.startswith(("http://", "https://")):
        out.print(f"the store is already served: open {uri}")
        return
    out.print(f"MLflow UI on http://127.0.0.1:{port} (store {uri}); Ctrl-C stops it")
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port)]
    sys.stdout.flush()
    os.execv(sys.executable, cmd)  # become the server: signals reach it directly, no orphaned child


@app.command()
def reproduce(task: str = typer.Argument(..., help="task name"),
              figure: str = typer.Option(..., "--figure", "-f",
                                         help="figure number in the task's paper, or the name of a task figure"),
              out_dir: Path = typer.Option(Path("figures"), "--out"),
              config: List[str] = typer.Option([], "--config", "-c", help="task config KEY=VALUE")) -> None:
    """Reproduce a paper figure: writes PNG + CSV into --out."""
    task_obj = registry.load("task", task)(parse_pairs(config, "--config"))
    figures = task_obj.figures()
    figure = int(figure) if figure.isdigit() else figure  # paper figures by number, the task's own by name
    if figure not in figures:
        raise UserError(f"task {task_obj.name!r} has no figure {figure}; available: "
                        f"{', '.join(sorted(map(str, figures))) or 'none'}")
    out_folder(out_dir)
    with ProgressBar(f"{task_obj.name} figure {figure}") as bar:
        paths = figures[figure](out_dir, bar)
        bar(1.0, "done")
    for p in paths:
        out.print(str(p), highlight=False)
