"""Leaderboards from MLflow runs (never typed by hand).

Per task instance, per (solver, budget): mean objective over seeds with a 95%
percentile-bootstrap CI, main metrics, gap to a reference, budget used,
feasible rate, seeds, rank. The reference is the tightest certified upper bound
any run proved for that instance ("bound"), else the best feasible objective
any run reached ("best known"). A task that declares an oracle solver
(`Task.oracle`, e.g. ent-usr's per-frame genie-aided `topology-search`) also
gets every row's gap to the oracle's mean in that instance, with a 95% bootstrap
CI of the difference (the price of decentralization, for a learned policy).
"""
from __future__ import annotations

import warnings
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


def gap_ci(oracle: np.ndarray, values: np.ndarray, rng: np.random.Generator,
           samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """95% percentile-bootstrap CI of 100 (mean(oracle) - mean(values)) / |mean(oracle)|, the two
    samples (seeds, their counts may differ) resampled independently."""
    scale = 100.0 / abs(oracle.mean())
    diffs = (oracle[rng.integers(0, len(oracle), size=(samples, len(oracle)))].mean(axis=1)
             - values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)) * scale
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def _feasible_objectives(g: pd.DataFrame) -> np.ndarray:
    """The feasible runs' objectives, sorted (so that a CI does not depend on the store's run order)."""
    return np.sort(g.loc[g["feasible"] > 0.5, "objective"].to_numpy(dtype=float))


def oracle_runs(inst_runs: pd.DataFrame, oracle: str | None) -> tuple[str, np.ndarray] | None:
    """The (budget, feasible objectives) of the oracle's runs in one instance: its variant named
    exactly `oracle` (at several budgets: the best mean); None when it has no feasible run there."""
    if oracle is None:
        return None
    found = [(budget, _feasible_objectives(g)) for budget, g in inst_runs[inst_runs["solver"] == oracle]
             .groupby("budget", sort=True)]
    found = [(b, v) for b, v in found if len(v) and v.mean() != 0]
    return max(found, key=lambda f: f[1].mean()) if found else None


def summarize(runs: pd.DataFrame, metrics: tuple[str, ...] = (), seed: int = 0, oracle: str | None = None) -> pd.DataFrame:
    """Aggregate runs into leaderboard rows (see module docstring); with `oracle` (a solver
    variant), `oracle_gap_pct` and its CI (`oracle_gap_ci_low`, `_high`), NaN where the oracle has
    no feasible run in the instance."""
    if runs.empty:
        return pd.DataFrame()
    rows = []
    for inst, inst_runs in runs.groupby("instance", sort=True):
        ref_runs = oracle_runs(inst_runs, oracle)
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
            obj = _feasible_objectives(g)
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
            if oracle is not None:
                is_oracle = ref_runs is not None and (solver, budget) == (oracle, ref_runs[0])
                stream = np.random.default_rng([seed, zlib.crc32(f"{inst}|{solver}|{budget}|oracle".encode())])
                row.update(oracle_gap(ref_runs, obj, is_oracle, stream))
            for name in metrics:
                row[name] = float(ok[name].mean()) if name in ok and len(ok) else float("nan")
            rows.append(row)
    table = pd.DataFrame(rows)
    table["rank"] = (table.groupby("instance")["objective"].rank(ascending=False, method="min"))
    return table.sort_values(["instance", "rank", "solver"], na_position="last").reset_index(drop=True)


def oracle_gap(ref_runs: tuple[str, np.ndarray] | None, obj: np.ndarray, is_oracle: bool,
               rng: np.random.Generator) -> dict[str, float]:
    """One row's gap to the oracle's mean, 100 (oracle - row) / |oracle| %, and its CI (`gap_ci`;
    the oracle's own row: 0 exactly); NaN without oracle runs or feasible runs of the row."""
    if ref_runs is None or not len(obj):
        gap = lo = hi = float("nan")
    elif is_oracle:
        gap = lo = hi = 0.0
    else:
        ref = ref_runs[1]
        gap, (lo, hi) = 100.0 * (ref.mean() - obj.mean()) / abs(ref.mean()), gap_ci(ref, obj, rng)
    return {"oracle_gap_pct": gap, "oracle_gap_ci_low": lo, "oracle_gap_ci_high": hi}


def instance_labels(runs: pd.DataFrame) -> dict[str, str]:
    """Human-readable instance labels: the task config keys on which instances differ. Keys that vary
    within an instance (task settings such as ent-usr's topology, shown in the variant labels) are left out."""
    task = pd.DataFrame([{k[5:]: v for k, v in p.items() if k.startswith("task.")} for p in runs["params"]],
                        index=runs["instance"].to_numpy()).fillna("None").astype(str)  # a missing key: "None"
    per_instance = task.groupby(level=0)
    fixed = sorted(k for k, n in per_instance.nunique().max().items() if n == 1)
    first = per_instance.first()
    varying = [k for k in fixed if first[k].nunique() > 1]
    return {inst: ", ".join(f"{k}={row[k]}" for k in varying) or "default" for inst, row in first.iterrows()}


