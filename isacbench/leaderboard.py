"""Leaderboards from MLflow runs (never typed by hand).

Per task instance, per (solver, budget): mean objective over seeds with a 95%
percentile-bootstrap CI, main metrics, gap to a reference, budget used,
feasible rate, seeds, rank. The reference is the tightest certified upper bound
any run proved for that instance ("bound"), else the best feasible objective
any run reached ("best known").
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .tracking import TAG, Tracker

BOOTSTRAP_SAMPLES = 2000
REQUIRED_METRICS = ("objective", "feasible", "wall_s")


def sweep_profiles(tracker: Tracker, task: str) -> list[str]:
    """The profiles of the sweeps recorded for `task` (from the sweeps' parent runs)."""
    return sorted({r.data.tags[TAG + "sweep"] for r in tracker.runs(task, f"tags.`{TAG}sweep` != ''")})


def runs_frame(tracker: Tracker, task: str, skip: Callable[[str], None] = lambda why: None) -> pd.DataFrame:
    """One row per FINISHED run of `task`: ids, seed, objective, feasibility, bound, metrics. A
    malformed run (a required metric missing or not finite, a seed tag that is not an integer) is
    left out, and `skip` gets one line saying why."""
    rows = []
    for run in tracker.runs(task, "attributes.status = 'FINISHED'"):
        t, m = run.data.tags, run.data.metrics
        if TAG + "seed" not in t:  # sweep parent runs
            continue
        missing = [k for k in REQUIRED_METRICS if not np.isfinite(m.get(k, np.nan))]
        if missing or not t[TAG + "seed"].isdigit():
            skip(f"{run.info.run_id} ({run.info.run_name}): " + (
                f"no finite {', '.join(missing)} metric" if missing else f"seed tag {t[TAG + 'seed']!r}"))
            continue
        rows.append({"run_id": run.info.run_id, "instance": t.get(TAG + "instance", "?"),
                     "solver": t.get(TAG + "variant", t.get(TAG + "solver", "?")), "seed": int(t[TAG + "seed"]),
                     "budget": t.get(TAG + "budget", ""), "params": run.data.params, **m})
    return pd.DataFrame(rows)


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean."""
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return float(values[0]), float(values[0])
    idx = rng.integers(0, len(values), size=(samples, len(values)))
    means = values[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(runs: pd.DataFrame, metrics: tuple[str, ...] = (), seed: int = 0) -> pd.DataFrame:
    """Aggregate runs into leaderboard rows (see module docstring)."""
    if runs.empty:
        return pd.DataFrame()
    rows = []
    for inst, inst_runs in runs.groupby("instance", sort=True):
        feasible_runs = inst_runs[inst_runs["feasible"] > 0.5]
        bounds = inst_runs["bound"].dropna() if "bound" in inst_runs else pd.Series(dtype=float)
        if len(bounds):
            reference, ref_kind = float(bounds.min()), "bound"
        elif len(feasible_runs):
            reference, ref_kind = float(feasible_runs["objective"].max()), "best known"
        else:
            reference, ref_kind = float("nan"), "none"
        for (solver, budget), g in inst_runs.groupby(["solver", "budget"], sort=True):
            ok = g[g["feasible"] > 0.5]
            obj = np.sort(ok["objective"].to_numpy(dtype=float))  # sorted: the CI does not depend on run order
            mean = float(obj.mean()) if len(obj) else float("nan")
            # one stream per row: a row's CI does not change when other solvers' runs are added
            rng = np.random.default_rng([seed, zlib.crc32(f"{inst}|{solver}|{budget}".encode())])
            lo, hi = bootstrap_ci(obj, rng) if len(obj) else (float("nan"), float("nan"))
            row = {"instance": inst, "solver": solver, "budget": budget, "objective": mean,
                   "ci_low": lo, "ci_high": hi,
                   "gap_pct": 100.0 * (reference - mean) / abs(reference) if reference == reference and reference
                   else float("nan"),
                   "reference": reference, "reference_kind": ref_kind,
                   "evaluations": float(g["evaluations"].mean()) if "evaluations" in g else float("nan"),
                   "wall_s": float(g["wall_s"].mean()), "feasible_rate": float((g["feasible"] > 0.5).mean()),
                   "seeds": int(g["seed"].nunique())}
            for name in metrics:
                row[name] = float(ok[name].mean()) if name in ok and len(ok) else float("nan")
            rows.append(row)
    table = pd.DataFrame(rows)
    table["rank"] = (table.groupby("instance")["objective"].rank(ascending=False, method="min"))
    return table.sort_values(["instance", "rank", "solver"], na_position="last").reset_index(drop=True)


def instance_labels(runs: pd.DataFrame) -> dict[str, str]:
    """Human-readable instance labels: the task config keys on which instances differ."""
    params = {inst: g["params"].iloc[0] for inst, g in runs.groupby("instance")}
    keys = sorted({k for p in params.values() for k in p if k.startswith("task.")})
    varying = [k for k in keys if len({p.get(k) for p in params.values()}) > 1]
    return {inst: (", ".join(f"{k[5:]}={p.get(k)}" for k in varying) or "default") for inst, p in params.items()}


def write(tracker: Tracker, task: str, out_dir: Path, metrics: tuple[str, ...] = (),
          command: str | None = None, curves: tuple[str, ...] = (),
          skip: Callable[[str], None] = lambda why: None) -> list[Path]:
    """Write leaderboards/<task>.md, .csv and .png (and <task>-curves.png when the runs log
    `curves`); returns the paths (empty when no runs). Malformed runs are reported to `skip`."""
    runs = runs_frame(tracker, task, skip)
    table = summarize(runs, metrics)
    if table.empty:
        return []
    labels = instance_labels(runs)
    table.insert(1, "instance_label", table["instance"].map(labels))
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{task}.csv", out_dir / f"{task}.md"
    table.to_csv(csv_path, index=False)
    images = [out_dir / f"{task}.png"]
    plot(table, images[0], task)
    if curves and plot_curves(tracker, runs, curves, out_dir / f"{task}-curves.png", task):
        images.append(out_dir / f"{task}-curves.png")
    md_path.write_text(_markdown(task, table, metrics, command, [p.name for p in images]))
    return [md_path, csv_path, *images]


def plot_curves(tracker: Tracker, runs: pd.DataFrame, names: tuple[str, ...], path: Path, task: str) -> bool:
    """Step-indexed metrics (mean over seeds, one line per solver variant), a panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, list[pd.Series]]] = {n: {} for n in names}
    for _, run in runs.iterrows():
        for name in names:
            if name not in run or not np.isfinite(run[name]):
                continue
            hist = tracker.client.get_metric_history(run["run_id"], name)
            curve = pd.Series({h.step: h.value for h in hist}).sort_index()
            series[name].setdefault(run["solver"], []).append(curve)
    if not any(series.values()):
        return False
    cols = min(3, len(names))
    fig, axes = plt.subplots(-(-len(names) // cols), cols, figsize=(4.6 * cols, 3.4 * -(-len(names) // cols)),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        for solver, curves in sorted(series[name].items()):
            mean = pd.concat(curves, axis=1).mean(axis=1)
            ax.plot(mean.index, mean.values, label=f"{solver} ({len(curves)} seeds)")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step (as logged, e.g. training frames)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"{task}: training curves", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot(table: pd.DataFrame, path: Path, task: str) -> None:
    """Mean objective with its 95% CI per solver, one panel per instance, reference dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(table.groupby("instance", sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(max(8.0, 5.5 * len(groups)), 0.45 * table["solver"].nunique() + 1.6),
                             squeeze=False)
    for ax, (inst, g) in zip(axes[0], groups):
        g = g.iloc[::-1]
        y = np.arange(len(g))
        err = np.vstack([g["objective"] - g["ci_low"], g["ci_high"] - g["objective"]]).clip(min=0)
        ax.errorbar(g["objective"], y, xerr=err, fmt="o", capsize=4)
        ax.set_yticks(y, [f"{s} ({b})" for s, b in zip(g["solver"], g["budget"])], fontsize=8)
        ref = g["reference"].iloc[0]
        if np.isfinite(ref):
            ax.axvline(ref, ls="--", c="gray", label=f"reference ({g['reference_kind'].iloc[0]})")
            ax.legend(fontsize=8, loc="best", framealpha=0.9)
        ax.set_title(f"{task}: {g['instance_label'].iloc[0]}", fontsize=10)
        ax.set_xlabel("objective (mean, 95% bootstrap CI over seeds)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(task: str, table: pd.DataFrame, metrics: tuple[str, ...], command: str | None,
              images: list[str]) -> str:
    lines = [f"# Leaderboard: {task}", "",
             "Generated by `isacbench leaderboard` from MLflow runs; do not edit by hand.",
             "Objective: mean over seeds of feasible runs (maximized), 95% bootstrap CI; gap to the instance's "
             "reference (tightest certified bound if any solver proved one, else best known value).", ""]
    if command:
        lines += ["Regenerate with:", "", f"    {command}", ""]
    lines += [f"![{task} leaderboard]({image})" for image in images] + [""]
    for inst, g in table.groupby("instance", sort=False):
        ref = g.iloc[0]
        lines += [f"## Instance `{inst}` ({g.iloc[0]['instance_label']})", "",
                  f"Reference: {ref['reference']:.6g} ({ref['reference_kind']})", ""]
        cols = ["rank", "solver", "objective", "95% CI", "gap %", *metrics, "evals", "wall s", "feasible",
                "seeds", "budget"]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for _, r in g.iterrows():
            cells = [_fmt(r["rank"], 0), r["solver"], _fmt(r["objective"]),
                     f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]", _fmt(r["gap_pct"], 2),
                     *[_fmt(r[m]) for m in metrics], _fmt(r["evaluations"], 0), _fmt(r["wall_s"], 2),
                     f"{r['feasible_rate']:.0%}", str(r["seeds"]), f"`{r['budget']}`"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _fmt(v, digits: int | None = None) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if digits == 0:
        return str(int(round(v)))
    if digits is not None:
        return f"{v:.{digits}f}"
    return f"{v:.4g}"

