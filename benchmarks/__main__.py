"""`python -m benchmarks [--quick]`: run every benchmark and write benchmarks/RESULTS.md."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import bench_env, bench_evaluators, bench_mappo, bench_solvers, bench_tracking
from .common import SCALES, machine
from .report import render

BENCHES = {"env": bench_env, "evaluators": bench_evaluators, "solvers": bench_solvers, "mappo": bench_mappo}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    ap.add_argument("--scale", choices=SCALES, default=None, help="tiny | quick | full (default full; --quick = quick)")
    ap.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES), help="benchmarks to run")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="report file")
    args = ap.parse_args(argv)
    scale = args.scale or ("quick" if args.quick else "full")
    info = machine()
    start = time.perf_counter()
    sections = []
    for name in args.only:
        t0 = time.perf_counter()
        sec = BENCHES[name].run(scale)
        sections.append(sec)
        print(f"[{name}] {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for r in sec.results:
            met = "" if r.met is None else (f"  (target {r.relation} {r.target:g}: "
                                            + ("met)" if r.met else "TARGET NOT MET)"))
            print(f"  {r.name}: {r.value:.4g} {r.unit}{met}")
    wall = time.perf_counter() - start
    load_end = " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    command = "python -m benchmarks" + {"full": "", "quick": " --quick", "tiny": " --scale tiny"}[scale]
    if args.only != list(BENCHES):
        command += " --only " + " ".join(args.only)
    text = render(sections, info, scale, command, wall, load_end)
    old = args.out.read_text() if args.out.exists() else ""
    if bench_tracking.BEGIN in old:  # keep the tracking load section (`python -m benchmarks.bench_tracking`)
        text = bench_tracking.splice(text, bench_tracking.BEGIN + old.split(bench_tracking.BEGIN, 1)[1])
    args.out.write_text(text)
    print(f"wrote {args.out} ({wall:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