def write(tracker: Tracker, task: str, out_dir: Path, metrics: tuple[str, ...] = (),
          command: str | None = None, curves: tuple[str, ...] = (),
          skip: Callable[[str], None] = lambda why: None, oracle: str | None = None,
          objective: str | None = None) -> list[Path]:
    """Write leaderboards/<task>.md, .csv and .png, with the gap to `oracle` (`Task.oracle`) when
    given, and <task>-curves.png and .csv when runs log learning curves (`curve_names`: the
    evaluation `eval/<objective>` or else `train/return`, then the task's `curves`); returns the
    paths (empty when no runs). Malformed runs are reported to `skip`."""
    runs = runs_frame(tracker, task, skip)
    table = summarize(runs, metrics, oracle=oracle)
    if table.empty:
        return []
    labels = instance_labels(runs)
    table.insert(1, "instance_label", table["instance"].map(labels))
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{task}.csv", out_dir / f"{task}.md"
    table.to_csv(csv_path, index=False)
    images = [out_dir / f"{task}.png"]
    plot(table, images[0], task)
    curve_rows = curve_table(tracker, runs, curve_names(runs, objective, curves))
    extra = []
    if not curve_rows.empty:
        instances = list(dict.fromkeys(curve_rows["instance"]))
        for inst in instances:  # one figure per instance: scenarios' objectives differ in scale
            name = f"{task}-curves.png" if len(instances) == 1 else f"{task}-curves-{inst}.png"
            images.append(out_dir / name)
            plot_curves(curve_rows[curve_rows["instance"] == inst], images[-1],
                        task if len(instances) == 1 else f"{task}, instance {inst} ({labels[inst]})")
        extra.append(out_dir / f"{task}-curves.csv")
        curve_rows.to_csv(extra[0], index=False)
    md_path.write_text(_markdown(task, table, metrics, command, [p.name for p in images], oracle))
    return [md_path, csv_path, *images, *extra]


def curve_names(runs: pd.DataFrame, objective: str | None, curves: tuple[str, ...]) -> tuple[str, ...]:
    """The learning-curve panels: first the evaluation objective `eval/<objective>` when any run
    logged it (a learning solver's periodic `Reporter.evaluate`), else the training return
    `train/return`; then the task's step-indexed `curves` (e.g. ent-usr's Fig. 5 panels)."""
    head = f"eval/{objective}" if objective and f"eval/{objective}" in runs else "train/return"
    return tuple(dict.fromkeys((head, *curves)))


def curve_table(tracker: Tracker, runs: pd.DataFrame, names: tuple[str, ...],
                samples: int = 1000) -> pd.DataFrame:
    """Every step-indexed metric of `names`, per (instance, metric, solver variant, budget) among the
    runs that logged it (whatever learning variants the store holds) and per step: the mean over seeds
    and a 95% percentile-bootstrap CI of that mean (seeds resampled; at a step some seeds did not
    log, the mean of those that did). Columns: instance, metric, solver, budget, step, mean, ci_low,
    ci_high, seeds."""
    rows = []
    for name in names:
        if name not in runs:
            continue
        finite = runs[np.isfinite(runs[name].astype(float))]
        for (inst, solver, budget), g in finite.groupby(["instance", "solver", "budget"], sort=True):
            series = [pd.Series({h.step: h.value for h in tracker.client.get_metric_history(run_id, name)})
                      for run_id in sorted(g["run_id"])]
            values = pd.concat(series, axis=1).sort_index()
            rng = np.random.default_rng([0, zlib.crc32(f"{inst}|{name}|{solver}|{budget}".encode())])
            lo, hi = _band(values.to_numpy(dtype=float), rng, samples)
            rows += [{"instance": inst, "metric": name, "solver": solver, "budget": budget, "step": int(step),
                      "mean": m, "ci_low": a, "ci_high": b, "seeds": len(series)}
                     for step, m, a, b in zip(values.index, values.mean(axis=1), lo, hi)]
    return pd.DataFrame(rows)


