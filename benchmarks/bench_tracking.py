"""Load on the tracking store: N short runs through a sweep with W workers, into (a) the embedded
SQLite store and (b) an `mlflow server` on a real PostgreSQL cluster started here.

For each store: runs/s ingested (end to end: the sweep computes in W worker processes and its
parent records every run, the store's single writer), the time `isacbench leaderboard` takes
over all of them, and a check that every run is present exactly once (one FINISHED run per
(instance, seed), none left RUNNING or FAILED). The compute-only rate of the same jobs in the
same pool, with nothing recorded, says how much of the time is the store's.

    python -m benchmarks.bench_tracking [--runs 1000] [--workers 2]

writes its section into benchmarks/RESULTS.md (between the `tracking` markers; `python -m
benchmarks` keeps it).
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from .common import Section

RUNS = {"tiny": 8, "quick": 100, "full": 1000}
TASK, SOLVER, EVALS = "sg-nulling", "random", 5
BEGIN, END = "<!-- tracking:begin -->", "<!-- tracking:end -->"


def specs(n: int):
    """n runs of sg-nulling `random` with EVALS evaluations: the quick profile's two instances x n/2 seeds."""
    from isacbench import sweep
    from isacbench.api import Budget

    seeds = range(-(-n // 2))
    plan = sweep.plan([TASK], [SOLVER], seeds, "quick")
    return [dataclasses.replace(s, budget=Budget(evaluations=EVALS)) for s in plan][:n]


def compute_only(jobs, workers: int) -> float:
    """Runs/s of the same jobs in the same pool with nothing recorded."""
    from isacbench.sweep import local_executor

    start = time.perf_counter()
    errors = [o for _, o in local_executor(jobs, workers) if isinstance(o, BaseException)]
    if errors:
        raise errors[0]
    return len(jobs) / (time.perf_counter() - start)


def ingest(uri: str, n: int, workers: int, out_dir: Path) -> dict:
    """Sweep n runs into the store at `uri`, then build the leaderboard; returns the measurements
    and the exactly-once check."""
    from isacbench import leaderboard as lb
    from isacbench import registry
    from isacbench.sweep import sweep
    from isacbench.tracking import TAG, Tracker

    jobs = specs(n)
    tracker = Tracker(uri)
    tracker.experiment(TASK)  # created before any worker starts (as the CLI does)
    start = time.perf_counter()
    report = sweep(jobs, tracker, "load", "local", workers)
    ingest_s = time.perf_counter() - start
    cls = registry.load("task", TASK)
    start = time.perf_counter()
    paths = lb.write(tracker, TASK, out_dir, cls.leaderboard_metrics, "load benchmark", cls.leaderboard_curves)
    board_s = time.perf_counter() - start
    status, keys = Counter(), Counter()
    for r in tracker.runs(TASK):
        t = r.data.tags
        if TAG + "seed" in t:
            status[r.info.status] += 1
            keys[(t[TAG + "instance"], int(t[TAG + "seed"]))] += 1
    csv = next((p for p in paths if p.suffix == ".csv"), None)
    return {"runs": n, "done": len(report.done), "failed": len(report.failed), "ingest_s": ingest_s,
            "runs_per_s": len(report.done) / ingest_s, "leaderboard_s": board_s, "status": dict(status),
            "distinct": len(keys), "duplicates": sum(c - 1 for c in keys.values() if c > 1),
            "exactly_once": (len(keys) == n and all(c == 1 for c in keys.values())
                             and status == Counter({"FINISHED": n})),
            "leaderboard_rows": 0 if csv is None else len(csv.read_text().splitlines()) - 1}


def run(scale: str = "full", n: int | None = None, workers: int = 2) -> Section:
    from .servers import mlflow_server, postgres, postgres_missing

    n = n or RUNS[scale]
    sec = Section("tracking")
    root = Path(tempfile.mkdtemp(prefix="isacbench-load-"))
    measured = {}
    try:
        ceiling = compute_only(specs(min(n, 200)), workers)
        measured["embedded SQLite (sqlite:///mlflow.db)"] = ingest(f"sqlite:///{root / 'mlflow.db'}", n, workers,
                                                                   root / "lb-sqlite")
        missing = postgres_missing()
        if missing is None:
            with postgres(durable=True) as pg:
                url = pg.create_database("mlflow")
                with mlflow_server(url, root / "artifacts", workers=2) as server:
                    measured["mlflow server on PostgreSQL"] = ingest(server, n, workers, root / "lb-pg")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sec.lines += [f"{n} runs of {TASK} `{SOLVER}` ({EVALS} evaluations each; the quick profile's 2 instances x "
                  f"{-(-n // 2)} seeds) through `isacbench.sweep` with {workers} local workers. Workers compute, "
                  "the sweep's parent process records each run (params, tags, metrics, the best-so-far curve, "
                  "solution.json and config.json), so ingestion is the store's single-writer rate. The same jobs "
                  f"with nothing recorded run at {ceiling:.1f} runs/s (compute ceiling, first {min(n, 200)} jobs).",
                  "", "| store | runs | runs/s ingested | ingest s | leaderboard s | present exactly once |",
                  "|---|---|---|---|---|---|"]
    for store, m in measured.items():
        once = "yes" if m["exactly_once"] else (f"**no**: {m['distinct']} distinct, {m['duplicates']} duplicates, "
                                                f"status {m['status']}")
        sec.lines.append(f"| {store} | {m['runs']} | {m['runs_per_s']:.2f} | {m['ingest_s']:.1f} | "
                         f"{m['leaderboard_s']:.2f} | {once} |")
        sec.figure(f"{store}: runs/s ingested", m["runs_per_s"], "runs/s",
                   f"{m['done']} runs in {m['ingest_s']:.1f} s, {workers} workers")
        sec.figure(f"{store}: leaderboard time", m["leaderboard_s"], "s",
                   f"`isacbench leaderboard` over {m['runs']} runs ({m['leaderboard_rows']} table rows)")
    if missing:
        sec.lines += ["", f"PostgreSQL not measured: {missing}."]
    sec.measured = measured  # type: ignore[attr-defined]  (raw numbers, for the smoke test)
    sec.ceiling = ceiling  # type: ignore[attr-defined]
    return sec


def render(sec: Section, command: str, wall_s: float) -> str:
    from .common import machine
    from .report import _value

    info = machine()
    lines = [BEGIN, "## tracking load", "", f"Generated by `{command}` in {wall_s:.0f} s on {info['cores']} cores "
             f"({info['cpu']}), load average at start {info['load_avg_1_5_15']}.", "", *sec.lines, "",
             "| figure | value | how measured |", "|---|---|---|"]
    lines += [f"| {r.name} | {_value(r)} | {r.detail} |" for r in sec.results]
    return "\n".join(lines + [END]) + "\n"


def splice(report: str, block: str) -> str:
    """`report` with its tracking block replaced by `block` (appended when it has none)."""
    if BEGIN in report and END in report:
        head, rest = report.split(BEGIN, 1)
        return head + block.rstrip("\n") + rest.split(END, 1)[1]
    return report.rstrip("\n") + "\n\n" + block


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_tracking", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=RUNS["full"], help="runs per store")
    ap.add_argument("--workers", type=int, default=2, help="sweep workers")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args(argv)
    start = time.perf_counter()
    sec = run(n=args.runs, workers=args.workers)
    for r in sec.results:
        print(f"  {r.name}: {r.value:.4g} {r.unit}  ({r.detail})")
    command = f"python -m benchmarks.bench_tracking --runs {args.runs} --workers {args.workers}"
    old = args.out.read_text() if args.out.exists() else ""
    args.out.write_text(splice(old, render(sec, command, time.perf_counter() - start)))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(m["exactly_once"] for m in sec.measured.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