def _band(values: np.ndarray, rng: np.random.Generator, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """values (steps, seeds), NaN where a seed did not log the step -> the 95% bootstrap CI of the
    per-step mean (equal to the mean with one seed)."""
    n = values.shape[1]
    if n == 1:
        return values[:, 0], values[:, 0]
    with warnings.catch_warnings():  # a resample of only the seeds that miss a step: NaN, dropped below
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(values[:, rng.integers(0, n, size=(samples, n))], axis=2)
        return np.nanpercentile(means, 2.5, axis=1), np.nanpercentile(means, 97.5, axis=1)


def plot_curves(rows: pd.DataFrame, path: Path, task: str) -> None:
    """Fig. 5-style learning curves from `curve_table`: a panel per metric (the first one the
    evaluation objective, or the training return), a line per solver variant and budget (the mean
    over seeds) with its 95% bootstrap CI band; the same colour for a variant in every panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(rows["metric"]))
    keys = sorted({(s, b) for s, b in zip(rows["solver"], rows["budget"])})
    # ten colours, then the same ten dashed, then dotted: every variant its own line
    styles = {k: (f"C{i % 10}", ("-", "--", ":")[i // 10 % 3]) for i, k in enumerate(keys)}
    cols = min(3, len(names))
    nrows = -(-len(names) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.4 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for (solver, budget), g in rows[rows["metric"] == name].groupby(["solver", "budget"], sort=True):
            c, ls = styles[(solver, budget)]
            seeds = g["seeds"].iloc[0]
            ax.plot(g["step"], g["mean"], color=c, ls=ls, lw=1.3, ms=2.5,
                    marker="o" if name.startswith("eval/") or len(g) == 1 else None,
                    label=f"{solver} ({budget}, {seeds} seed{'s' if seeds > 1 else ''})")
            ax.fill_between(g["step"], g["ci_low"], g["ci_high"], color=c, alpha=0.18, lw=0)
        ax.set_title(f"evaluation episodes: {name[5:]}" if name.startswith("eval/") else name, fontsize=10)
        ax.set_xlabel("training frames (step as logged)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    shown = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}  # every variant
    fig.suptitle(f"{task}: learning curves (mean over seeds, 95% bootstrap CI band)", fontsize=11)
    fig.tight_layout()
    # below the panels, two columns; the saved canvas grows to hold it (long variant labels are not cut)
    fig.legend(shown.values(), shown.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(2, len(shown)), fontsize=7, frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


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
              images: list[str], oracle: str | None = None) -> str:
    lines = [f"# Leaderboard: {task}", "",
             "Generated by `isacbench leaderboard` from MLflow runs; do not edit by hand.",
             "Objective: mean over seeds of feasible runs (maximized), 95% bootstrap CI; gap to the instance's "
             "reference (tightest certified bound if any solver proved one, else best known value)."
             + (f" Gap to {oracle} (the task's oracle): 100 (oracle mean - row mean) / |oracle mean| over the "
                f"instance's feasible runs, with the 95% bootstrap CI of the difference (both solvers' seeds "
                f"resampled); – where {oracle} has no run in the instance." if oracle else ""), ""]
    if command:
        lines += ["Regenerate with:", "", f"    {command}", "",
                  "The `seeds` column counts the runs in the store. Rows at budgets or settings no profile sweeps "
                  "come from `isacbench run`; each run's MLflow params (`task.*`, `solver.*`, `budget.*`, `seed`) "
                  "state its command.", ""]
    lines += [f"![{task} leaderboard]({image})" for image in images] + [""]
    for inst, g in table.groupby("instance", sort=False):
        ref = g.iloc[0]
        lines += [f"## Instance `{inst}` ({g.iloc[0]['instance_label']})", "",
                  f"Reference: {ref['reference']:.6g} ({ref['reference_kind']})", ""]
        cols = ["rank", "solver", "objective", "95% CI", "gap %", *([f"gap to {oracle} %"] if oracle else []),
                *metrics, "evals", "wall s", "feasible", "seeds", "budget"]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for _, r in g.iterrows():
            cells = [_fmt(r["rank"], 0), r["solver"], _fmt(r["objective"]),
                     f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]", _fmt(r["gap_pct"], 2),
                     *([_oracle_cell(r)] if oracle else []), *[_fmt(r[m]) for m in metrics], _fmt(r["evaluations"], 0), _fmt(r["wall_s"], 2),
                     f"{r['feasible_rate']:.0%}", str(r["seeds"]), f"`{r['budget']}`"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _oracle_cell(r: pd.Series) -> str:
    if not np.isfinite(r["oracle_gap_pct"]):
        return "–"
    return f"{r['oracle_gap_pct']:.2f} [{r['oracle_gap_ci_low']:.2f}, {r['oracle_gap_ci_high']:.2f}]"


def _fmt(v, digits: int | None = None) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if digits == 0:
        return str(int(round(v)))
    if digits is not None:
        return f"{v:.{digits}f}"
    return f"{v:.4g}"

